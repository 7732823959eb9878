// The node agent: owns the cluster store (the daemon's one model::Cluster), the endpoint
// registry, the compiler and the datapath backend, and is the one path through which state
// changes (kube-network-policies style: events only mark state dirty, one runner thread syncs).
//
// Inputs:
//   onUpdate()    a source's per-object changes (source.h); queued, applied by the runner
//   handle()      an endpoint request from the CNI plugin; blocks until it is done
// The runner takes everything pending at once (so concurrent CNI ADDs share one compile, and the
// source changes that arrived while a sync ran become one net change set: cluster_store.h),
// applies the source changes to the store (no-op upserts dropped), then:
//   add   backend.attach (fail closed: the pod's traffic is dropped until its policy is
//         applied), register + persist, compile, apply, then reply ok. When the source does not
//         know the Pod object yet, the endpoint stays out of the compiled state (still dropped)
//         for up to `podWait`, then proceeds without labels; the Update that brings the pod
//         corrects it.
//   del   backend.detach, unregister + persist, compile, apply, reply.
//   check the endpoint is registered, the backend says it is attached, and the addresses match.
// Nothing is compiled and no request is answered before the source's initial state is complete
// (Update::initialComplete). The first compile reads the whole store; later ones hand the
// compiler only the store's net change set (and the node context when it changed), O(change).
// The first sync (and any sync after a failed one) is a full backend.sync() of the compiled
// state; the others apply the compiler's diff. Host addresses are read on every sync and re-checked
// every `addressRecheck`; so are the endpoints' host veths (one gone without a DEL is
// unregistered).
//
// start() recovers the registry from <state-dir>: endpoints whose host veth is gone are
// detached and dropped, the others are re-attached (programs replaced in place; their pinned
// policy stays) before the first full sync. The datapath's pinned endpoints fill what the file
// lacks (it may be corrupt or lost): a live one the registry does not hold is adopted under its
// pinned id (container id and ifname from the host veth's alias, addresses from its host
// routes, pod from the first snapshot by address), so it stays enforced and a CNI DEL or CHECK
// finds it (by container id, or by host veth name); no id the datapath holds is allocated again.
// add refuses any interface that is not a host veth whose peer is in the request's pod netns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/endpoint_api.h"
#include "policyd/compiler/ir.h"
#include "policyd/daemon/clock.h"
#include "policyd/daemon/host_network.h"
#include "policyd/daemon/metrics.h"
#include "policyd/daemon/model_view.h"
#include "policyd/daemon/policy_compiler.h"
#include "policyd/daemon/registry.h"
#include "policyd/datapath/backend.h"
#include "policyd/model/types.h"
#include "policyd/source/cluster_store.h"
#include "policyd/source/source.h"

namespace sluice::daemon {

struct AgentOptions {
  std::string nodeName;
  std::string stateDir;
  std::chrono::milliseconds podWait{2000};
  std::chrono::milliseconds retryInterval{1000};    // after a failed apply/sync
  std::chrono::milliseconds addressRecheck{10000};  // re-read host addresses at least this often
  std::chrono::milliseconds requestTimeout{60000};  // handle() gives up after this
};

// For tests and /metrics.
struct AgentStats {
  uint64_t syncs = 0;  // successful
  uint64_t syncErrors = 0;
  uint64_t fullSyncs = 0;  // backend.sync() calls that succeeded
  uint64_t updates = 0;    // source Updates that carried state (not versionsOnly) consumed
  uint64_t lastGeneration = 0;
  size_t endpoints = 0;
  size_t waitingForPod = 0;
  size_t invalidObjects = 0;
  uint64_t revision = 0;
  std::chrono::nanoseconds lastSyncDuration{0};  // compile + apply
  std::chrono::nanoseconds lastLatency{0};       // event seen -> apply returned
  bool ready = false;
};

class NodeAgent final : public ModelView {
 public:
  NodeAgent(AgentOptions options, datapath::Backend& backend, PolicyCompiler& compiler,
            HostNetwork& host, const Clock& clock);
  ~NodeAgent() override;
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  // Recovers the registry and starts the runner.
  Status start();
  // Answers every waiting request with an error, stops the runner and removes the ready marker.
  // Leaves the datapath as it is: enforcement continues while the daemon is down.
  void stop();

  void onUpdate(source::Update update);
  endpoint_api::Reply handle(const endpoint_api::Request& request);
  // Re-evaluates timers now (tests with a ManualClock call it after advancing).
  void wake();

  bool ready() const { return ready_.load(); }
  AgentStats stats() const;
  std::string metricsText();
  void readModel(const Reader& fn) const override;
  // "ns/pod" of a registered endpoint, "" when unknown (for the flow log).
  std::string endpointName(compiler::EndpointId id) const;
  // For live sluicectl and /metrics (copies, any thread): the registered endpoints, RuleId ->
  // origin of the applied state, and the applied policy of one endpoint (nullopt: none applied).
  std::vector<EndpointRecord> endpointRecords() const;
  std::vector<compiler::RuleOrigin> ruleOrigins() const;
  std::optional<compiler::EndpointPolicy> appliedPolicy(compiler::EndpointId id) const;

 private:
  struct PendingOp {
    endpoint_api::Request request;
    std::promise<endpoint_api::Reply> reply;
  };
  using OpPtr = std::shared_ptr<PendingOp>;
  struct Completion {
    OpPtr op;
    endpoint_api::Reply reply;
  };
  struct Waiter {
    Clock::TimePoint deadline;
    std::vector<OpPtr> ops;
  };

  void run(std::stop_token stop);
  void syncOnce(std::vector<OpPtr> ops, std::vector<source::Update> updates);
  void handleAdd(const OpPtr& op, std::vector<Completion>& done, bool& changed,
                 std::vector<compiler::EndpointId>& added);
  void handleDel(const OpPtr& op, std::vector<Completion>& done, bool& changed);
  endpoint_api::Reply check(const endpoint_api::Request& r);
  // Registry vs the datapath's pinned endpoints: adopts live ones the registry lacks, removes
  // those whose link is gone, and keeps nextId above every pinned id.
  Status recoverFromDatapath(bool registryLost);
  // Names recovered endpoints (no pod namespace/name) after the pod that owns their address.
  bool matchPodsByAddress();
  const EndpointRecord* findEndpoint(const endpoint_api::Request& r) const;
  // Unregisters endpoints whose host veth is gone (checked every `addressRecheck`).
  bool dropVanishedEndpoints();
  bool podKnown(const EndpointRecord& rec) const;
  bool refreshAddresses();
  compiler::NodeContext nodeContext() const;
  void publishEndpoints();
  // <state-dir>/applied-versions.json from pendingVersions_ (then cleared).
  void writeAppliedVersions();
  void finish(std::vector<Completion>& done);
  void countRequest(endpoint_api::Op op, bool ok);
  Clock::TimePoint nextTimer() const;

  const AgentOptions options_;
  datapath::Backend& backend_;
  PolicyCompiler& compiler_;
  HostNetwork& host_;
  const Clock& clock_;

  // Shared with the request/snapshot threads.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<OpPtr> ops_;
  std::vector<source::Update> updates_;
  bool initialSeen_ = false;  // an Update with initialComplete was queued
  bool stopping_ = false;
  bool started_ = false;
  bool wakeRequested_ = false;
  Clock::TimePoint timerAt_{};

  // Serialises the backend's mutating calls (runner, start); counters() and dropCounts() are
  // read without it.
  std::mutex backendMu_;

  // Runner-owned.
  Registry registry_;
  // The model: written by the runner under modelMu_ (readModel reads it under a shared lock),
  // read by the runner without it.
  source::ClusterStore store_;
  mutable std::shared_mutex modelMu_;
  uint64_t modelGeneration_ = 0;
  bool compiledOnce_ = false;           // the compiler has been given the whole store
  compiler::NodeContext compiledNode_;  // the node context the compiler last saw
  std::map<compiler::EndpointId, Waiter> waiting_;
  std::vector<IpAddr> hostAddresses_;
  Clock::TimePoint nextAddressCheck_{};
  Clock::TimePoint retryAt_{};
  bool retryPending_ = false;
  bool needFullSync_ = true;
  bool haveInitial_ = false;
  std::optional<int64_t> pendingAppliedWallNs_;
  std::map<std::string, std::string> pendingVersions_;
  std::optional<std::chrono::steady_clock::time_point> pendingEventSeen_;

  // Published for other threads.
  std::atomic<bool> ready_{false};
  mutable std::mutex statsMu_;
  AgentStats stats_;
  Histogram latency_{latencyBuckets()};
  std::vector<compiler::RuleOrigin> rules_;
  std::map<compiler::EndpointId, std::string> endpointNames_;
  std::vector<EndpointRecord> endpointRecords_;
  std::map<compiler::EndpointId, compiler::EndpointPolicy> appliedPolicies_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;  // (op, result) -> count

  std::jthread runner_;
};

}  // namespace sluice::daemon
