// The flow log (--flow-log PATH|-): one JSON object per line per flow event, e.g.
//   {"time":"2026-11-23T12:00:00.123456789Z","node":"n1","endpoint":3,"pod":"default/web",
//    "ifindex":12,"direction":"ingress","src":"10.1.0.9","srcPod":"default/client",
//    "srcPort":40000,"dst":"10.1.0.5","dstPod":"default/web","dstPort":80,"protocol":6,
//    "peerClass":17,"verdict":"denied","reason":"policy","policies":["default/deny"],
//    "why":"denied: isolated for ingress by default/deny, whose rules do not match"}
// `direction` is relative to the pod, as everywhere in Sluice. `reason` is the datapath's drop
// reason (the metrics label); `why` is the engine's explanation in `sluicectl explain`'s words
// (engine/wording.h) for policy verdicts, and the drop reason in words for the others.
//
// The pipeline (FlowRecorder): backend event -> per-endpoint rate limit (token bucket; what it
// refuses is counted, never queued) -> annotation against the daemon's model (pods by address,
// engine verdict) -> the log file and the ring of recent flows `sluicectl flows` reads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "policyd/daemon/model_view.h"
#include "policyd/datapath/flow_event.h"

namespace sluice::engine {
class Evaluator;
}

namespace sluice::daemon {

class FlowLog {
 public:
  // "-" is stdout; anything else is appended to (created 0640).
  static Result<std::unique_ptr<FlowLog>> open(const std::string& path);
  ~FlowLog();
  FlowLog(const FlowLog&) = delete;
  FlowLog& operator=(const FlowLog&) = delete;

  void write(std::string_view line);  // adds the newline; thread-safe
  // Opens the path again (after logrotate moved the file away: SIGHUP). On failure the old file
  // stays in use. A no-op for stdout.
  Status reopen();
  const std::string& path() const { return path_; }

 private:
  FlowLog(std::FILE* f, bool owned, std::string path)
      : file_(f), owned_(owned), path_(std::move(path)) {}
  std::mutex mu_;
  std::FILE* file_;
  bool owned_;
  std::string path_;
};

// What the daemon's model says about one flow event.
struct FlowAnnotation {
  std::string srcPod;  // "ns/name" of the pod owning the address, any node; "" when none
  std::string dstPod;
  // The engine's explanation (engine/wording.h) for policy verdicts; the drop reason in words
  // for other drops.
  std::string why;
  // Denied by policy: the policies isolating the endpoint in the event's direction. Allowed: the
  // policy whose rule admitted it (empty when the endpoint is not isolated).
  std::vector<std::string> policies;
  // The engine's verdict on the event's side, when it could evaluate it; a policy drop the
  // engine allows (or the reverse) is a bug and the line says so.
  std::optional<bool> engineAllowed;
  // Audit mode (engine/audit.h): an allowed flow that an audited policy would deny once
  // enforced is logged with verdict "audit-deny", naming those policies.
  bool auditDeny = false;
  std::vector<std::string> auditPolicies;
};

// One flow-log line (any backend's event); `pod` may be empty. Kept for callers without a model.
std::string flowLogLine(const datapath::FlowEvent& e, const std::string& pod);
// The full line, with the node name and the annotation.
std::string flowLogLine(const datapath::FlowEvent& e, const std::string& node,
                        const std::string& pod, const FlowAnnotation& a);

// Drop reasons in words ("spoofed" -> "denied: source address is not the pod's own").
std::string dropReasonText(std::string_view reason);

// Annotates flow events against the model behind a ModelView. The evaluator (with its address
// index of every pod in the cluster) is built once per model generation and reused while the
// generation stays, so a flood of events costs hash lookups, never a scan of the pods; under a
// model that changes constantly it is rebuilt at most every `minRebuild`, and events wait (they
// are annotated against the model as it is when their turn comes).
class FlowAnnotator {
 public:
  explicit FlowAnnotator(const ModelView& model,
                         std::chrono::milliseconds minRebuild = std::chrono::milliseconds(250));
  ~FlowAnnotator();

  // Annotates a prefix of `events` into `out` (appended) and returns its length: up to 1024 of
  // them, or none when the model changed less than minRebuild after the last rebuild.
  size_t annotate(const std::vector<datapath::FlowEvent>& events, std::vector<FlowAnnotation>& out,
                  std::chrono::steady_clock::time_point now);
  uint64_t rebuilds() const { return rebuilds_; }

 private:
  FlowAnnotation annotateOne(const engine::Evaluator& ev, const datapath::FlowEvent& e) const;

  const ModelView& model_;
  const std::chrono::milliseconds minRebuild_;
  std::unique_ptr<engine::Evaluator> evaluator_;  // valid only under readModel, same generation
  std::optional<uint64_t> generation_;
  std::chrono::steady_clock::time_point lastRebuild_{};
  uint64_t rebuilds_ = 0;
};

// A token bucket per endpoint: `ratePerSecond` events a second, bursts of `burst`. Endpoint 0
// (an interface that is not an endpoint) has its own bucket. Idle, full buckets are forgotten.
class FlowRateLimiter {
 public:
  FlowRateLimiter(double ratePerSecond, double burst);
  bool admit(uint32_t endpoint, std::chrono::steady_clock::time_point now);
  uint64_t suppressed() const { return suppressed_; }

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last{};
  };
  double rate_;
  double burst_;
  std::unordered_map<uint32_t, Bucket> buckets_;
  std::chrono::steady_clock::time_point lastPrune_{};
  uint64_t suppressed_ = 0;
};

// One recorded flow, as `sluicectl flows` shows it.
struct FlowRecord {
  uint64_t seq = 0;  // 1, 2, ...: followers ask for what came after the last one they saw
  bool denied = false;
  std::string pod;  // the endpoint's "ns/name"
  std::string srcPod;
  std::string dstPod;
  std::string line;  // the flow-log JSON line
};

// The last `capacity` flows, and a wait for new ones (sluicectl flows --follow).
class FlowRing {
 public:
  explicit FlowRing(size_t capacity) : capacity_(capacity) {}
  void push(FlowRecord r);
  // Records with seq > after, oldest first (at most `max`).
  std::vector<FlowRecord> since(uint64_t after, size_t max) const;
  // Waits until a record with seq > after exists, or the timeout passes; true when one does.
  bool waitFor(uint64_t after, std::chrono::milliseconds timeout) const;
  uint64_t lastSeq() const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<FlowRecord> records_;
  uint64_t nextSeq_ = 1;
};

struct FlowRecorderOptions {
  std::string node;
  double ratePerSecond = 100;  // per endpoint
  double burst = 200;
  size_t maxPending = 16384;  // events waiting for annotation; beyond this they are suppressed
  // Write allowed flows (--flow-log-allowed new). Without it an allowed event (the datapath
  // reports new flows of audited endpoints) is written only when it is an audit-deny.
  bool logAllowed = false;
};

struct FlowRecorderStats {
  uint64_t writtenDenied = 0;
  uint64_t writtenAllowed = 0;
  uint64_t suppressedRate = 0;      // refused by the per-endpoint rate limit
  uint64_t suppressedOverflow = 0;  // the pending queue was full
  uint64_t engineDisagreements = 0;
  uint64_t writtenAuditDenied = 0;
  // Audit-deny flows per audited policy: ("ns/name", direction) -> flows.
  std::map<std::pair<std::string, compiler::Direction>, uint64_t> auditDenied;
};

// Rate limit -> annotate -> log + ring. offer() and flush() run on the pump thread; stats() on
// any thread.
class FlowRecorder {
 public:
  using PodOf = std::function<std::string(uint32_t endpoint)>;
  FlowRecorder(FlowRecorderOptions options, const ModelView& model, PodOf podOf, FlowLog* log,
               FlowRing* ring);
  void offer(const datapath::FlowEvent& e, std::chrono::steady_clock::time_point now);
  // Annotates and writes what it can; returns true when events are still waiting.
  bool flush(std::chrono::steady_clock::time_point now);
  FlowRecorderStats stats() const;

 private:
  const FlowRecorderOptions options_;
  PodOf podOf_;
  FlowLog* log_;
  FlowRing* ring_;
  FlowAnnotator annotator_;
  FlowRateLimiter limiter_;
  std::vector<datapath::FlowEvent> pending_;
  mutable std::mutex statsMu_;
  FlowRecorderStats stats_;
};

}  // namespace sluice::daemon
