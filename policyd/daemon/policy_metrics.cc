#include "policyd/daemon/policy_metrics.h"

#include <set>

#include "policyd/engine/evaluator.h"

namespace sluice::daemon {

namespace {

std::pair<std::string, std::string> splitKey(const std::string& key) {
  auto slash = key.find('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

const char* dirName(compiler::Direction d) { return model::directionName(d); }

}  // namespace

PolicyMetrics::PolicyMetrics(datapath::Backend& backend, const ModelView& model, Sources sources)
    : backend_(backend), model_(model), sources_(std::move(sources)) {}

PolicyMetrics::~PolicyMetrics() = default;

void PolicyMetrics::credit(const std::vector<datapath::EndpointDropCount>& counts) {
  std::lock_guard lock(mu_);
  std::vector<std::pair<const datapath::EndpointDropCount*, uint64_t>> fresh;
  std::set<std::pair<compiler::EndpointId, compiler::Direction>> present;
  for (const auto& c : counts) {
    auto key = std::make_pair(c.endpoint, c.direction);
    present.insert(key);
    uint64_t& prev = seen_[key];
    // A count below the last one is a new endpoint under a reused id: all of it is new.
    uint64_t delta = c.packets >= prev ? c.packets - prev : c.packets;
    prev = c.packets;
    if (delta > 0) fresh.emplace_back(&c, delta);
  }
  std::erase_if(seen_, [&](const auto& kv) { return !present.contains(kv.first); });
  if (fresh.empty()) return;
  model_.readModel([&](const model::Cluster& cluster, uint64_t generation) {
    if (!generation_ || *generation_ != generation) {
      evaluator_ = std::make_unique<engine::Evaluator>(cluster);
      generation_ = generation;
    }
    for (const auto& [c, delta] : fresh) {
      auto [ns, name] = splitKey(sources_.endpointName ? sources_.endpointName(c->endpoint) : "");
      const model::Pod* pod = name.empty() ? nullptr : evaluator_->findPod(ns, name);
      std::vector<const model::NetworkPolicy*> pols;
      if (pod) pols = evaluator_->selectingPolicies(*pod, c->direction);
      if (pols.empty()) {
        unattributed_ += delta;
        continue;
      }
      for (const auto* p : pols) denied_[{p->namespace_, p->name, dirName(c->direction)}] += delta;
    }
  });
}

std::map<PolicyMetrics::PolicyKey, uint64_t> PolicyMetrics::denied() const {
  std::lock_guard lock(mu_);
  return denied_;
}

uint64_t PolicyMetrics::unattributed() const {
  std::lock_guard lock(mu_);
  return unattributed_;
}

void PolicyMetrics::write(MetricsWriter& w) {
  auto drops = backend_.endpointDropCounts();
  if (drops.ok()) credit(*drops);
  auto counters = backend_.counters();
  if (counters.ok() && sources_.ruleOrigins) {
    const auto origins = sources_.ruleOrigins();
    std::map<PolicyKey, std::pair<uint64_t, uint64_t>> allowed;
    for (const auto& c : *counters) {
      if (c.rule >= origins.size()) continue;
      const auto& o = origins[c.rule];
      auto [ns, name] = splitKey(o.policy);
      auto& sum = allowed[{ns, name, dirName(o.direction)}];
      sum.first += c.packets;
      sum.second += c.bytes;
    }
    w.family("sluice_policy_allowed_packets_total", "counter",
             "Packets admitted by the rules of each policy, replies included.");
    for (const auto& [k, v] : allowed) {
      w.sample("sluice_policy_allowed_packets_total",
               {{"namespace", std::get<0>(k)},
                {"policy", std::get<1>(k)},
                {"direction", std::get<2>(k)}},
               static_cast<double>(v.first));
    }
    w.family("sluice_policy_allowed_bytes_total", "counter",
             "Bytes admitted by the rules of each policy, replies included.");
    for (const auto& [k, v] : allowed) {
      w.sample("sluice_policy_allowed_bytes_total",
               {{"namespace", std::get<0>(k)},
                {"policy", std::get<1>(k)},
                {"direction", std::get<2>(k)}},
               static_cast<double>(v.second));
    }
  }
  w.family("sluice_datapath_endpoint_drops_ok", "gauge",
           "1 when the per-endpoint policy drop counters could be read.");
  w.sample("sluice_datapath_endpoint_drops_ok", drops.ok() ? 1 : 0);
  if (drops.ok()) {
    w.family("sluice_policy_denied_packets_total", "counter",
             "Policy drops of endpoints this policy isolates in the direction (a drop under "
             "several isolating policies counts for each).");
    for (const auto& [k, v] : denied()) {
      w.sample("sluice_policy_denied_packets_total",
               {{"namespace", std::get<0>(k)},
                {"policy", std::get<1>(k)},
                {"direction", std::get<2>(k)}},
               static_cast<double>(v));
    }
    w.family("sluice_policy_denied_unattributed_packets_total", "counter",
             "Policy drops of endpoints no policy isolated when they were counted.");
    w.sample("sluice_policy_denied_unattributed_packets_total",
             static_cast<double>(unattributed()));
  }
  if (auto ct = backend_.conntrackStats(); ct.ok()) {
    w.family("sluice_conntrack_entries", "gauge", "Flows the datapath tracks now.");
    w.sample("sluice_conntrack_entries", static_cast<double>(ct->entries));
    w.family("sluice_conntrack_expired_total", "counter",
             "Idle flows the conntrack sweeper deleted (since the daemon started).");
    w.sample("sluice_conntrack_expired_total", static_cast<double>(ct->expired));
  }
  if (sources_.flowLog) {
    if (auto f = sources_.flowLog()) {
      w.family("sluice_flow_log_events_total", "counter", "Flow events written, by verdict.");
      w.sample("sluice_flow_log_events_total", {{"verdict", "denied"}},
               static_cast<double>(f->writtenDenied));
      w.sample("sluice_flow_log_events_total", {{"verdict", "allowed"}},
               static_cast<double>(f->writtenAllowed));
      w.sample("sluice_flow_log_events_total", {{"verdict", "audit-deny"}},
               static_cast<double>(f->writtenAuditDenied));
      w.family("sluice_policy_audit_denied_flows_total", "counter",
               "New flows an audited policy (sluice.io/enforcement: audit) would deny once "
               "enforced; they were allowed.");
      for (const auto& [key, n] : f->auditDenied) {
        const auto slash = key.first.find('/');
        w.sample("sluice_policy_audit_denied_flows_total",
                 {{"namespace", key.first.substr(0, slash)},
                  {"policy", slash == std::string::npos ? key.first : key.first.substr(slash + 1)},
                  {"direction", key.second == compiler::Direction::Ingress ? "ingress" : "egress"}},
                 static_cast<double>(n));
      }
      w.family("sluice_flow_log_suppressed_total", "counter",
               "Flow events not written, by cause (rate: the per-endpoint limit; overflow: the "
               "queue waiting for the model was full).");
      w.sample("sluice_flow_log_suppressed_total", {{"cause", "rate"}},
               static_cast<double>(f->suppressedRate));
      w.sample("sluice_flow_log_suppressed_total", {{"cause", "overflow"}},
               static_cast<double>(f->suppressedOverflow));
      w.family("sluice_flow_log_engine_mismatches_total", "counter",
               "Flow events whose datapath verdict the engine disagrees with (a bug).");
      w.sample("sluice_flow_log_engine_mismatches_total",
               static_cast<double>(f->engineDisagreements));
    }
  }
}

}  // namespace sluice::daemon
