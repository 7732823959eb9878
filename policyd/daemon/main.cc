// sluice-policyd: parses flags and wires the parts together. Everything else lives in the
// libraries beside this file (node_agent.h explains the sync path).
//
// Shutdown (SIGTERM/SIGINT): stop watching the source, answer waiting requests, close the
// endpoint socket, remove the ready marker. BPF programs and pinned maps (or the nft table) stay
// in place, so enforcement never lapses while the daemon is down; --uninstall removes them.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/file_lock.h"
#include "common/log.h"
#include "policyd/daemon/clock.h"
#include "policyd/daemon/endpoint_server.h"
#include "policyd/daemon/flow_log.h"
#include "policyd/daemon/host_network.h"
#include "policyd/daemon/http_server.h"
#include "policyd/daemon/node_agent.h"
#include "policyd/daemon/options.h"
#include "policyd/daemon/policy_compiler.h"
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

// Reads drop events from the datapath's ring buffer into the flow log, on its own thread.
class FlowLogPump {
 public:
  static Result<std::unique_ptr<FlowLogPump>> start(datapath::Backend& backend,
                                                    const std::string& path, NodeAgent& agent) {
    auto pump = std::unique_ptr<FlowLogPump>(new FlowLogPump());
    SLUICE_ASSIGN_OR_RETURN(pump->log_, FlowLog::open(path));
    SLUICE_ASSIGN_OR_RETURN(pump->reader_, backend.openFlowEvents());
    pump->thread_ = std::jthread([p = pump.get(), &agent](std::stop_token st) {
      FlowLog* log = p->log_.get();
      auto write = [log, &agent](const datapath::FlowEvent& e) {
        log->write(flowLogLine(e, agent.endpointName(e.endpoint)));
      };
      while (!st.stop_requested()) {
        if (auto r = p->reader_->poll(200, write); !r.ok()) {
          spdlog::warn("flow log read error=\"{}\"", r.error().message);
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
      }
    });
    return pump;
  }

 private:
  FlowLogPump() = default;
  std::unique_ptr<FlowLog> log_;
  std::unique_ptr<datapath::FlowEventReader> reader_;
  std::jthread thread_;  // declared last: joined before the reader and log go
};

HttpResponse serveHttp(NodeAgent& agent, const std::string& path) {
  if (path == "/metrics") {
    return {200, "text/plain; version=0.0.4; charset=utf-8", agent.metricsText()};
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

  std::unique_ptr<HttpServer> http;
  if (!opts.metricsAddr.empty()) {
    http = std::make_unique<HttpServer>(
        HttpServerOptions{opts.metricsAddr},
        [&agent](const std::string& p) { return serveHttp(agent, p); });
    if (auto st = http->start(); !st.ok()) return fail(st.error().message);
  }

  std::unique_ptr<FlowLogPump> flows;
  if (!opts.flowLog.empty()) {
    auto pump = FlowLogPump::start(**backend, opts.flowLog, agent);
    if (!pump.ok()) return fail(pump.error().wrap("flow log").message);
    flows = std::move(*pump);
  }

  std::unique_ptr<source::Source> source;
  if (opts.source == "kube") {
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
  if (auto st = source->start([&agent](source::Snapshot s) { agent.onSnapshot(std::move(s)); });
      !st.ok()) {
    return fail(st.error().message);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("shutting down signal={}; enforcement stays in place",
               sig == SIGTERM ? "TERM" : "INT");
  source->stop();
  flows.reset();
  agent.stop();
  server.stop();
  if (http) http->stop();
  spdlog::info("stopped");
  return 0;
}
