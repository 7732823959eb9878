#include "policyd/daemon/options.h"

#include <charconv>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>

#include "common/ip.h"
#include "policyd/daemon/http_server.h"

namespace sluice::daemon {

namespace {

Result<std::chrono::milliseconds> parseMillis(const std::string& flag, const std::string& v,
                                              long max) {
  long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < 0 || n > max) {
    return makeError(flag + ": want an integer 0.." + std::to_string(max) + ", got \"" + v + "\"");
  }
  return std::chrono::milliseconds(n);
}

}  // namespace

std::string usage() {
  return R"(usage: sluice-policyd --node-name NAME --source kube|dir:PATH [--kubeconfig FILE]
                      [--context NAME] [--datapath bpf|nft] [--socket PATH] [--state-dir DIR]
                      [--bpf-pin-dir DIR] [--established recheck|keep]
                      [--metrics-addr HOST:PORT] [--flow-log PATH|-]
                      [--flow-log-allowed none|new] [--flow-log-rate N] [--flow-log-burst N]
                      [--admin-socket PATH|none]
                      [--pod-cidr CIDR]... [--log-level LEVEL]
       sluice-policyd --uninstall [--datapath bpf|nft] [--bpf-pin-dir DIR]

  --node-name NAME          this node's name (Pod spec.nodeName)
  --source kube|dir:PATH    where Namespaces, Pods and NetworkPolicies come from: the API
                            server, or a directory of YAML/JSON manifests (reloaded on change)
  --kubeconfig FILE         kubeconfig for --source kube (default: $KUBECONFIG, else the
                            in-cluster service account)
  --context NAME            kubeconfig context (default: its current-context)
  --datapath bpf|nft        enforcement backend (default bpf)
  --socket PATH             endpoint socket for the CNI plugin (default /run/sluice/policyd.sock)
  --state-dir DIR           registry, pod CIDRs and ready marker (default /var/lib/sluice)
  --bpf-pin-dir DIR         bpffs directory for pinned maps (default /sys/fs/bpf/sluice)
  --established recheck|keep
                            re-check established flows after a policy change (default recheck)
  --metrics-addr HOST:PORT  serve /metrics, /healthz and /readyz (default: off)
  --flow-log PATH|-         write flow events (drops; allowed flows with --flow-log-allowed) as
                            JSON lines to PATH or stdout (default: off); SIGHUP reopens PATH
  --flow-log-allowed none|new
                            also log the first packet of every new allowed flow (default none;
                            endpoints under an audit-mode policy always report theirs)
  --flow-log-rate N         flow events a second per endpoint (default 100; beyond: counted in
                            sluice_flow_log_suppressed_total)
  --flow-log-burst N        bursts of up to N events per endpoint (default 200)
  --admin-socket PATH|none  root-only socket for live sluicectl (status, endpoints, policy,
                            flows); default admin.sock beside --socket
  --pod-cidr CIDR           this node's pod CIDR, repeatable; written to <state-dir>/podcidrs.json
                            for the CNI IPAM `usePodCidr` mode
  --log-level LEVEL         trace, debug, info, warn, error (default info)
  --pod-wait-ms N           how long an endpoint registration waits for its Pod object (2000)
  --source-debounce-ms N    quiet period before a changed manifest directory is re-read (0)
  --uninstall               remove the datapath's kernel state (nft: table inet sluice; bpf: the
                            tc filters of every endpoint in the pinned maps, then --bpf-pin-dir)
                            from this network namespace and exit; all enforcement ends
  -h, --help                this text
)";
}

Result<DaemonOptions> parseArgs(const std::vector<std::string>& args) {
  DaemonOptions o;
  std::string established = "recheck";
  std::string podWait, debounce;
  std::string flowAllowed = "none", flowRate, flowBurst;
  bool adminSocketSet = false;
  std::map<std::string, std::function<void(const std::string&)>> flags = {
      {"--node-name", [&](const std::string& v) { o.nodeName = v; }},
      {"--source", [&](const std::string& v) { o.source = v; }},
      {"--kubeconfig", [&](const std::string& v) { o.kubeconfig = v; }},
      {"--context", [&](const std::string& v) { o.context = v; }},
      {"--datapath", [&](const std::string& v) { o.datapath = v; }},
      {"--socket", [&](const std::string& v) { o.socketPath = v; }},
      {"--state-dir", [&](const std::string& v) { o.stateDir = v; }},
      {"--bpf-pin-dir", [&](const std::string& v) { o.bpfPinDir = v; }},
      {"--established", [&](const std::string& v) { established = v; }},
      {"--metrics-addr", [&](const std::string& v) { o.metricsAddr = v; }},
      {"--flow-log", [&](const std::string& v) { o.flowLog = v; }},
      {"--flow-log-allowed", [&](const std::string& v) { flowAllowed = v; }},
      {"--flow-log-rate", [&](const std::string& v) { flowRate = v; }},
      {"--flow-log-burst", [&](const std::string& v) { flowBurst = v; }},
      {"--admin-socket", [&](const std::string& v) { o.adminSocket = v; }},
      {"--log-level", [&](const std::string& v) { o.logLevel = v; }},
      {"--pod-cidr", [&](const std::string& v) { o.podCidrs.push_back(v); }},
      {"--pod-wait-ms", [&](const std::string& v) { podWait = v; }},
      {"--source-debounce-ms", [&](const std::string& v) { debounce = v; }},
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      o.help = true;
      return o;
    }
    if (a == "--uninstall") {
      o.uninstall = true;
      continue;
    }
    std::string name = a, value;
    bool inlineValue = false;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inlineValue = true;
    }
    auto it = flags.find(name);
    if (it == flags.end()) {
      return makeError(a.starts_with("-") ? "unknown flag " + name
                                          : "unexpected argument \"" + a + "\"");
    }
    if (!inlineValue) {
      if (i + 1 >= args.size()) return makeError(name + ": needs a value");
      value = args[++i];
    }
    it->second(value);
    if (name == "--admin-socket") adminSocketSet = true;
  }

  if (o.uninstall) {
    if (o.datapath != "bpf" && o.datapath != "nft") {
      return makeError("--datapath: want bpf or nft, got \"" + o.datapath + "\"");
    }
    if (o.bpfPinDir.empty()) return makeError("--bpf-pin-dir: empty path");
    return o;
  }
  if (o.nodeName.empty()) return makeError("--node-name is required");
  if (o.source.starts_with("dir:") && o.source.size() > 4) {
    o.sourceDir = o.source.substr(4);
  } else if (o.source.empty()) {
    return makeError("--source is required (kube or dir:PATH)");
  } else if (o.source != "kube") {
    return makeError("--source: want kube or dir:PATH, got \"" + o.source + "\"");
  }
  if (o.source != "kube" && (!o.kubeconfig.empty() || !o.context.empty())) {
    return makeError("--kubeconfig and --context need --source kube");
  }
  if (o.datapath != "bpf" && o.datapath != "nft") {
    return makeError("--datapath: want bpf or nft, got \"" + o.datapath + "\"");
  }
  if (established == "recheck") {
    o.established = datapath::EstablishedMode::Recheck;
  } else if (established == "keep") {
    o.established = datapath::EstablishedMode::Keep;
  } else {
    return makeError("--established: want recheck or keep, got \"" + established + "\"");
  }
  static const std::set<std::string> kLevels = {"trace",   "debug", "info",     "warn",
                                                "warning", "error", "critical", "off"};
  if (!kLevels.contains(o.logLevel)) {
    return makeError("--log-level: want trace, debug, info, warn or error, got \"" + o.logLevel +
                     "\"");
  }
  if (o.socketPath.empty()) return makeError("--socket: empty path");
  if (o.stateDir.empty()) return makeError("--state-dir: empty path");
  if (o.bpfPinDir.empty()) return makeError("--bpf-pin-dir: empty path");
  if (!o.metricsAddr.empty()) {
    if (auto hp = splitHostPort(o.metricsAddr); !hp.ok()) return hp.error().wrap("--metrics-addr");
  }
  if (flowAllowed == "none" || flowAllowed == "new") {
    o.flowLogAllowed = flowAllowed == "new";
  } else {
    return makeError("--flow-log-allowed: want none or new, got \"" + flowAllowed + "\"");
  }
  auto positive = [](const std::string& flag, const std::string& v) -> Result<double> {
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (v.empty() || end != v.c_str() + v.size() || !(d > 0) || d > 1e9) {
      return makeError(flag + ": want a positive number, got \"" + v + "\"");
    }
    return d;
  };
  if (!flowRate.empty()) {
    SLUICE_ASSIGN_OR_RETURN(o.flowLogRate, positive("--flow-log-rate", flowRate));
  }
  if (!flowBurst.empty()) {
    SLUICE_ASSIGN_OR_RETURN(o.flowLogBurst, positive("--flow-log-burst", flowBurst));
  }
  if (!adminSocketSet) {
    auto slash = o.socketPath.rfind('/');
    o.adminSocket =
        (slash == std::string::npos ? std::string() : o.socketPath.substr(0, slash + 1)) +
        "admin.sock";
  } else if (o.adminSocket == "none") {
    o.adminSocket.clear();
  } else if (o.adminSocket.empty()) {
    return makeError("--admin-socket: empty path (\"none\" turns it off)");
  } else if (o.adminSocket == o.socketPath) {
    return makeError("--admin-socket: must differ from --socket");
  }
  for (const auto& c : o.podCidrs) {
    if (auto p = Prefix::parse(c); !p.ok()) return p.error().wrap("--pod-cidr " + c);
  }
  if (!podWait.empty()) {
    SLUICE_ASSIGN_OR_RETURN(o.podWait, parseMillis("--pod-wait-ms", podWait, 600000));
  }
  if (!debounce.empty()) {
    SLUICE_ASSIGN_OR_RETURN(o.sourceDebounce, parseMillis("--source-debounce-ms", debounce, 60000));
  }
  return o;
}

}  // namespace sluice::daemon
