// Where the daemon's view of the cluster comes from. A Source delivers per-object changes
// (Namespaces, Pods, NetworkPolicies: upserts and deletes) as Updates; the daemon's cluster store
// (cluster_store.h) applies them and hands the compiler only what changed. The manifest
// directory (dir/) is one source; the Kubernetes API (kube/) is the other.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/model/types.h"

namespace sluice::source {

// What changed, per object. Within one Update a key appears at most once per kind (in the upserts
// or in the deletes): an Update is a net change. Upserts carry the whole new object; deletes
// name its key ("ns/name"; a namespace's name). Deleting an unknown key is allowed (no-op).
struct Changes {
  std::vector<model::Namespace> namespaceUpserts;
  std::vector<std::string> namespaceDeletes;
  std::vector<model::Pod> podUpserts;
  std::vector<std::string> podDeletes;
  std::vector<model::NetworkPolicy> policyUpserts;
  std::vector<std::string> policyDeletes;

  bool empty() const {
    return namespaceUpserts.empty() && namespaceDeletes.empty() && podUpserts.empty() &&
           podDeletes.empty() && policyUpserts.empty() && policyDeletes.empty();
  }
  size_t size() const {
    return namespaceUpserts.size() + namespaceDeletes.size() + podUpserts.size() +
           podDeletes.size() + policyUpserts.size() + policyDeletes.size();
  }
};

struct Update {
  Changes changes;
  // The objects the source currently rejects and is not using (their last good version, if any,
  // stays in effect): "file: Kind ns/name: field: problem". Absent: unchanged since the last
  // Update; present: the whole current list (empty once every problem is fixed).
  std::optional<std::vector<Error>> errors;
  // Set on the Update that completes the source's first full state (it and the ones before it
  // hold every object). Until then the daemon is not ready and compiles nothing: an empty model
  // would strip the pinned policy of every recovered endpoint.
  bool initialComplete = false;
  // Nothing the engine reads changed (`changes` is empty); only `resourceVersions` moved on.
  // Otherwise the Update stands for "the source re-read its state" even when that changed nothing
  // (a rewritten file with the same content): the daemon still records it as applied.
  bool versionsOnly = false;
  // Bumped on every Update a source delivers.
  uint64_t generation = 0;
  // When the first change this Update carries was received (the first of a coalesced batch; the
  // start time for the initial state). Steady clock: policy update latency is measured from here
  // to "backend apply returned".
  std::chrono::steady_clock::time_point eventSeen{};
  // Wall clock (CLOCK_REALTIME, ns since the epoch) at which the source began reading the state
  // this Update brings the daemon to: any change written before this instant is included.
  int64_t readWallNs = 0;
  // Sources with versioned objects (the Kubernetes API): resource ("pods", "namespaces",
  // "networkpolicies") -> the resourceVersion of the newest event of that kind included so far.
  // The daemon writes it to <state-dir>/applied-versions.json once applied, so a writer can wait
  // for "my change is enforced" (watches deliver each kind in order).
  std::map<std::string, std::string> resourceVersions;
};

// One complete, consistent read of the cluster (sluicectl's one-shot read).
struct Snapshot {
  model::Cluster cluster;
  std::vector<Error> errors;
  std::map<std::string, std::string> resourceVersions;
};

class Source {
 public:
  using Callback = std::function<void(Update)>;

  virtual ~Source() = default;

  // Begins watching. The first Updates up to the one marked initialComplete carry the complete
  // initial state: the directory source delivers it before start() returns; the API server
  // source (kube/) on its own thread once every kind is listed, so a server that is down at
  // start leaves the daemon up and not ready. Later Updates arrive on the source's own thread,
  // in order. The callback must not block for long and must not throw.
  virtual Status start(Callback onUpdate) = 0;
  // Stops watching; no callback runs after stop() returns. Idempotent.
  virtual void stop() = 0;
  // For logs: "dir:/etc/sluice/manifests".
  virtual std::string describe() const = 0;
};

}  // namespace sluice::source
