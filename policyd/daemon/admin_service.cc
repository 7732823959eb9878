#include "policyd/daemon/admin_service.h"

namespace sluice::daemon {

namespace {

using nlohmann::json;

json fail(const std::string& why) { return json{{"ok", false}, {"error", why}}; }

std::string className(compiler::ClassId c) {
  if (c == compiler::kAnyPeer) return "any";
  if (c == compiler::kHostClass) return "host";
  if (c == compiler::kWorldClass) return "world";
  return "class " + std::to_string(c);
}

json endpointsReply(const AdminSources& s) {
  json list = json::array();
  for (const auto& r : s.endpoints()) {
    json ips = json::array();
    for (const auto& ip : r.ips) ips.push_back(ip.toString());
    auto policy = s.appliedPolicy ? s.appliedPolicy(r.id) : std::nullopt;
    list.push_back({{"id", r.id},
                    {"pod", r.podNamespace.empty() ? "" : r.podKey()},
                    {"containerId", r.containerId},
                    {"ifname", r.ifname},
                    {"hostVeth", r.hostVeth},
                    {"ifindex", r.hostIfindex},
                    {"ips", ips},
                    {"policyApplied", policy.has_value()},
                    {"ingressIsolated", policy && policy->ingressIsolated},
                    {"egressIsolated", policy && policy->egressIsolated},
                    {"audited", policy && policy->audited}});
  }
  return json{{"ok", true}, {"endpoints", list}};
}

json policyReply(const AdminSources& s, const json& req) {
  auto pod = req.find("pod");
  if (pod == req.end() || !pod->is_string()) return fail("policy: field \"pod\" (ns/name) missing");
  const std::string key = *pod;
  std::optional<EndpointRecord> rec;
  for (const auto& r : s.endpoints()) {
    if (!r.podNamespace.empty() && r.podKey() == key) rec = r;
  }
  if (!rec) return fail("policy: " + key + " is not an endpoint on this node");
  auto policy = s.appliedPolicy(rec->id);
  if (!policy) {
    return fail("policy: " + key + " (endpoint " + std::to_string(rec->id) +
                ") has no applied policy yet: its traffic is dropped");
  }
  const auto origins = s.ruleOrigins();
  std::map<compiler::RuleId, datapath::RuleCounter> counters;
  if (auto c = s.counters(); c.ok()) {
    for (const auto& rc : *c) counters[rc.rule] = rc;
  }
  json entries = json::array();
  for (const auto& e : policy->entries) {
    json j{{"direction", model::directionName(e.direction)},
           {"peer", className(e.peer)},
           {"peerClass", e.peer},
           {"protocol", e.protocol},
           {"ports", e.ports.all()
                         ? std::string("all")
                         : std::to_string(e.ports.first) + "-" + std::to_string(e.ports.last)},
           {"rule", e.rule}};
    if (e.rule < origins.size()) {
      j["policy"] = origins[e.rule].policy;
      j["ruleField"] = std::string("spec.") + model::directionName(origins[e.rule].direction) +
                       "[" + std::to_string(origins[e.rule].rule) + "]";
    }
    if (auto it = counters.find(e.rule); it != counters.end()) {
      j["packets"] = it->second.packets;
      j["bytes"] = it->second.bytes;
    }
    entries.push_back(std::move(j));
  }
  return json{{"ok", true},
              {"pod", key},
              {"endpoint", rec->id},
              {"ingressIsolated", policy->ingressIsolated},
              {"egressIsolated", policy->egressIsolated},
              {"audited", policy->audited},
              {"entries", entries}};
}

void flows(const AdminSources& s, const json& req, const AdminServer::Send& send,
           const std::atomic<bool>& stopping) {
  if (!s.flows) {
    send(fail("flows: the daemon runs without a flow log (--flow-log)"));
    return;
  }
  bool follow = false, deniedOnly = false;
  std::string pod;
  size_t limit = 100;
  try {
    follow = req.value("follow", false);
    deniedOnly = req.value("denied", false);
    pod = req.value("pod", std::string());
    limit = req.value("limit", size_t{100});
  } catch (const json::exception& e) {
    send(fail(std::string("flows: bad field: ") + e.what()));
    return;
  }
  auto matches = [&](const FlowRecord& r) {
    if (deniedOnly && !r.denied) return false;
    return pod.empty() || r.pod == pod || r.srcPod == pod || r.dstPod == pod;
  };
  auto emit = [&](const FlowRecord& r) {
    auto j = json::parse(r.line, nullptr, false);
    return send(json{{"flow", j}});
  };
  // History: the last `limit` matching records.
  uint64_t last = 0;
  std::vector<FlowRecord> history;
  for (auto& r : s.flows->since(0, SIZE_MAX)) {
    last = r.seq;
    if (matches(r)) history.push_back(std::move(r));
  }
  size_t skip = history.size() > limit ? history.size() - limit : 0;
  for (size_t i = skip; i < history.size(); ++i) {
    if (!emit(history[i])) return;
  }
  if (!follow) {
    send(json{{"ok", true}});
    return;
  }
  while (!stopping.load()) {
    if (!s.flows->waitFor(last, s.heartbeat)) {
      // Idle: a keep-alive tells us when the client has gone.
      if (!send(json{{"heartbeat", true}})) return;
      continue;
    }
    for (const auto& r : s.flows->since(last, 1000)) {
      last = r.seq;
      if (matches(r) && !emit(r)) return;
    }
  }
  send(json{{"ok", true}, {"end", "daemon stopping"}});
}

}  // namespace

void handleAdminRequest(const AdminSources& s, const json& req, const AdminServer::Send& send,
                        const std::atomic<bool>& stopping) {
  const std::string op = req.at("op").get<std::string>();
  if (op == "status") {
    json j = s.status ? s.status() : json::object();
    j["ok"] = true;
    send(j);
  } else if (op == "endpoints") {
    send(endpointsReply(s));
  } else if (op == "policy") {
    send(policyReply(s, req));
  } else if (op == "rules") {
    json rules = json::array();
    const auto origins = s.ruleOrigins();
    for (size_t i = 0; i < origins.size(); ++i) {
      rules.push_back({{"id", i},
                       {"policy", origins[i].policy},
                       {"direction", model::directionName(origins[i].direction)},
                       {"rule", origins[i].rule}});
    }
    send(json{{"ok", true}, {"rules", rules}});
  } else if (op == "flows") {
    flows(s, req, send, stopping);
  } else {
    send(fail("unknown op \"" + op + "\" (want status, endpoints, policy, rules or flows)"));
  }
}

}  // namespace sluice::daemon
