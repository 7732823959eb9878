// sluicectl as a function: arguments in, output on two streams, exit code out. The binary's main
// only forwards argv; tests call run() directly as well as the binary.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/ctl/node_explain.h"
#include "policyd/model/decode.h"

namespace sluice::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFindings = 1;  // lint found something
inline constexpr int kExitBadInput = 2;  // usage errors, unreadable or invalid manifests

struct RunOptions {
  // The binary sets this: the loaded manifests are not freed on return, because the process
  // exits right after and tearing down 100,000 pods' labels costs more than answering.
  bool leakAtExit = false;
  // Reads the live cluster (kubeconfig path, context; both empty: the defaults). The binary
  // wires the kube source's one-shot read; unset, the live-cluster flags are an error.
  std::function<Result<model::Decoded>(const std::string& kubeconfig, const std::string& context)>
      readLive;
  // explain --node: reads this node's datapath (the binary wires the bpf reader).
  ReadDatapath readDatapath;
};

// `args` excludes the program name.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
        const RunOptions& runOptions = {});

}  // namespace sluice::ctl
