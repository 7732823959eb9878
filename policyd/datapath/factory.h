// Chooses and builds the datapath (--datapath bpf|nft). The daemon includes only this header
// and backend.h, so it builds without either backend's internals (libbpf, libnftnl).
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "policyd/datapath/backend.h"

namespace sluice::datapath {

struct BackendOptions {
  std::string kind = "bpf";                      // "bpf" or "nft"
  std::string bpfPinDir = "/sys/fs/bpf/sluice";  // bpf: where the maps are pinned
  EstablishedMode established = EstablishedMode::Recheck;
  // --flow-log-allowed new: report the first packet of every new flow (bpf only; nft reports
  // drops).
  bool reportAllowedFlows = false;
};

Result<std::unique_ptr<Backend>> makeBackend(const BackendOptions& options);

// Removes everything the backend left in the kernel of the calling thread's network namespace
// (bpf: the tc filters on every endpoint it lists, then the pinned maps; nft: `table inet
// sluice`). All enforcement ends. Succeeds when there is nothing to remove.
Status uninstallBackend(const BackendOptions& options);

}  // namespace sluice::datapath
