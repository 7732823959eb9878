// Endpoint selection: which policies select each local endpoint, per direction, kept both
// ways (endpoint -> policies, policy -> endpoints) so a policy change re-selects only the
// endpoints of its namespace and a pod change only its own endpoint.
#include <set>

#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

void Compiler::Impl::setSelected(EndpointId ep, const std::string& policy, Direction d, bool on) {
  auto& epSet = endpoints.at(ep).selecting[dirIndex(d)];
  auto& polSet = policySel[policy][dirIndex(d)];
  bool changed = on ? epSet.insert(policy).second : epSet.erase(policy) > 0;
  if (on) {
    polSet.insert(ep);
  } else {
    polSet.erase(ep);
  }
  if (changed) {
    dirtyEndpoints.insert(ep);
    touchedSel.emplace(policy, dirIndex(d));
  }
}

// "isolated for ingress/egress once any policy in its namespace selects it and lists the
// direction in policyTypes"; hostNetwork pods are not endpoints.
bool Compiler::Impl::selects(const NetworkPolicy& pol, const EndpointView& ev, Direction d) const {
  return engine::selects(pol, ev.pod, d);
}

void Compiler::Impl::refreshEndpoints(const NodeContext& nodeIn,
                                      const std::set<std::string>& changedPodKeys,
                                      const OldPolicies& oldPolicies) {
  std::map<EndpointId, const LocalEndpoint*> next;
  for (const auto& ep : nodeIn.endpoints) next.emplace(ep.id, &ep);

  auto dropEndpoint = [&](EndpointId id) {
    EndpointView& ev = endpoints.at(id);
    for (int d = 0; d < kDirs; ++d) {
      for (const auto& pol : std::set<std::string>(ev.selecting[d])) {
        setSelected(id, pol, static_cast<Direction>(d), false);
      }
    }
    if (ev.group) {
      for (const auto& ip : ev.ep.ips) removeClaim(ip, {1, std::to_string(id)});
      releaseGroup(ev.group);
      ev.group = nullptr;
    }
    endpointsByNs[ev.pod.namespace_].erase(id);
  };

  std::set<EndpointId> refresh;
  for (auto it = endpoints.begin(); it != endpoints.end();) {
    auto n = next.find(it->first);
    if (n == next.end()) {
      dropEndpoint(it->first);
      dirtyEndpoints.insert(it->first);
      it = endpoints.erase(it);
      continue;
    }
    const std::string key = it->second.ep.podNamespace + "/" + it->second.ep.podName;
    if (!(it->second.ep == *n->second) || changedPodKeys.contains(key)) refresh.insert(it->first);
    ++it;
  }
  for (const auto& [id, ep] : next) {
    if (!endpoints.contains(id)) refresh.insert(id);
  }

  for (EndpointId id : refresh) {
    if (endpoints.contains(id)) dropEndpoint(id);
    EndpointView& ev = endpoints[id];
    ev.ep = *next.at(id);
    auto pit = pods.find(ev.ep.podNamespace + "/" + ev.ep.podName);
    if (pit != pods.end()) {
      ev.pod = pit->second.pod;
    } else {
      // Not in the model yet (the CNI registers before the informer sees the pod): a pod with
      // no labels in its namespace, so policies selecting every pod of the namespace (default
      // deny) already isolate it.
      ev.pod = Pod{};
      ev.pod.namespace_ = ev.ep.podNamespace;
      ev.pod.name = ev.ep.podName;
    }
    endpointsByNs[ev.pod.namespace_].insert(id);
    dirtyEndpoints.insert(id);
    if (!ev.pod.hostNetwork) {
      ev.group = acquireGroup(ev.pod);
      for (const auto& ip : ev.ep.ips) addClaim(ip, {1, std::to_string(id)}, ev.group);
    }
    auto nsIt = policiesByNs.find(ev.pod.namespace_);
    if (nsIt == policiesByNs.end()) continue;
    for (const auto& key : nsIt->second) {
      const NetworkPolicy& pol = policies.at(key);
      for (int d = 0; d < kDirs; ++d) {
        if (selects(pol, ev, static_cast<Direction>(d))) {
          setSelected(id, key, static_cast<Direction>(d), true);
        }
      }
    }
  }

  // Changed policies re-select the endpoints of their namespace.
  for (const auto& [key, old] : oldPolicies) {
    auto pit = policies.find(key);
    for (int d = 0; d < kDirs; ++d) {
      auto& sel = policySel[key][d];
      std::set<EndpointId> want;
      if (pit != policies.end()) {
        auto eit = endpointsByNs.find(pit->second.namespace_);
        if (eit != endpointsByNs.end()) {
          for (EndpointId id : eit->second) {
            if (selects(pit->second, endpoints.at(id), static_cast<Direction>(d))) want.insert(id);
          }
        }
      }
      for (EndpointId id : std::set<EndpointId>(sel)) {
        if (!want.contains(id)) setSelected(id, key, static_cast<Direction>(d), false);
      }
      for (EndpointId id : want) setSelected(id, key, static_cast<Direction>(d), true);
      // Same selection, new rules: the endpoints' allow sets change all the same.
      dirtyEndpoints.insert(want.begin(), want.end());
    }
  }

  // Host addresses: few, so re-claimed on every update (their class depends on hostAddresses[0]).
  for (const auto& ip : node.hostAddresses) removeClaim(ip, {0, ""});
  for (const auto& ip : nodeIn.hostAddresses) addClaim(ip, {0, ""}, nullptr);
  node = nodeIn;
}

void Compiler::Impl::refreshAudited() {
  std::set<EndpointId> candidates = dirtyEndpoints;
  for (const auto& ns : auditNsDirty) {
    auto it = endpointsByNs.find(ns);
    if (it != endpointsByNs.end()) candidates.insert(it->second.begin(), it->second.end());
  }
  for (EndpointId id : candidates) {
    auto eit = endpoints.find(id);
    if (eit == endpoints.end()) continue;
    EndpointView& ev = eit->second;
    bool on = false;
    if (auto ns = auditedByNs.find(ev.pod.namespace_); ns != auditedByNs.end()) {
      for (const auto& key : ns->second) {
        const NetworkPolicy& pol = audited.at(key);
        if (selects(pol, ev, Direction::Ingress) || selects(pol, ev, Direction::Egress)) {
          on = true;
          break;
        }
      }
    }
    if (on != ev.audited) {
      ev.audited = on;
      dirtyEndpoints.insert(id);
    }
  }
}

}  // namespace sluice::compiler
