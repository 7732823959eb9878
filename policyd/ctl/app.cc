#include "policyd/ctl/app.h"

#include <exception>
#include <memory>
#include <set>
#include <sstream>

#include "policyd/ctl/args.h"
#include "policyd/ctl/diff.h"
#include "policyd/ctl/explain.h"
#include "policyd/ctl/lint.h"
#include "policyd/ctl/live.h"
#include "policyd/ctl/matrix.h"
#include "policyd/ctl/node_explain.h"
#include "policyd/engine/evaluator.h"
#include "policyd/model/decode.h"

namespace sluice::ctl {

namespace {

// Loads manifests. Any rejected object or unreadable file makes the whole input bad: a dry run
// that silently dropped a policy would answer a different question than the one asked.
std::unique_ptr<model::Cluster> checked(model::Decoded d, const Options& opt, std::ostream& err) {
  if (opt.verbose) {
    for (const auto& n : d.notes) err << "sluicectl: note: " << n << "\n";
  }
  if (!d.errors.empty()) {
    for (const auto& e : d.errors) err << "sluicectl: error: " << e.message << "\n";
    return nullptr;
  }
  return std::make_unique<model::Cluster>(std::move(d.cluster));
}

std::unique_ptr<model::Cluster> load(const std::vector<std::string>& paths, const Options& opt,
                                     std::ostream& err) {
  return checked(model::loadPaths(paths), opt, err);
}

std::unique_ptr<model::Cluster> loadLive(const Options& opt, const RunOptions& run,
                                         std::ostream& err) {
  if (!run.readLive) {
    err << "sluicectl: error: reading a live cluster is not available here\n";
    return nullptr;
  }
  auto d = run.readLive(opt.kubeconfig, opt.context);
  if (!d.ok()) {
    err << "sluicectl: error: " << d.error().message << "\n";
    return nullptr;
  }
  return checked(std::move(*d), opt, err);
}

// `kubectl apply` of `files` over `live`: an object in the files replaces the live one of the
// same kind and name; every other live object stays.
std::unique_ptr<model::Cluster> applied(const model::Cluster& live, model::Cluster files) {
  auto out = std::make_unique<model::Cluster>(std::move(files));
  auto keep = [](auto& into, const auto& from, auto key) {
    std::set<std::string> have;
    for (const auto& o : into) have.insert(key(o));
    for (const auto& o : from)
      if (!have.contains(key(o))) into.push_back(o);
  };
  keep(out->namespaces, live.namespaces, [](const auto& n) { return n.name; });
  keep(out->pods, live.pods, [](const auto& p) { return p.key(); });
  keep(out->policies, live.policies, [](const auto& p) { return p.key(); });
  return out;
}

uint8_t protocolNumber(model::Protocol p) { return static_cast<uint8_t>(p); }

// RuleId -> "ns/policy spec.dir[i]" from the daemon; empty when it cannot be asked (the
// comparison does not need names).
RuleNames ruleNames(const Options& opt) {
  RuleNames names;
  (void)adminRequest(opt.adminSocket, nlohmann::json{{"op", "rules"}},
                     [&](const nlohmann::json& line) {
                       for (const auto& r : line.value("rules", nlohmann::json::array())) {
                         names[r.value("id", 0u)] = r.value("policy", std::string()) + " spec." +
                                                    r.value("direction", std::string()) + "[" +
                                                    std::to_string(r.value("rule", 0)) + "]";
                       }
                       return false;
                     });
  return names;
}

int runExplain(const Options& opt, const engine::Evaluator& ev, std::ostream& out,
               std::ostream& err, const RunOptions& run) {
  auto report = explain(ev, opt.from, opt.to, opt.query);
  if (!report) {
    err << "sluicectl: error: " << report.error().message << "\n";
    return kExitBadInput;
  }
  if (!opt.node) {
    if (opt.output == OutputFormat::Json) {
      renderExplainJson(out, *report);
    } else {
      renderExplainText(out, *report);
    }
    return kExitOk;
  }
  if (!run.readDatapath) {
    err << "sluicectl: error: explain --node: reading the datapath is not available here\n";
    return kExitBadInput;
  }
  if (!report->srcIp || !report->dstIp) {
    err << "sluicectl: error: explain --node: both ends need an address (a pod without "
           "status.podIPs has none)\n";
    return kExitBadInput;
  }
  auto node = run.readDatapath(opt.pinDir, *report->srcIp, *report->dstIp,
                               protocolNumber(opt.query.protocol), report->port);
  if (!node) {
    err << "sluicectl: error: explain --node: " << node.error().message << "\n";
    return kExitDaemon;
  }
  const auto cmp = compareWithNode(*report, *node);
  const auto names = ruleNames(opt);
  if (opt.output == OutputFormat::Json) {
    std::ostringstream engineJson;
    renderExplainJson(engineJson, *report);
    auto j = nlohmann::ordered_json::parse(engineJson.str());
    j["node"] = nodeJson(cmp, names);
    out << j.dump() << "\n";
  } else {
    renderExplainText(out, *report);
    renderNodeText(out, *report, cmp, names, opt.pinDir);
  }
  if (!cmp.agree) {
    for (const auto& m : cmp.mismatches) {
      err << "sluicectl: MISMATCH between this node's datapath and the engine: " << m << "\n";
    }
    return kExitMismatch;
  }
  return kExitOk;
}

int runMatrix(const Options& opt, const engine::Evaluator& ev, std::ostream& out) {
  Matrix m = computeMatrix(ev, opt.query);
  if (opt.output == OutputFormat::Json) {
    renderMatrixJson(out, m);
  } else if (opt.output == OutputFormat::Svg) {
    renderMatrixSvg(out, m);
  } else {
    renderMatrixText(out, m);
  }
  return kExitOk;
}

int runLint(const Options& opt, const engine::Evaluator& ev, std::ostream& out,
            std::ostream& err) {
  auto findings = lint(ev);
  if (opt.output == OutputFormat::Json) {
    renderLintJson(out, findings);
  } else {
    renderLintText(out, findings);
    const auto& c = ev.cluster();
    err << "sluicectl lint: " << findings.size() << " finding(s) in " << c.policies.size()
        << " policies, " << c.pods.size() << " pods, " << c.namespaces.size()
        << " namespaces\n";
  }
  return findings.empty() ? kExitOk : kExitFindings;
}

// Holds what a command loaded; optionally never frees it (RunOptions::leakAtExit).
struct Loaded {
  std::vector<std::unique_ptr<model::Cluster>> clusters;
  std::vector<std::unique_ptr<engine::Evaluator>> evaluators;
  bool leak = false;

  ~Loaded() {
    if (!leak) return;
    for (auto& c : clusters) (void)c.release();
    for (auto& e : evaluators) (void)e.release();
  }
  const engine::Evaluator& add(std::unique_ptr<model::Cluster> c) {
    clusters.push_back(std::move(c));
    evaluators.push_back(std::make_unique<engine::Evaluator>(*clusters.back()));
    return *evaluators.back();
  }
};

int dispatch(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
             Loaded& loaded, const RunOptions& runOptions) {
  auto parsed = parseArgs(args);
  if (!parsed) {
    err << "sluicectl: " << parsed.error().message << "\n\n" << usage();
    return kExitBadInput;
  }
  const Options& opt = *parsed;
  if (opt.command == Command::Help) {
    out << usage();
    return kExitOk;
  }
  if (isLiveCommand(opt.command)) return runLive(opt, out, err);
  auto cluster = opt.live ? loadLive(opt, runOptions, err) : load(opt.files, opt, err);
  if (!cluster) return kExitBadInput;
  const engine::Evaluator& ev = loaded.add(std::move(cluster));
  switch (opt.command) {
    case Command::Explain: return runExplain(opt, ev, out, err, runOptions);
    case Command::Matrix: return runMatrix(opt, ev, out);
    case Command::Lint: return runLint(opt, ev, out, err);
    case Command::Diff: {
      auto after = load(opt.with, opt, err);
      if (!after) return kExitBadInput;
      if (opt.live) after = applied(ev.cluster(), std::move(*after));
      const engine::Evaluator& evAfter = loaded.add(std::move(after));
      auto d = diffMatrices(computeMatrix(ev, opt.query), computeMatrix(evAfter, opt.query));
      if (opt.output == OutputFormat::Json) {
        renderDiffJson(out, d);
      } else if (opt.output == OutputFormat::Svg) {
        renderDiffSvg(out, d);
      } else {
        renderDiffText(out, d);
      }
      return kExitOk;
    }
    case Command::Help:
    case Command::Status:
    case Command::Endpoints:
    case Command::Policy:
    case Command::Flows: break;
  }
  return kExitOk;
}

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
        const RunOptions& runOptions) {
  try {
    Loaded loaded;
    loaded.leak = runOptions.leakAtExit;
    return dispatch(args, out, err, loaded, runOptions);
  } catch (const std::exception& e) {
    // Decoding validates input, so this is a bug; still, answer with a message, not a crash.
    err << "sluicectl: internal error: " << e.what() << "\n";
    return kExitBadInput;
  }
}

}  // namespace sluice::ctl
