// The nftables backend: lowering.h's table written with `nft -f` (one input = one atomic netlink
// batch), into the network namespace of the calling thread.
//
// The table outlives the daemon. A new backend never flushes or deletes it: its first sync reads
// back the names of what the table holds and rewrites the contents in one batch (renderReplace),
// so there is no moment without enforcement and counters that are still wanted keep their
// values. After that, the backend keeps a mirror of what it wrote and every apply, attach and
// detach writes only the difference (element adds/deletes, chain rewrites), computed from the
// part of the IR that changed (lowerDiffInPlace; attach/detach lower one endpoint).
//
// Restart (backend.h contract): until this process has written the table, attach() of an
// endpoint the table already dispatches and detach() change nothing in the kernel (the earlier
// instance's policy keeps enforcing; a write without the IR would turn every endpoint
// not-ready), and apply() fails: sync() comes first.
//
// Element-only changes (per-pod churn: pods joining or leaving classes, revision bumps, most
// allow-set changes) are written as a libnftnl batch without the nft binary (element_writer.h).
// Dropped packets reach the flow log through nflog (openFlowEvents, nflog.h).
// Not done yet (issue 9): table, chain and rule writes still go through the nft binary (one
// `nft -f` input, one atomic batch), not libnftnl.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/datapath/backend.h"
#include "policyd/datapath/nft/lowering.h"
#include "policyd/datapath/nft/render.h"

namespace sluice::datapath::nft {

class NftBackend : public Backend {
 public:
  explicit NftBackend(NftOptions opts) : opts_(std::move(opts)) {}

  Status attach(const EndpointAttachment& ep) override;
  Status detach(const EndpointAttachment& ep) override;
  Result<bool> attached(const EndpointAttachment& ep) override;
  // On a table an earlier instance wrote, requires a sync first (backend.h contract).
  Status apply(const compiler::Diff& diff) override;
  Status sync(const compiler::State& desired) override;
  Result<std::vector<RuleCounter>> counters() override;
  Result<std::vector<DropCount>> dropCounts() override;
  Result<std::vector<EndpointAttachment>> endpoints() override;
  Result<std::unique_ptr<FlowEventReader>> openFlowEvents() override;

 private:
  // Writes `state` lowered with the attachments (diff against the mirror, or a replace of what
  // the kernel holds), then makes it the mirror. Caller holds mu_.
  Status write(const compiler::State& state);
  // The change to the global objects and to endpoint `id`'s (attach, detach). Needs the mirror.
  Status writeScoped(const compiler::State& state, compiler::EndpointId id);
  // Element-only changes through libnftnl, everything else through nft. Needs the mirror.
  Status writeOps(const TableOps& ops);

  const NftOptions opts_;
  std::mutex mu_;
  Attachments attachments_;
  std::optional<compiler::State> state_;  // the IR last synced or applied
  std::optional<Table> mirror_;           // what the kernel's table holds, as we wrote it
  // Endpoints detached before this process first wrote: the first write does not carry them
  // over from the earlier instance's table.
  std::set<compiler::EndpointId> detachedBeforeWrite_;
};

Result<std::unique_ptr<Backend>> makeNftBackend(const NftOptions& opts);

// Runs `nft -f` on `script` (one transaction). Errors carry nft's message.
Status runNft(const NftOptions& opts, const std::string& script);
// `nft -j <args>` parsed output as text.
Result<std::string> queryNft(const NftOptions& opts, const std::string& args);
// What the kernel's table holds, by name; exists == false when there is no table.
Result<TableNames> readTableNames(const NftOptions& opts);
// Removes the table and with it all enforcement (`sluice-policyd --uninstall`). Succeeds when
// there is no table.
Status uninstall(const NftOptions& opts);

}  // namespace sluice::datapath::nft
