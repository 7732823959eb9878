// sluice-policyd's command line (DESIGN.md §4). Parsing only; main.cc acts on it.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/datapath/backend.h"

namespace sluice::daemon {

struct DaemonOptions {
  std::string nodeName;
  std::string source;      // "kube" or "dir:PATH"
  std::string sourceDir;   // PATH of dir:PATH
  std::string kubeconfig;  // --source kube: empty = $KUBECONFIG, else in-cluster
  std::string context;     // kubeconfig context; empty = current-context
  std::string datapath = "bpf";
  std::string socketPath = "/run/sluice/policyd.sock";
  std::string stateDir = "/var/lib/sluice";
  std::string bpfPinDir = "/sys/fs/bpf/sluice";
  datapath::EstablishedMode established = datapath::EstablishedMode::Recheck;
  std::string metricsAddr;      // empty: no HTTP server
  std::string flowLog;          // empty: no flow log; "-": stdout
  bool flowLogAllowed = false;  // --flow-log-allowed new: first packet of each new flow
  double flowLogRate = 100;     // events a second per endpoint
  double flowLogBurst = 200;
  // Live sluicectl (admin_server.h); default: admin.sock beside --socket; "none": off.
  std::string adminSocket;
  std::string logLevel = "info";
  std::vector<std::string> podCidrs;
  std::chrono::milliseconds podWait{2000};
  std::chrono::milliseconds sourceDebounce{0};
  bool help = false;
  // --uninstall: remove what --datapath left in the kernel (nft table; bpf tc filters and pinned
  // maps) and exit. Needs no --node-name or --source.
  bool uninstall = false;
};

// Accepts `--flag value` and `--flag=value`. Errors name the flag.
Result<DaemonOptions> parseArgs(const std::vector<std::string>& args);
std::string usage();

}  // namespace sluice::daemon
