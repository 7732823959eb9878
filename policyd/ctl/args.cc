#include "policyd/ctl/args.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>

namespace sluice::ctl {

namespace {

struct FlagSpec {
  const char* name;       // long form without dashes
  const char* shortName;  // short form without dash, or nullptr
  bool multi;             // takes one or more values
  bool takesValue;
};

constexpr FlagSpec kFlags[] = {
    {"filename", "f", true, true},  {"with", nullptr, true, true},
    {"from", nullptr, false, true}, {"to", nullptr, false, true},
    {"port", "p", false, true},     {"protocol", nullptr, false, true},
    {"output", "o", false, true},   {"verbose", "v", false, false},
    {"help", "h", false, false},    {"kubeconfig", nullptr, false, true},
    {"context", nullptr, false, true}, {"live", nullptr, false, false},
    {"admin-socket", nullptr, false, true}, {"pod", nullptr, false, true},
    {"follow", nullptr, false, false}, {"denied", nullptr, false, false},
    {"node", nullptr, false, false}, {"bpf-pin-dir", nullptr, false, true},
};

const FlagSpec* findFlag(std::string_view name, bool isShort) {
  for (const auto& f : kFlags) {
    if (isShort ? (f.shortName && name == f.shortName) : name == f.name) return &f;
  }
  return nullptr;
}

// Which flags each command accepts.
std::set<std::string> allowedFlags(Command c) {
  switch (c) {
    case Command::Explain:
      return {"filename", "from",    "to",   "port",       "protocol", "output",
              "verbose",  "help",    "kubeconfig", "context", "live", "admin-socket",
              "node",     "bpf-pin-dir"};
    case Command::Status:
    case Command::Endpoints:
    case Command::Policy: return {"output", "help", "admin-socket"};
    case Command::Flows: return {"output", "help", "admin-socket", "pod", "follow", "denied"};
    case Command::Matrix:
      return {"filename", "port",       "protocol", "output", "verbose",
              "help",     "kubeconfig", "context",  "live"};
    case Command::Diff:
      return {"filename", "with",       "port",    "protocol", "output",
              "verbose",  "help",       "kubeconfig", "context", "live"};
    case Command::Lint:
      return {"filename", "output", "verbose", "help", "kubeconfig", "context", "live"};
    case Command::Help: return {"help"};
  }
  return {};
}

std::optional<Command> parseCommand(std::string_view s) {
  if (s == "explain") return Command::Explain;
  if (s == "matrix") return Command::Matrix;
  if (s == "diff") return Command::Diff;
  if (s == "lint") return Command::Lint;
  if (s == "help") return Command::Help;
  if (s == "status") return Command::Status;
  if (s == "endpoints") return Command::Endpoints;
  if (s == "policy") return Command::Policy;
  if (s == "flows") return Command::Flows;
  return std::nullopt;
}

const char* commandName(Command c) {
  switch (c) {
    case Command::Explain: return "explain";
    case Command::Matrix: return "matrix";
    case Command::Diff: return "diff";
    case Command::Lint: return "lint";
    case Command::Help: return "help";
    case Command::Status: return "status";
    case Command::Endpoints: return "endpoints";
    case Command::Policy: return "policy";
    case Command::Flows: return "flows";
  }
  return "?";
}

// IANA_SVC_NAME, as the API server checks container port names: 1-15 characters, lowercase
// alphanumerics and '-', at least one letter, no leading/trailing or double '-'.
bool isServiceName(std::string_view s) {
  if (s.empty() || s.size() > 15 || s.front() == '-' || s.back() == '-') return false;
  bool letter = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') {
      letter = true;
    } else if (!(c >= '0' && c <= '9') && c != '-') {
      return false;
    }
    if (c == '-' && i > 0 && s[i - 1] == '-') return false;
  }
  return letter;
}

}  // namespace

bool isLiveCommand(Command c) {
  return c == Command::Status || c == Command::Endpoints || c == Command::Policy ||
         c == Command::Flows;
}

std::string PortQuery::portText() const {
  if (const auto* n = std::get_if<uint16_t>(&port)) return std::to_string(*n);
  return std::get<std::string>(port);
}

std::string PortQuery::label() const {
  return std::string(model::protocolName(protocol)) + "/" + portText();
}

// GCC 12 with -fsanitize reports a false -Wmaybe-uninitialized when a variant holding a string
// is moved into Result (the string alternative is not the active one).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
Result<std::variant<uint16_t, std::string>> parsePort(const std::string& text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(),
                                   [](char c) { return c >= '0' && c <= '9'; })) {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || value < 1 || value > 65535) {
      return makeError("--port " + text + ": must be a number in 1-65535 or a port name");
    }
    return std::variant<uint16_t, std::string>(static_cast<uint16_t>(value));
  }
  if (!isServiceName(text)) {
    return makeError("--port " + text +
                     ": must be a number in 1-65535 or a port name (1-15 lowercase "
                     "alphanumerics or '-', at least one letter)");
  }
  return std::variant<uint16_t, std::string>(text);
}
#pragma GCC diagnostic pop

Result<Options> parseArgs(const std::vector<std::string>& args) {
  Options opt;
  if (args.empty()) return makeError("missing command");
  if (args[0] == "-h" || args[0] == "--help") return opt;  // Command::Help
  auto cmd = parseCommand(args[0]);
  if (!cmd) return makeError("unknown command '" + args[0] + "'");
  opt.command = *cmd;
  if (opt.command == Command::Help) return opt;
  const auto allowed = allowedFlags(opt.command);
  std::set<std::string> seen;

  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (opt.command == Command::Policy && opt.pod.empty() && !arg.empty() && arg[0] != '-') {
      opt.pod = arg;  // sluicectl policy NS/POD
      continue;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      return makeError("unexpected argument '" + arg + "' (paths go after -f)");
    }
    // --name, --name=value, -n, -n=value, -nvalue (kubectl's -ojson).
    bool isShort = arg[1] != '-';
    std::string body = arg.substr(isShort ? 1 : 2);
    std::optional<std::string> inlineValue;
    if (auto eq = body.find('='); eq != std::string::npos) {
      inlineValue = body.substr(eq + 1);
      body = body.substr(0, eq);
    } else if (isShort && body.size() > 1) {
      inlineValue = body.substr(1);
      body = body.substr(0, 1);
    }
    const FlagSpec* flag = findFlag(body, isShort);
    if (!flag || !allowed.count(flag->name)) {
      return makeError("unknown flag '" + arg + "' for " + commandName(opt.command));
    }
    const std::string name = flag->name;
    if (!flag->multi && seen.count(name)) return makeError("flag --" + name + " given twice");
    seen.insert(name);
    if (!flag->takesValue) {
      if (inlineValue) return makeError("flag --" + name + " takes no value");
      if (name == "help") {
        opt.command = Command::Help;
        return opt;
      }
      if (name == "live") {
        opt.live = true;
      } else if (name == "follow") {
        opt.follow = true;
      } else if (name == "denied") {
        opt.deniedOnly = true;
      } else if (name == "node") {
        opt.node = true;
      } else {
        opt.verbose = true;
      }
      continue;
    }

    std::vector<std::string> values;
    if (inlineValue) {
      values.push_back(*inlineValue);
    } else if (flag->multi) {
      // `-f a b c`: every following argument up to the next flag.
      while (i + 1 < args.size() && !(args[i + 1].size() > 1 && args[i + 1][0] == '-')) {
        values.push_back(args[++i]);
      }
    } else if (i + 1 < args.size()) {
      values.push_back(args[++i]);
    }
    if (values.empty() || std::any_of(values.begin(), values.end(),
                                      [](const std::string& v) { return v.empty(); })) {
      return makeError("flag --" + name + " needs a value");
    }

    if (name == "filename") {
      opt.files.insert(opt.files.end(), values.begin(), values.end());
    } else if (name == "with") {
      opt.with.insert(opt.with.end(), values.begin(), values.end());
    } else if (name == "kubeconfig") {
      opt.kubeconfig = values[0];
      opt.live = true;
    } else if (name == "context") {
      opt.context = values[0];
      opt.live = true;
    } else if (name == "admin-socket") {
      opt.adminSocket = values[0];
    } else if (name == "bpf-pin-dir") {
      opt.pinDir = values[0];
    } else if (name == "pod") {
      if (values[0].find('/') == std::string::npos) {
        return makeError("--pod " + values[0] + ": want NS/POD");
      }
      opt.pod = values[0];
    } else if (name == "from") {
      opt.from = values[0];
    } else if (name == "to") {
      opt.to = values[0];
    } else if (name == "port") {
      auto p = parsePort(values[0]);
      if (!p) return p.error();
      opt.query.port = *p;
      opt.portGiven = true;
    } else if (name == "protocol") {
      std::string upper = values[0];
      for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      auto proto = model::parseProtocol(upper);
      if (!proto) return makeError("--protocol " + values[0] + ": must be TCP, UDP or SCTP");
      opt.query.protocol = *proto;
    } else if (name == "output") {
      if (values[0] == "json") {
        opt.output = OutputFormat::Json;
      } else if (values[0] == "text") {
        opt.output = OutputFormat::Text;
      } else if (values[0] == "svg" &&
                 (opt.command == Command::Matrix || opt.command == Command::Diff)) {
        opt.output = OutputFormat::Svg;
      } else {
        return makeError("-o " + values[0] + ": must be text or json" +
                         (opt.command == Command::Matrix || opt.command == Command::Diff
                              ? std::string(" or svg")
                              : std::string()));
      }
    }
  }

  if (isLiveCommand(opt.command)) {
    if (opt.command == Command::Policy &&
        (opt.pod.empty() || opt.pod.find('/') == std::string::npos)) {
      return makeError("policy: want the endpoint as NS/POD");
    }
    return opt;
  }
  if (opt.live && !opt.files.empty()) {
    return makeError(std::string(commandName(opt.command)) +
                     ": -f and the live cluster (--kubeconfig, --context, --live) exclude each "
                     "other");
  }
  if (opt.files.empty() && !opt.live) {
    return makeError(std::string(commandName(opt.command)) +
                     ": -f is required (or --kubeconfig, --context or --live for the live "
                     "cluster)");
  }
  if (opt.command == Command::Explain) {
    if (opt.from.empty()) return makeError("explain: --from is required");
    if (opt.to.empty()) return makeError("explain: --to is required");
    if (!opt.portGiven) return makeError("explain: --port is required");
  }
  if (opt.command == Command::Diff && opt.with.empty()) {
    return makeError("diff: --with is required");
  }
  return opt;
}

std::string usage() {
  return R"(Usage:
  sluicectl explain -f PATH... --from NS/POD|IP --to NS/POD|IP --port N|NAME
                    [--protocol TCP|UDP|SCTP] [-o text|json]
  sluicectl matrix  -f PATH... [--port N|NAME] [--protocol P] [-o text|json|svg]
  sluicectl diff    -f PATH... --with PATH... [--port N|NAME] [--protocol P] [-o text|json|svg]
  sluicectl lint    -f PATH... [-o text|json]
  sluicectl explain --node ...      also answer from this node's datapath and compare (exit 3
                                    on a mismatch); [--bpf-pin-dir DIR] [--admin-socket PATH]
  sluicectl status    [-o text|json]               the local daemon (root; --admin-socket PATH,
  sluicectl endpoints [-o text|json]               default /run/sluice/admin.sock)
  sluicectl policy NS/POD [-o text|json]           an endpoint's applied allow set + counters
  sluicectl flows [--follow] [--denied] [--pod NS/POD] [-o text|json]
  Instead of -f PATH..., every command reads the live cluster with --kubeconfig FILE,
  --context NAME or --live ($KUBECONFIG, else the in-cluster service account); there
  `diff --with PATH...` answers what applying those files would change.

Answers "would this traffic be allowed, and why?" from manifests, with the same engine the
node daemon enforces.

  -f, --filename PATH...  files or directories of YAML/JSON (multi-document, List kinds) with
                          Namespace, Pod and NetworkPolicy objects; repeatable
      --with PATH...      diff: the changed set of manifests, compared against -f (against
                          the live cluster: its objects with these applied over them)
      --kubeconfig FILE   read the live cluster through this kubeconfig
      --context NAME      kubeconfig context (default: its current-context)
      --live              read the live cluster ($KUBECONFIG, else in-cluster)
      --from, --to        a pod as NS/POD, or an IP address (an address of a known pod is
                          that pod; any other address is outside the cluster)
  -p, --port N|NAME       destination port, or a container port name resolved against each
                          destination pod (matrix/diff default: 80)
      --protocol P        TCP (default), UDP or SCTP
  -o, --output FORMAT     text (default) or json; matrix and diff also svg (a picture grouped
                          by namespace; rsvg-convert turns it into PNG)
  -v, --verbose           also print decoder notes on stderr

Matrices mark each pair: + allowed, X denied, and in audit mode a (allowed now, denied once
enforced) or o (denied now, allowed once enforced); diff pictures highlight changed pairs.

Audit mode: a NetworkPolicy annotated sluice.io/enforcement: audit is evaluated but not
enforced. It isolates nobody and allows nothing now; explain and matrix also answer "once
enforced", counting audited policies as enforced, and name the audited policies that would
deny (or allow) a flow. Any other value of the annotation is enforced (lint warns).

Exit codes: 0 success, 1 lint findings, 2 bad input or usage, 3 explain --node: the datapath
and the engine disagree, 4 the daemon could not be asked.
)";
}

}  // namespace sluice::ctl
