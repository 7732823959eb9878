#include "policyd/source/cluster_store.h"

#include <algorithm>

namespace sluice::source {

namespace {

bool samePorts(const std::vector<model::ContainerPort>& a,
               const std::vector<model::ContainerPort>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name == y.name && x.port == y.port && x.protocol == y.protocol;
  });
}

bool samePortSpec(const model::PortSpec& a, const model::PortSpec& b) {
  return a.protocol == b.protocol && a.port == b.port && a.endPort == b.endPort;
}

bool sameIpBlock(const model::IPBlock& a, const model::IPBlock& b) {
  return a.cidr == b.cidr && a.except == b.except && a.hostBitsSet == b.hostBitsSet;
}

bool samePeer(const model::Peer& a, const model::Peer& b) {
  if (a.podSelector != b.podSelector || a.namespaceSelector != b.namespaceSelector) return false;
  if (a.ipBlock.has_value() != b.ipBlock.has_value()) return false;
  return !a.ipBlock || sameIpBlock(*a.ipBlock, *b.ipBlock);
}

bool sameRule(const model::Rule& a, const model::Rule& b) {
  return std::equal(a.peers.begin(), a.peers.end(), b.peers.begin(), b.peers.end(), samePeer) &&
         std::equal(a.ports.begin(), a.ports.end(), b.ports.begin(), b.ports.end(), samePortSpec);
}

const std::string& keyOf(const model::Namespace& n) { return n.name; }
std::string keyOf(const model::Pod& p) { return p.key(); }
std::string keyOf(const model::NetworkPolicy& p) { return p.key(); }

bool same(const model::Namespace& a, const model::Namespace& b) { return sameNamespace(a, b); }
bool same(const model::Pod& a, const model::Pod& b) { return samePod(a, b); }
bool same(const model::NetworkPolicy& a, const model::NetworkPolicy& b) { return samePolicy(a, b); }

template <class T, class Index, class Pending>
size_t applyKind(std::vector<T>& objects, Index& index, Pending& pending,
                 std::vector<std::string>& deletes, std::vector<T>& upserts) {
  size_t changed = 0;
  for (auto& key : deletes) {
    auto it = index.find(key);
    if (it == index.end()) continue;
    const size_t slot = it->second;
    index.erase(it);
    if (slot + 1 != objects.size()) {
      objects[slot] = std::move(objects.back());
      index.find(keyOf(objects[slot]))->second = slot;
    }
    objects.pop_back();
    pending.insert_or_assign(std::move(key), false);
    ++changed;
  }
  for (auto& obj : upserts) {
    auto key = keyOf(obj);
    auto it = index.find(key);
    if (it != index.end()) {
      T& held = objects[it->second];
      if (same(held, obj)) continue;
      held = std::move(obj);
    } else {
      index.emplace(key, objects.size());
      objects.push_back(std::move(obj));
    }
    pending.insert_or_assign(std::move(key), true);
    ++changed;
  }
  return changed;
}

template <class T, class Index, class Pending>
void takeKind(const std::vector<T>& objects, const Index& index, Pending& pending,
              std::vector<std::string>& deletes, std::vector<T>& upserts) {
  for (auto& [key, upserted] : pending) {
    if (!upserted) {
      deletes.push_back(key);
      continue;
    }
    auto it = index.find(key);
    if (it != index.end()) upserts.push_back(objects[it->second]);
  }
  pending.clear();
}

template <class T, class Index>
const T* findIn(const std::vector<T>& objects, const Index& index, std::string_view key) {
  auto it = index.find(key);
  return it == index.end() ? nullptr : &objects[it->second];
}

}  // namespace

bool sameNamespace(const model::Namespace& a, const model::Namespace& b) {
  return a.name == b.name && a.labels == b.labels;
}

bool samePod(const model::Pod& a, const model::Pod& b) {
  return a.namespace_ == b.namespace_ && a.name == b.name && a.labels == b.labels &&
         a.ips == b.ips && a.hostNetwork == b.hostNetwork && a.nodeName == b.nodeName &&
         samePorts(a.ports, b.ports);
}

bool samePolicy(const model::NetworkPolicy& a, const model::NetworkPolicy& b) {
  return a.namespace_ == b.namespace_ && a.name == b.name && a.podSelector == b.podSelector &&
         a.affectsIngress == b.affectsIngress && a.affectsEgress == b.affectsEgress &&
         std::equal(a.ingress.begin(), a.ingress.end(), b.ingress.begin(), b.ingress.end(),
                    sameRule) &&
         std::equal(a.egress.begin(), a.egress.end(), b.egress.begin(), b.egress.end(), sameRule) &&
         a.duplicateKeys == b.duplicateKeys;
}

size_t ClusterStore::apply(Changes c) {
  size_t n = applyKind(cluster_.namespaces, namespaceIndex_, pendingNamespaces_, c.namespaceDeletes,
                       c.namespaceUpserts);
  n += applyKind(cluster_.pods, podIndex_, pendingPods_, c.podDeletes, c.podUpserts);
  n += applyKind(cluster_.policies, policyIndex_, pendingPolicies_, c.policyDeletes,
                 c.policyUpserts);
  return n;
}

Changes ClusterStore::takeChanges() {
  Changes out;
  takeKind(cluster_.namespaces, namespaceIndex_, pendingNamespaces_, out.namespaceDeletes,
           out.namespaceUpserts);
  takeKind(cluster_.pods, podIndex_, pendingPods_, out.podDeletes, out.podUpserts);
  takeKind(cluster_.policies, policyIndex_, pendingPolicies_, out.policyDeletes, out.policyUpserts);
  return out;
}

void ClusterStore::discardChanges() {
  // Swapped with empty maps: a large initial batch's buckets are released, not kept.
  Pending().swap(pendingNamespaces_);
  Pending().swap(pendingPods_);
  Pending().swap(pendingPolicies_);
}

const model::Namespace* ClusterStore::findNamespace(std::string_view name) const {
  return findIn(cluster_.namespaces, namespaceIndex_, name);
}

const model::Pod* ClusterStore::findPod(std::string_view key) const {
  return findIn(cluster_.pods, podIndex_, key);
}

const model::NetworkPolicy* ClusterStore::findPolicy(std::string_view key) const {
  return findIn(cluster_.policies, policyIndex_, key);
}

void ClusterStore::shrink() {
  cluster_.namespaces.shrink_to_fit();
  cluster_.pods.shrink_to_fit();
  cluster_.policies.shrink_to_fit();
}

}  // namespace sluice::source
