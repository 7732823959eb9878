// The one narrow interface between the policy pipeline and a kernel datapath. Backends lower
// the IR (compiler/ir.h) with pure functions and write the result with a thin kernel writer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/ip.h"
#include "common/result.h"
#include "policyd/compiler/ir.h"
#include "policyd/datapath/flow_event.h"

namespace sluice::datapath {

struct EndpointAttachment {
  compiler::EndpointId id = 0;
  std::string ifname;  // host-side veth
  int ifindex = 0;
  // The pod's own addresses (at most one per family, as Kubernetes allows). A packet leaving the
  // pod with any other source address is dropped as spoofed, so the peer of every policy
  // decision is an address its owner really sent from.
  std::vector<IpAddr> ips;
};

struct RuleCounter {
  compiler::RuleId rule = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// Packets a datapath dropped for one reason ("policy", "spoofed", "not-ready", ...: the stable
// names of the backend's drop reasons, used as a metrics label).
struct DropCount {
  std::string reason;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// Policy drops of one endpoint in one direction (the per-policy denied counters credit them to
// every policy isolating the endpoint there).
struct EndpointDropCount {
  compiler::EndpointId endpoint = 0;
  compiler::Direction direction = compiler::Direction::Ingress;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

struct ConntrackStats {
  uint64_t entries = 0;  // flows tracked now
  uint64_t expired = 0;  // idle flows deleted by the sweeper since this process started
};

enum class EstablishedMode { Recheck, Keep };

class Backend {
 public:
  virtual ~Backend() = default;

  // Attaches enforcement to the endpoint's host veth. From this moment until the endpoint's
  // policy is applied, everything to and from the pod is dropped (fail closed), so a pod is
  // never reachable before its policy is enforced. Idempotent.
  virtual Status attach(const EndpointAttachment& ep) = 0;
  // Removes enforcement and the endpoint's state. Succeeds when the link is already gone.
  virtual Status detach(const EndpointAttachment& ep) = 0;
  // True when the programs are attached and the endpoint is known to the datapath.
  virtual Result<bool> attached(const EndpointAttachment& ep) = 0;

  // Contract: after a restart, sync before applying diffs. A backend that finds kernel state it
  // did not write in this process (pinned maps, an existing table) does not know the IR that
  // state was lowered from, so a diff has no base; apply() before the first sync() then fails
  // (never a silent loss of the entries the diff does not name). On state this process created
  // (nothing was there), the first apply() may be a diff from the empty State.

  // Applies an incremental change.
  virtual Status apply(const compiler::Diff& diff) = 0;
  // Makes the kernel hold exactly `desired`, reading back what is already there (used at start
  // and after a restart, so a restart rewrites nothing that is already right).
  virtual Status sync(const compiler::State& desired) = 0;

  // Safe to call from any thread, concurrently with every other method (a /metrics scrape must
  // never wait behind an attach or a sync).
  virtual Result<std::vector<RuleCounter>> counters() = 0;
  // Drops by reason; same threading contract as counters().
  virtual Result<std::vector<DropCount>> dropCounts() = 0;

  // Every endpoint the kernel-side state holds (it outlives the daemon: pinned maps, attached
  // programs), with id, ifindex, ifname (empty when the link is gone) and addresses. The daemon
  // rebuilds its registry from this when endpoints.json is unreadable, and never allocates an id
  // that is listed here.
  virtual Result<std::vector<EndpointAttachment>> endpoints() = 0;

  // Policy drops by endpoint and direction, and conntrack occupancy; same threading contract as
  // counters(). A backend that does not count them says so.
  virtual Result<std::vector<EndpointDropCount>> endpointDropCounts() {
    return makeError("per-endpoint drop counters: not supported by this datapath");
  }
  virtual Result<ConntrackStats> conntrackStats() {
    return makeError("conntrack statistics: not supported by this datapath");
  }

  // The backend's flow events (drops, and allowed flows where it reports them), for the flow log
  // and per-policy metrics. Opened once per node; the reader may be polled from any thread.
  virtual Result<std::unique_ptr<FlowEventReader>> openFlowEvents() = 0;
};

}  // namespace sluice::datapath
