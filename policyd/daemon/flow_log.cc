#include "policyd/daemon/flow_log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "policyd/engine/audit.h"
#include "policyd/engine/evaluator.h"
#include "policyd/engine/wording.h"

namespace sluice::daemon {

namespace {

std::string rfc3339(int64_t wallNs) {
  time_t secs = static_cast<time_t>(wallNs / 1000000000LL);
  long nanos = static_cast<long>(wallNs % 1000000000LL);
  tm t{};
  ::gmtime_r(&secs, &t);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof buf - n, ".%09ldZ", nanos);
  return buf;
}

Result<std::FILE*> openAppend(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return makeError("flow log " + path + ": " + std::strerror(errno), errno);
  std::FILE* f = ::fdopen(fd, "a");
  if (f == nullptr) {
    int err = errno;
    ::close(fd);
    return makeError("flow log " + path + ": " + std::strerror(err), err);
  }
  return f;
}

}  // namespace

Result<std::unique_ptr<FlowLog>> FlowLog::open(const std::string& path) {
  if (path == "-") return std::unique_ptr<FlowLog>(new FlowLog(stdout, false, path));
  SLUICE_ASSIGN_OR_RETURN(auto f, openAppend(path));
  return std::unique_ptr<FlowLog>(new FlowLog(f, true, path));
}

Status FlowLog::reopen() {
  if (!owned_) return {};
  SLUICE_ASSIGN_OR_RETURN(auto f, openAppend(path_));
  std::lock_guard lock(mu_);
  std::fclose(file_);
  file_ = f;
  return {};
}

FlowLog::~FlowLog() {
  if (owned_) {
    std::fclose(file_);
  } else {
    std::fflush(file_);
  }
}

void FlowLog::write(std::string_view line) {
  std::lock_guard lock(mu_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fputc('\n', file_);
  std::fflush(file_);
}

namespace {

nlohmann::ordered_json baseJson(const datapath::FlowEvent& e) {
  nlohmann::ordered_json j;
  j["time"] = rfc3339(e.wallNs);
  return j;
}

}  // namespace

std::string flowLogLine(const datapath::FlowEvent& e, const std::string& pod) {
  return flowLogLine(e, "", pod, FlowAnnotation{});
}

std::string flowLogLine(const datapath::FlowEvent& e, const std::string& node,
                        const std::string& pod, const FlowAnnotation& a) {
  nlohmann::ordered_json j = baseJson(e);
  if (!node.empty()) j["node"] = node;
  j["endpoint"] = e.endpoint;
  j["pod"] = pod;
  j["ifindex"] = e.ifindex;
  j["direction"] = e.direction == compiler::Direction::Ingress ? "ingress" : "egress";
  j["src"] = e.src.toString();
  if (!a.srcPod.empty()) j["srcPod"] = a.srcPod;
  j["srcPort"] = e.srcPort;
  j["dst"] = e.dst.toString();
  if (!a.dstPod.empty()) j["dstPod"] = a.dstPod;
  j["dstPort"] = e.dstPort;
  j["protocol"] = e.protocol;
  j["peerClass"] = e.peerClass;
  j["verdict"] = e.verdict == datapath::FlowVerdict::Denied ? "denied"
                 : a.auditDeny                                ? "audit-deny"
                                                              : "allowed";
  j["reason"] = e.reason;
  if (!a.policies.empty()) j["policies"] = a.policies;
  if (!a.auditPolicies.empty()) j["auditPolicies"] = a.auditPolicies;
  if (!a.why.empty()) j["why"] = a.why;
  if (a.engineAllowed && *a.engineAllowed != (e.verdict == datapath::FlowVerdict::Allowed)) {
    j["engineMismatch"] = true;
  }
  return j.dump();
}

std::string dropReasonText(std::string_view reason) {
  static const std::pair<std::string_view, std::string_view> kTexts[] = {
      {"no-endpoint", "the interface is not a registered endpoint"},
      {"not-ready", "the endpoint's policy is not applied yet (fail closed)"},
      {"fragment-without-first", "a later IP fragment whose first fragment was not seen"},
      {"fragment-denied", "a later IP fragment of a denied datagram"},
      {"malformed", "truncated or malformed headers"},
      {"unsupported-l3", "neither IPv4, IPv6 nor ARP"},
      {"spoofed", "source address is not the pod's own (spoofed)"},
      {"icmp-unrelated", "an ICMP error that quotes no tracked, allowed flow"},
      {"nd-invalid", "IPv6 neighbour discovery from off the link"},
      {"ct-full", "new flow, but the conntrack table or the endpoint's quota is full"},
  };
  for (const auto& [name, text] : kTexts) {
    if (name == reason) return "denied: " + std::string(text);
  }
  return "denied: " + std::string(reason);
}

namespace {

std::optional<model::Protocol> portProtocol(uint8_t p) {
  switch (p) {
    case 6:
      return model::Protocol::TCP;
    case 17:
      return model::Protocol::UDP;
    case 132:
      return model::Protocol::SCTP;
    default:
      return std::nullopt;
  }
}

constexpr size_t kMaxBatch = 1024;

bool isPolicyReason(std::string_view r) { return r == "policy" || r == "policy-revoked"; }

}  // namespace

FlowAnnotator::FlowAnnotator(const ModelView& model, std::chrono::milliseconds minRebuild)
    : model_(model), minRebuild_(minRebuild) {}

FlowAnnotator::~FlowAnnotator() = default;

size_t FlowAnnotator::annotate(const std::vector<datapath::FlowEvent>& events,
                               std::vector<FlowAnnotation>& out,
                               std::chrono::steady_clock::time_point now) {
  size_t done = 0;
  model_.readModel([&](const model::Cluster& cluster, uint64_t generation) {
    if (!generation_ || *generation_ != generation) {
      // The old evaluator points into a model that is gone: it is never used again. Within the
      // rebuild interval events wait rather than cost one rebuild each.
      evaluator_.reset();
      generation_.reset();
      if (rebuilds_ > 0 && now - lastRebuild_ < minRebuild_) return;
      evaluator_ = std::make_unique<engine::Evaluator>(cluster);
      generation_ = generation;
      lastRebuild_ = now;
      ++rebuilds_;
    }
    // The model's lock is shared with the sync path: hold it for a bounded batch only.
    const size_t n = std::min(events.size(), kMaxBatch);
    out.reserve(out.size() + n);
    for (size_t i = 0; i < n; ++i) out.push_back(annotateOne(*evaluator_, events[i]));
    done = n;
  });
  return done;
}

FlowAnnotation FlowAnnotator::annotateOne(const engine::Evaluator& ev,
                                          const datapath::FlowEvent& e) const {
  FlowAnnotation a;
  const model::Pod* src = ev.podByIp(e.src);
  const model::Pod* dst = ev.podByIp(e.dst);
  if (src) a.srcPod = src->key();
  if (dst) a.dstPod = dst->key();
  const bool denied = e.verdict == datapath::FlowVerdict::Denied;
  if (denied && !isPolicyReason(e.reason)) {
    a.why = dropReasonText(e.reason);
    return a;
  }
  const auto dir = e.direction;
  const model::Pod* self = dir == compiler::Direction::Ingress ? dst : src;
  if (!self) {
    a.why = denied ? "denied by policy; the model knows no pod with this endpoint's address"
                   : "allowed; the model knows no pod with this endpoint's address";
    return a;
  }
  engine::SideExplanation side;
  if (auto proto = portProtocol(e.protocol)) {
    engine::Flow flow;
    flow.src = engine::FlowEnd{src, e.src};
    flow.dst = engine::FlowEnd{dst, e.dst};
    flow.protocol = *proto;
    flow.port = e.dstPort;
    auto audit = engine::evaluateAudit(ev, flow);
    const bool ingress = dir == compiler::Direction::Ingress;
    side = ingress ? audit.now.ingress : audit.now.egress;
    a.engineAllowed = side.allowed;
    // Audit-deny is judged on this endpoint's side only: the peer's side is logged (and
    // counted) by the peer's node, against the policies that isolate it there.
    const auto& once = ingress ? audit.onceEnforced.ingress : audit.onceEnforced.egress;
    if (!denied && side.allowed && !once.allowed) {
      a.auditDeny = true;
      a.auditPolicies = once.selectingPolicies;  // all audited: an enforced one would allow it
      engine::AuditVerdict mine = audit;
      mine.outcome = engine::AuditOutcome::AuditDeny;
      mine.policies = a.auditPolicies;
      a.why = engine::describeAudit(mine);
    }
  } else {
    // NetworkPolicy ports name TCP, UDP and SCTP only; another protocol (ICMP) passes an
    // isolated side only through a rule without ports, which the engine cannot ask about here.
    side.applies = true;
    for (const auto* pol : ev.selectingPolicies(*self, dir)) {
      side.selectingPolicies.push_back(pol->key());
    }
    side.isolated = !side.selectingPolicies.empty();
    side.allowed = !denied;
  }
  if (denied) {
    a.policies = side.selectingPolicies;
    a.why = "denied: " + engine::sideText(dir, side);
  } else {
    if (side.allowedBy) a.policies.push_back(side.allowedBy->policy);
    const std::string now =
        side.allowed
            ? engine::sideText(dir, side)
            : "allowed by the datapath, but the engine says " + engine::sideText(dir, side);
    a.why = a.auditDeny ? "audit-deny: " + a.why + "; now " + now : now;
  }
  if (denied && side.allowed && a.engineAllowed) {
    a.why = "denied by the datapath, but the engine allows it: " + engine::sideText(dir, side);
  }
  return a;
}

FlowRateLimiter::FlowRateLimiter(double ratePerSecond, double burst)
    : rate_(ratePerSecond), burst_(std::max(burst, 1.0)) {}

bool FlowRateLimiter::admit(uint32_t endpoint, std::chrono::steady_clock::time_point now) {
  if (now - lastPrune_ > std::chrono::seconds(60)) {
    // A bucket that would be full again holds nothing worth keeping.
    std::erase_if(buckets_, [&](const auto& kv) {
      return std::chrono::duration<double>(now - kv.second.last).count() * rate_ +
                 kv.second.tokens >=
             burst_;
    });
    lastPrune_ = now;
  }
  auto [it, fresh] = buckets_.try_emplace(endpoint, Bucket{burst_, now});
  Bucket& b = it->second;
  if (!fresh) {
    double elapsed = std::chrono::duration<double>(now - b.last).count();
    if (elapsed > 0) b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
    b.last = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  ++suppressed_;
  return false;
}

void FlowRing::push(FlowRecord r) {
  {
    std::lock_guard lock(mu_);
    r.seq = nextSeq_++;
    records_.push_back(std::move(r));
    while (records_.size() > capacity_) records_.pop_front();
  }
  cv_.notify_all();
}

std::vector<FlowRecord> FlowRing::since(uint64_t after, size_t max) const {
  std::lock_guard lock(mu_);
  std::vector<FlowRecord> out;
  auto it = std::upper_bound(records_.begin(), records_.end(), after,
                             [](uint64_t s, const FlowRecord& r) { return s < r.seq; });
  for (; it != records_.end() && out.size() < max; ++it) out.push_back(*it);
  return out;
}

bool FlowRing::waitFor(uint64_t after, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return nextSeq_ - 1 > after; });
}

uint64_t FlowRing::lastSeq() const {
  std::lock_guard lock(mu_);
  return nextSeq_ - 1;
}

FlowRecorder::FlowRecorder(FlowRecorderOptions options, const ModelView& model, PodOf podOf,
                           FlowLog* log, FlowRing* ring)
    : options_(std::move(options)),
      podOf_(std::move(podOf)),
      log_(log),
      ring_(ring),
      annotator_(model),
      limiter_(options_.ratePerSecond, options_.burst) {}

void FlowRecorder::offer(const datapath::FlowEvent& e, std::chrono::steady_clock::time_point now) {
  if (!limiter_.admit(e.endpoint, now)) {
    std::lock_guard lock(statsMu_);
    ++stats_.suppressedRate;
    return;
  }
  if (pending_.size() >= options_.maxPending) {
    std::lock_guard lock(statsMu_);
    ++stats_.suppressedOverflow;
    return;
  }
  pending_.push_back(e);
}

bool FlowRecorder::flush(std::chrono::steady_clock::time_point now) {
  if (pending_.empty()) return false;
  std::vector<FlowAnnotation> notes;
  size_t n = annotator_.annotate(pending_, notes, now);
  if (n == 0) return true;
  FlowRecorderStats delta;
  for (size_t i = 0; i < n; ++i) {
    const auto& e = pending_[i];
    const auto& a = notes[i];
    std::string pod = podOf_ ? podOf_(e.endpoint) : std::string();
    const bool denied = e.verdict == datapath::FlowVerdict::Denied;
    if (!denied && !a.auditDeny && !options_.logAllowed) continue;  // an audited endpoint's flow
    std::string line = flowLogLine(e, options_.node, pod, a);
    if (log_) log_->write(line);
    if (ring_) ring_->push(FlowRecord{0, denied, pod, a.srcPod, a.dstPod, line});
    ++(denied ? delta.writtenDenied : delta.writtenAllowed);
    if (a.auditDeny) {
      ++delta.writtenAuditDenied;
      for (const auto& p : a.auditPolicies) ++delta.auditDenied[{p, e.direction}];
    }
    if (a.engineAllowed && *a.engineAllowed == denied) ++delta.engineDisagreements;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
  std::lock_guard lock(statsMu_);
  stats_.writtenDenied += delta.writtenDenied;
  stats_.writtenAllowed += delta.writtenAllowed;
  stats_.engineDisagreements += delta.engineDisagreements;
  stats_.writtenAuditDenied += delta.writtenAuditDenied;
  for (const auto& [k, n] : delta.auditDenied) stats_.auditDenied[k] += n;
  return !pending_.empty();
}

FlowRecorderStats FlowRecorder::stats() const {
  std::lock_guard lock(statsMu_);
  return stats_;
}

}  // namespace sluice::daemon
