// Where the daemon's view of the cluster comes from. A Source delivers whole, consistent
// snapshots (Namespaces, Pods, NetworkPolicies); the daemon never sees partial updates. The
// manifest directory (dir/) is one source; the Kubernetes API (kube/) plugs in behind the same
// interface.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/model/types.h"

namespace sluice::source {

struct Snapshot {
  model::Cluster cluster;
  // Objects the source rejected and is currently not using (their last good version, if any,
  // is in `cluster`): "file: Kind ns/name: field: problem".
  std::vector<Error> errors;
  // Bumped on every snapshot a source delivers.
  uint64_t generation = 0;
  // When the change this snapshot carries was first seen (the first event of a debounced or
  // coalesced batch; the start time for the initial snapshot). Steady clock: policy update latency is
  // measured from here to "backend apply returned".
  std::chrono::steady_clock::time_point eventSeen{};
  // Wall clock (CLOCK_REALTIME, ns since the epoch) at which the source began reading the state
  // this snapshot holds: any change written before this instant is included.
  int64_t readWallNs = 0;
  // Sources with versioned objects (the Kubernetes API): resource ("pods", "namespaces",
  // "networkpolicies") -> the resourceVersion of the newest event of that kind this snapshot
  // includes. The daemon writes it to <state-dir>/applied-versions.json once applied, so a
  // writer can wait for "my change is enforced" (watches deliver each kind in order).
  std::map<std::string, std::string> resourceVersions;
  // Nothing the engine reads changed since the last snapshot (`cluster` is empty and must not
  // replace the model); only `resourceVersions` moved on.
  bool versionsOnly = false;
};

class Source {
 public:
  using Callback = std::function<void(Snapshot)>;

  virtual ~Source() = default;

  // Begins watching. The first snapshot is the complete initial state: the directory source
  // delivers it before start() returns; the API server source (kube/) delivers it on its own
  // thread once every kind is listed, so a server that is down at start leaves the daemon up
  // and not ready. Later snapshots arrive on the source's own thread. The callback must not
  // block for long and must not throw.
  virtual Status start(Callback onSnapshot) = 0;
  // Stops watching; no callback runs after stop() returns. Idempotent.
  virtual void stop() = 0;
  // For logs: "dir:/etc/sluice/manifests".
  virtual std::string describe() const = 0;
};

}  // namespace sluice::source
