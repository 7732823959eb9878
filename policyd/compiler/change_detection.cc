// Change detection: the model the daemon hands over is compared, object by object and by
// content (Origin ignored), with the one last seen; each change marks what it affects for the
// later stages.
#include <algorithm>
#include <iterator>

#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"
#include "policyd/model/equality.h"

namespace sluice::compiler {

namespace {

using model::samePod;
using model::samePolicy;

}  // namespace

void Compiler::Impl::detectNamespaces(const model::Cluster& cluster) {
  std::map<std::string, Labels, std::less<>> next;
  for (const auto& ns : cluster.namespaces) next.emplace(ns.name, ns.labels);
  std::set<std::string> changed;
  for (const auto& [name, labels] : next) {
    auto it = namespaces.find(name);
    if (it == namespaces.end() || it->second != labels) changed.insert(name);
  }
  for (const auto& [name, labels] : namespaces) {
    if (!next.contains(name)) changed.insert(name);
  }
  namespaces = std::move(next);
  // Namespace labels only feed namespaceSelectors: re-match the groups of the namespace.
  for (const auto& name : changed) {
    auto it = groupsByNs.find(name);
    if (it == groupsByNs.end()) continue;
    dirtyGroupsFull.insert(it->second.begin(), it->second.end());
  }
}

void Compiler::Impl::detectPods(const model::Cluster& cluster,
                                std::set<std::string>& changedPodKeys) {
  std::vector<PodSnap*> order;
  order.reserve(cluster.pods.size());
  size_t seen = 0;
  std::string key;
  for (size_t i = 0; i < cluster.pods.size(); ++i) {
    const Pod& pod = cluster.pods[i];
    PodSnap* snap = nullptr;
    if (i < podOrder.size() && podOrder[i] && podOrder[i]->pod.name == pod.name &&
        podOrder[i]->pod.namespace_ == pod.namespace_) {
      snap = podOrder[i];
    } else {
      key.assign(pod.namespace_).append("/").append(pod.name);
      auto it = pods.find(key);
      if (it != pods.end()) snap = &it->second;
    }
    if (snap && snap->seen == generation) {  // duplicate key: the first wins
      order.push_back(nullptr);
      continue;
    }
    ++seen;
    if (snap && samePod(snap->pod, pod)) {
      snap->seen = generation;
      order.push_back(snap);
      continue;
    }
    if (!snap) {
      upsertPod(pod, nullptr, changedPodKeys);
      snap = &pods.at(pod.key());
    } else {
      upsertPod(pod, snap, changedPodKeys);
    }
    order.push_back(snap);
  }
  if (seen != pods.size()) {
    for (auto it = pods.begin(); it != pods.end();) {
      if (it->second.seen == generation) {
        ++it;
        continue;
      }
      unclaimPod(it->second.pod);
      changedPodKeys.insert(it->first);
      it = pods.erase(it);
    }
  }
  podOrder = std::move(order);
}

void Compiler::Impl::detectPolicies(const model::Cluster& cluster, OldPolicies& oldPolicies) {
  std::set<std::string> seen;
  for (const auto& pol : cluster.policies) {
    std::string key = pol.key();
    if (!seen.insert(key).second) continue;
    upsertPolicy(pol, oldPolicies);
  }
  for (auto it = policies.begin(); it != policies.end();) {
    auto next = std::next(it);
    if (!seen.contains(it->first)) deletePolicy(it, oldPolicies);
    it = next;
  }
  std::vector<std::string> goneAudited;
  for (const auto& [key, pol] : audited) {
    if (!seen.contains(key)) goneAudited.push_back(key);
  }
  for (const auto& key : goneAudited) deleteAudited(key);
}

// ---- change sets: only the objects the caller names ----

void Compiler::Impl::namespaceChanged(const std::string& name) {
  // Namespace labels only feed namespaceSelectors: re-match the groups of the namespace.
  auto it = groupsByNs.find(name);
  if (it != groupsByNs.end()) dirtyGroupsFull.insert(it->second.begin(), it->second.end());
}

void Compiler::Impl::applyNamespaceChanges(const ChangeSet& changes) {
  for (const auto& name : changes.namespaceDeletes) {
    if (namespaces.erase(name) > 0) namespaceChanged(name);
  }
  for (const auto& ns : changes.namespaceUpserts) {
    auto [it, inserted] = namespaces.try_emplace(ns.name, ns.labels);
    if (!inserted) {
      if (it->second == ns.labels) continue;
      it->second = ns.labels;
    }
    namespaceChanged(ns.name);
  }
}

void Compiler::Impl::upsertPod(const Pod& pod, PodSnap* snap,
                               std::set<std::string>& changedPodKeys) {
  if (snap) {
    unclaimPod(snap->pod);
    snap->pod = pod;
  } else {
    snap = &pods.emplace(pod.key(), PodSnap{pod, 0}).first->second;
  }
  snap->seen = generation;
  claimPod(snap->pod);
  changedPodKeys.insert(pod.key());
}

void Compiler::Impl::applyPodChanges(const ChangeSet& changes,
                                     std::set<std::string>& changedPodKeys) {
  for (const auto& key : changes.podDeletes) {
    auto it = pods.find(key);
    if (it == pods.end()) continue;
    unclaimPod(it->second.pod);
    changedPodKeys.insert(key);
    pods.erase(it);
    // podOrder may point at the erased snapshot; the next snapshot update looks pods up by key.
    podOrder.clear();
  }
  std::string key;
  for (const auto& pod : changes.podUpserts) {
    key.assign(pod.namespace_).append("/").append(pod.name);
    auto it = pods.find(key);
    if (it != pods.end() && samePod(it->second.pod, pod)) continue;
    upsertPod(pod, it == pods.end() ? nullptr : &it->second, changedPodKeys);
  }
}

void Compiler::Impl::upsertPolicy(const NetworkPolicy& pol, OldPolicies& oldPolicies) {
  std::string key = pol.key();
  auto it = policies.find(key);
  if (pol.audited()) {
    // An audited policy isolates nobody and allows nothing: to the allow sets, a policy that
    // turns to audit is deleted.
    if (it != policies.end()) deletePolicy(it, oldPolicies);
    upsertAudited(pol);
    return;
  }
  deleteAudited(key);
  if (it != policies.end() && samePolicy(it->second, pol)) return;
  // The first old version in an update is the one the state was built from.
  if (it != policies.end()) {
    oldPolicies.try_emplace(key, it->second);
    it->second = pol;
  } else {
    oldPolicies.try_emplace(key, std::nullopt);
    policies.emplace(key, pol);
    policiesByNs[pol.namespace_].insert(key);
  }
}

void Compiler::Impl::deletePolicy(std::map<std::string, NetworkPolicy>::iterator it,
                                  OldPolicies& oldPolicies) {
  policiesByNs[it->second.namespace_].erase(it->first);
  oldPolicies.try_emplace(it->first, std::move(it->second));
  policies.erase(it);
}

void Compiler::Impl::upsertAudited(const NetworkPolicy& pol) {
  auto [it, inserted] = audited.try_emplace(pol.key(), pol);
  if (!inserted) {
    if (samePolicy(it->second, pol)) return;
    it->second = pol;
  }
  auditedByNs[pol.namespace_].insert(it->first);
  auditNsDirty.insert(pol.namespace_);
}

void Compiler::Impl::deleteAudited(const std::string& key) {
  auto it = audited.find(key);
  if (it == audited.end()) return;
  auditNsDirty.insert(it->second.namespace_);
  auto ns = auditedByNs.find(it->second.namespace_);
  ns->second.erase(key);
  if (ns->second.empty()) auditedByNs.erase(ns);
  audited.erase(it);
}

void Compiler::Impl::applyPolicyChanges(const ChangeSet& changes, OldPolicies& oldPolicies) {
  for (const auto& key : changes.policyDeletes) {
    auto it = policies.find(key);
    if (it != policies.end()) deletePolicy(it, oldPolicies);
    deleteAudited(key);
  }
  for (const auto& pol : changes.policyUpserts) upsertPolicy(pol, oldPolicies);
}

}  // namespace sluice::compiler
