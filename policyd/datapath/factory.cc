#include "policyd/datapath/factory.h"

#include "policyd/datapath/bpf/bpf_backend.h"
#include "policyd/datapath/nft/nft_backend.h"

namespace sluice::datapath {

namespace {

bpf::BpfOptions bpfOptions(const BackendOptions& o) {
  bpf::BpfOptions b;
  b.pinDir = o.bpfPinDir;
  b.established = o.established;
  b.reportAllowedFlows = o.reportAllowedFlows;
  return b;
}

nft::NftOptions nftOptions(const BackendOptions& o) {
  nft::NftOptions n;
  n.established = o.established;
  return n;
}

}  // namespace

Result<std::unique_ptr<Backend>> makeBackend(const BackendOptions& options) {
  if (options.kind == "bpf") {
    auto b = bpf::makeBpfBackend(bpfOptions(options));
    if (!b.ok()) return b.error().wrap("bpf datapath");
    return b;
  }
  if (options.kind == "nft") {
    auto b = nft::makeNftBackend(nftOptions(options));
    if (!b.ok()) return b.error().wrap("nft datapath");
    return b;
  }
  return makeError("datapath: want bpf or nft, got \"" + options.kind + "\"");
}

Status uninstallBackend(const BackendOptions& options) {
  if (options.kind == "bpf") {
    if (auto st = bpf::uninstall(bpfOptions(options)); !st.ok()) {
      return st.error().wrap("bpf uninstall");
    }
    return Status::Ok();
  }
  if (options.kind == "nft") {
    if (auto st = nft::uninstall(nftOptions(options)); !st.ok()) {
      return st.error().wrap("nft uninstall");
    }
    return Status::Ok();
  }
  return makeError("datapath: want bpf or nft, got \"" + options.kind + "\"");
}

}  // namespace sluice::datapath
