// sluice-policyd: parses flags and wires the parts together. Everything else lives in the
// libraries beside this file (node_agent.h explains the sync path).
//
// Shutdown (SIGTERM/SIGINT): stop watching the source, answer waiting requests, close the
// endpoint socket, remove the ready marker. BPF programs and pinned maps (or the nft table) stay
// in place, so enforcement never lapses while the daemon is down; --uninstall removes them.
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/file_lock.h"
#include "common/log.h"
#include "policyd/daemon/admin_server.h"
#include "policyd/daemon/admin_service.h"
#include "policyd/daemon/clock.h"
#include "policyd/daemon/endpoint_server.h"
#include "policyd/daemon/flow_log.h"
#include "policyd/daemon/host_network.h"
#include "policyd/daemon/http_server.h"
#include "policyd/daemon/node_agent.h"
#include "policyd/daemon/options.h"
#include "policyd/daemon/policy_compiler.h"
#include "policyd/daemon/policy_metrics.h"
#include "policyd/daemon/state_files.h"
#include "policyd/datapath/factory.h"
#include "policyd/source/dir/dir_source.h"
#include "policyd/source/kube/kube_source.h"

namespace {

using namespace sluice;
using namespace sluice::daemon;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int fail(const std::string& what) {
  spdlog::critical("{}", what);
  return kExitFailure;
}

// Reads flow events from the datapath into the flow log and the ring `sluicectl flows` reads,
// on its own thread (flow_log.h: rate limit, annotation against the model).
class FlowLogPump {
 public:
  static Result<std::unique_ptr<FlowLogPump>> start(datapath::Backend& backend,
                                                    const DaemonOptions& opts, NodeAgent& agent) {
    auto pump = std::unique_ptr<FlowLogPump>(new FlowLogPump());
    SLUICE_ASSIGN_OR_RETURN(pump->log_, FlowLog::open(opts.flowLog));
    SLUICE_ASSIGN_OR_RETURN(pump->reader_, backend.openFlowEvents());
    FlowRecorderOptions ro;
    ro.node = opts.nodeName;
    ro.ratePerSecond = opts.flowLogRate;
    ro.logAllowed = opts.flowLogAllowed;
    ro.burst = opts.flowLogBurst;
    pump->recorder_ = std::make_unique<FlowRecorder>(
        ro, agent, [&agent](uint32_t id) { return agent.endpointName(id); }, pump->log_.get(),
        &pump->ring_);
    pump->thread_ = std::jthread([p = pump.get()](std::stop_token st) {
      FlowRecorder& rec = *p->recorder_;
      bool waiting = false;
      while (!st.stop_requested()) {
        auto offer = [&rec](const datapath::FlowEvent& e) {
          rec.offer(e, std::chrono::steady_clock::now());
        };
        // While events wait for a model rebuild, poll briefly so they go out soon after.
        if (auto r = p->reader_->poll(waiting ? 50 : 200, offer); !r.ok()) {
          spdlog::warn("flow log read error=\"{}\"", r.error().message);
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        waiting = rec.flush(std::chrono::steady_clock::now());
      }
    });
    return pump;
  }
  FlowLog& log() { return *log_; }
  FlowRing& ring() { return ring_; }
  FlowRecorderStats stats() const { return recorder_->stats(); }

 private:
  FlowLogPump() = default;
  std::unique_ptr<FlowLog> log_;
  std::unique_ptr<datapath::FlowEventReader> reader_;
  FlowRing ring_{4096};
  std::unique_ptr<FlowRecorder> recorder_;
  std::jthread thread_;  // declared last: joined before the reader and log go
};

double secondsOf(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

HttpResponse serveHttp(NodeAgent& agent, PolicyMetrics& policyMetrics, const std::string& path) {
  if (path == "/metrics") {
    MetricsWriter w;
    policyMetrics.write(w);
    return {200, "text/plain; version=0.0.4; charset=utf-8", agent.metricsText() + w.text()};
  }
  if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
  if (path == "/readyz") {
    if (agent.ready()) return {200, "text/plain; charset=utf-8", "ready\n"};
    return {503, "text/plain; charset=utf-8", "not ready: first snapshot not applied yet\n"};
  }
  return {404, "text/plain; charset=utf-8", "not found\n"};
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parseArgs(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) {
    std::fprintf(stderr, "sluice-policyd: %s\n\n%s", parsed.error().message.c_str(),
                 usage().c_str());
    return kExitUsage;
  }
  const DaemonOptions& opts = *parsed;
  if (opts.help) {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  datapath::BackendOptions backendOptions;
  backendOptions.kind = opts.datapath;
  backendOptions.bpfPinDir = opts.bpfPinDir;
  backendOptions.established = opts.established;
  backendOptions.reportAllowedFlows = opts.flowLogAllowed;

  initLogging("sluice-policyd", "-", opts.logLevel);
  if (opts.uninstall) {
    if (auto st = datapath::uninstallBackend(backendOptions); !st.ok()) {
      return fail(st.error().message);
    }
    return 0;
  }
  // Signals are taken synchronously by this thread only; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // reopens the flow log (rotation)
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  spdlog::info("starting node={} source={} datapath={} socket={} state_dir={} pin_dir={}",
               opts.nodeName, opts.source, opts.datapath, opts.socketPath, opts.stateDir,
               opts.bpfPinDir);
  if (auto st = ensureDirectory(opts.stateDir); !st.ok()) return fail(st.error().message);
  auto lock = FileLock::tryAcquire(opts.stateDir + "/" + std::string(kLockFile));
  if (!lock.ok()) {
    return fail("state dir " + opts.stateDir +
                " is owned by another sluice-policyd: " + lock.error().message);
  }
  if (!opts.podCidrs.empty()) {
    if (auto st = writePodCidrs(opts.stateDir, opts.podCidrs); !st.ok()) {
      return fail(st.error().message);
    }
  }

  auto backend = datapath::makeBackend(backendOptions);
  if (!backend.ok()) return fail(backend.error().message);
  auto compiler = makeIncrementalCompiler();
  SystemHostNetwork host;
  SteadyClock clock;

  AgentOptions agentOptions;
  agentOptions.nodeName = opts.nodeName;
  agentOptions.stateDir = opts.stateDir;
  agentOptions.podWait = opts.podWait;
  NodeAgent agent(agentOptions, **backend, *compiler, host, clock);
  if (auto st = agent.start(); !st.ok()) return fail(st.error().message);

  EndpointServerOptions serverOptions;
  serverOptions.socketPath = opts.socketPath;
  EndpointServer server(serverOptions, [&agent](const auto& r) { return agent.handle(r); });
  if (auto st = server.start(); !st.ok()) return fail(st.error().message);

  std::unique_ptr<FlowLogPump> flows;
  if (!opts.flowLog.empty()) {
    auto pump = FlowLogPump::start(**backend, opts, agent);
    if (!pump.ok()) return fail(pump.error().wrap("flow log").message);
    flows = std::move(*pump);
  }

  PolicyMetrics::Sources metricSources;
  metricSources.endpointName = [&agent](compiler::EndpointId id) { return agent.endpointName(id); };
  metricSources.ruleOrigins = [&agent] { return agent.ruleOrigins(); };
  metricSources.flowLog = [&flows]() -> std::optional<FlowLogCounts> {
    if (!flows) return std::nullopt;
    auto s = flows->stats();
    return FlowLogCounts{s.writtenDenied,      s.writtenAllowed,       s.suppressedRate,
                         s.suppressedOverflow, s.engineDisagreements, s.writtenAuditDenied,
                         s.auditDenied};
  };
  PolicyMetrics policyMetrics(**backend, agent, metricSources);

  std::unique_ptr<HttpServer> http;
  if (!opts.metricsAddr.empty()) {
    http = std::make_unique<HttpServer>(HttpServerOptions{opts.metricsAddr},
                                        [&agent, &policyMetrics](const std::string& p) {
                                          return serveHttp(agent, policyMetrics, p);
                                        });
    if (auto st = http->start(); !st.ok()) return fail(st.error().message);
  }

  AdminSources adminSources;
  adminSources.status = [&agent, &opts, &flows] {
    auto s = agent.stats();
    nlohmann::json j{{"node", opts.nodeName},
                     {"source", opts.source},
                     {"datapath", opts.datapath},
                     {"ready", s.ready},
                     {"sync", s.ready ? "synced" : "waiting for the first snapshot"},
                     {"revision", s.revision},
                     {"syncs", s.syncs},
                     {"syncErrors", s.syncErrors},
                     {"updates", s.updates},
                     {"endpoints", s.endpoints},
                     {"waitingForPod", s.waitingForPod},
                     {"invalidObjects", s.invalidObjects},
                     {"lastSyncSeconds", secondsOf(s.lastSyncDuration)},
                     {"lastUpdateLatencySeconds", secondsOf(s.lastLatency)}};
    agent.readModel([&j](const model::Cluster& c, uint64_t generation) {
      j["model"] = {{"generation", generation},
                    {"namespaces", c.namespaces.size()},
                    {"pods", c.pods.size()},
                    {"policies", c.policies.size()}};
    });
    if (flows) {
      auto f = flows->stats();
      j["flowLog"] = {{"path", flows->log().path()},
                      {"denied", f.writtenDenied},
                      {"allowed", f.writtenAllowed},
                      {"suppressed", f.suppressedRate + f.suppressedOverflow}};
    }
    return j;
  };
  adminSources.endpoints = [&agent] { return agent.endpointRecords(); };
  adminSources.appliedPolicy = [&agent](compiler::EndpointId id) {
    return agent.appliedPolicy(id);
  };
  adminSources.ruleOrigins = [&agent] { return agent.ruleOrigins(); };
  adminSources.counters = [&backend] { return (*backend)->counters(); };
  adminSources.flows = flows ? &flows->ring() : nullptr;
  std::unique_ptr<AdminServer> admin;
  if (!opts.adminSocket.empty()) {
    admin = std::make_unique<AdminServer>(
        AdminServerOptions{opts.adminSocket},
        [&adminSources](const nlohmann::json& req, const AdminServer::Send& send,
                        const std::atomic<bool>& stopping) {
          handleAdminRequest(adminSources, req, send, stopping);
        });
    if (auto st = admin->start(); !st.ok()) return fail(st.error().message);
  }

  std::unique_ptr<source::Source> source;
  if (opts.source == "kube") {
    // One malloc arena: the informer threads decode list pages in bursts; with an arena per
    // thread, what they free stays resident in their arenas (about 70 MB at 100,000 pods).
    mallopt(M_ARENA_MAX, 1);
    // Starts without waiting for the API server: until every kind is listed the agent stays not
    // ready and pinned state keeps enforcing.
    auto kube = source::kube::makeKubeSource(
        {opts.kubeconfig, opts.context, opts.nodeName,
         [dir = opts.stateDir](const auto& cidrs) { return writePodCidrs(dir, cidrs); }});
    if (!kube.ok()) return fail(kube.error().wrap("--source kube").message);
    source = std::move(*kube);
  } else {
    source::DirSourceOptions sourceOptions;
    sourceOptions.root = opts.sourceDir;
    sourceOptions.debounce = opts.sourceDebounce;
    sourceOptions.statePath = opts.stateDir + "/" + std::string(kDirSourceStateFile);
    sourceOptions.writeState = [](const std::string& path, std::string_view text) {
      return writeFileAtomic(path, text);
    };
    source = std::make_unique<source::DirSource>(sourceOptions);
  }
  if (auto st = source->start([&agent](source::Update u) { agent.onUpdate(std::move(u)); });
      !st.ok()) {
    return fail(st.error().message);
  }

  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    if (flows) {
      if (auto st = flows->log().reopen(); !st.ok()) {
        spdlog::error("flow log reopen on SIGHUP: {}", st.error().message);
      } else {
        spdlog::info("flow log reopened path={}", flows->log().path());
      }
    }
  }
  spdlog::info("shutting down signal={}; enforcement stays in place",
               sig == SIGTERM ? "TERM" : "INT");
  source->stop();
  if (admin) admin->stop();
  if (http) http->stop();
  flows.reset();
  agent.stop();
  server.stop();
  spdlog::info("stopped");
  return 0;
}
