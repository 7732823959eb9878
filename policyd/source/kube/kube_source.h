// The Kubernetes API server as the cluster source: one informer (list+watch) per kind —
// Namespaces, Pods, NetworkPolicies, Nodes — feeding per-kind stores (store.h) that know every
// per-object add, update and delete (by resourceVersion and content hash, not whole objects).
//
// Delivery: each watch event becomes a per-object upsert or delete (source.h Update); a relist
// after 410 Gone hands on only the differences. There is no fixed debounce: changes go out as
// soon as they are in the stores, and whatever arrives while the consumer is busy with the
// previous Update is coalesced (per key, the newest wins) into the next. Update::eventSeen is
// when the first event of that batch was received.
//
// Readiness: the first Update (initialComplete) is delivered only once the initial list of every
// kind is complete. start() does not wait for it: with the API server down at start the daemon
// stays up and not ready (pinned state keeps enforcing) while the informers retry.
//
// Updates that change nothing the engine reads (pod status conditions) cause a versionsOnly
// Update (the applied-versions barrier still moves). Nodes never reach the Updates: this node's
// spec.podCIDRs go to `onLocalPodCidrs` (the podcidrs file the CNI `usePodCidr` mode reads) and
// every other node's podCIDRs are routed via its InternalIP (node_routes.h), in step as Nodes
// come, change and go.
#pragma once

#include <array>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "policyd/source/kube/config.h"
#include "policyd/source/kube/informer.h"
#include "policyd/source/kube/node_routes.h"
#include "policyd/source/kube/store.h"
#include "policyd/source/source.h"

namespace sluice::source::kube {

struct KubeSourceOptions {
  ClusterConfig cluster;
  std::string nodeName;
  InformerOptions informer;
  // Null: no routes are managed (sluicectl, tests that do not look at routes).
  std::shared_ptr<RouteTable> routes;
  NodeRouter::PodCidrsSink onLocalPodCidrs;
};

class KubeSource final : public Source, private InformerSink {
 public:
  static Result<std::unique_ptr<KubeSource>> create(KubeSourceOptions options);
  ~KubeSource() override;

  Status start(Callback onUpdate) override;
  void stop() override;
  std::string describe() const override;

  // Waits until the initial state has been delivered (sluicectl's one-shot read). False on
  // timeout.
  bool waitSynced(std::chrono::milliseconds timeout);
  // The most recent informer failure (for sluicectl's error message and tests).
  std::optional<Error> lastError() const;

  // Counters, for tests and logs.
  struct Stats {
    uint64_t lists = 0;   // complete lists applied (initial + relists)
    uint64_t events = 0;  // watch events applied
    uint64_t failures = 0;
    uint64_t updates = 0;  // Updates delivered
  };
  Stats stats() const;
  // Every store change so far, in order (tests: relist diffs).
  std::vector<std::pair<Kind, Change>> changeLog() const;
  void keepChangeLog(bool keep);

 private:
  explicit KubeSource(KubeSourceOptions options);

  void listed(Kind kind, std::vector<Object> items,
              std::chrono::steady_clock::time_point received) override;
  void event(Kind kind, EventType type, Object object,
             std::chrono::steady_clock::time_point received) override;
  void failed(Kind kind, const Error& error) override;

  void markDirty(Kind kind, std::chrono::steady_clock::time_point received);
  // Logs the change (tests), queues it for the next Update and tracks the object's error.
  // True when the consumer has something new (an object or an error changed).
  bool record(Kind kind, Change&& c);
  void deliverLoop(std::stop_token stop);
  Update takeUpdate();

  KubeSourceOptions options_;
  Callback callback_;
  std::vector<std::unique_ptr<Informer>> informers_;

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::array<KindStore, kKindCount> stores_;
  std::array<bool, kKindCount> listed_{};
  // Per engine kind (Namespace, Pod, NetworkPolicy), what the next Update carries: key -> the
  // newest usable version, or nothing (delete).
  std::array<std::map<std::string, std::optional<Value>>, 3> pending_;
  // "Kind key" -> the error of an object the decoder rejects.
  std::map<std::string, Error> errors_;
  bool errorsDirty_ = false;
  bool dirty_ = false;
  bool nodesDirty_ = false;
  bool versionsDirty_ = false;  // an event changed nothing the engine reads (versionsOnly)
  std::chrono::steady_clock::time_point firstPending_{};
  int64_t firstPendingWallNs_ = 0;
  bool synced_ = false;
  std::condition_variable syncedCv_;
  std::optional<Error> lastError_;
  Stats stats_;
  bool keepLog_ = false;
  std::vector<std::pair<Kind, Change>> log_;
  uint64_t generation_ = 0;
  // Per kind, the resourceVersion of the newest event (or listed object) in the stores.
  std::array<std::string, kKindCount> newestVersion_;
  std::unique_ptr<NodeRouter> router_;
  std::jthread deliver_;  // last: stopped first
};

// What sluice-policyd's `--source kube` builds: config from --kubeconfig/--context or the
// in-cluster defaults, routes through netlink, the node's pod CIDRs through `onLocalPodCidrs`.
struct KubeSourceFactoryOptions {
  std::string kubeconfig;
  std::string context;
  std::string nodeName;
  NodeRouter::PodCidrsSink onLocalPodCidrs;
};
Result<std::unique_ptr<Source>> makeKubeSource(const KubeSourceFactoryOptions& options);

// One consistent read of the cluster (sluicectl): lists every kind once and returns the
// complete state, or the error that kept it from completing within `timeout`.
Result<Snapshot> readClusterOnce(const ClusterConfig& config, std::chrono::milliseconds timeout);

}  // namespace sluice::source::kube
