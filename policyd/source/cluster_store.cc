#include "policyd/source/cluster_store.h"

#include <algorithm>

#include "policyd/model/equality.h"

namespace sluice::source {

namespace {

const std::string& keyOf(const model::Namespace& n) { return n.name; }
std::string keyOf(const model::Pod& p) { return p.key(); }
std::string keyOf(const model::NetworkPolicy& p) { return p.key(); }

// FNV-1a, fed in pieces so "ns" + "/" + "name" hashes like the key "ns/name".
struct Fnv {
  uint64_t h = 1469598103934665603ULL;
  void add(std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  }
};

size_t hashParts(std::string_view a, std::string_view b) {
  Fnv f;
  f.add(a);
  if (!b.data()) return static_cast<size_t>(f.h);
  f.add("/");
  f.add(b);
  return static_cast<size_t>(f.h);
}

// The key of an object as (first, second): "name" or ("ns", "name") for "ns/name".
std::pair<std::string_view, std::string_view> parts(const model::Namespace& n) {
  return {n.name, std::string_view()};
}
std::pair<std::string_view, std::string_view> parts(const model::Pod& p) {
  return {p.namespace_, p.name};
}
std::pair<std::string_view, std::string_view> parts(const model::NetworkPolicy& p) {
  return {p.namespace_, p.name};
}

bool keyEquals(std::string_view key, std::pair<std::string_view, std::string_view> kp) {
  if (!kp.second.data()) return key == kp.first;
  return key.size() == kp.first.size() + 1 + kp.second.size() && key.starts_with(kp.first) &&
         key[kp.first.size()] == '/' && key.ends_with(kp.second);
}

bool same(const model::Namespace& a, const model::Namespace& b) { return sameNamespace(a, b); }
bool same(const model::Pod& a, const model::Pod& b) { return samePod(a, b); }
bool same(const model::NetworkPolicy& a, const model::NetworkPolicy& b) { return samePolicy(a, b); }

template <class T, class Index, class Pending>
size_t applyKind(std::vector<T>& objects, Index& index, Pending& pending,
                 std::vector<std::string>& deletes, std::vector<T>& upserts) {
  size_t changed = 0;
  for (auto& key : deletes) {
    auto it = index.find(std::string_view(key));
    if (it == index.end()) continue;
    const uint32_t slot = *it;
    const uint32_t last = static_cast<uint32_t>(objects.size() - 1);
    index.erase(it);
    if (slot != last) {
      // The last object moves into the freed slot; its index entry follows.
      index.erase(last);
      objects[slot] = std::move(objects[last]);
      index.insert(slot);
    }
    objects.pop_back();
    pending.insert_or_assign(std::move(key), false);
    ++changed;
  }
  for (auto& obj : upserts) {
    auto key = keyOf(obj);
    auto it = index.find(std::string_view(key));
    if (it != index.end()) {
      T& held = objects[*it];
      if (same(held, obj)) continue;
      held = std::move(obj);
    } else {
      objects.push_back(std::move(obj));
      index.insert(static_cast<uint32_t>(objects.size() - 1));
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
    auto it = index.find(std::string_view(key));
    if (it != index.end()) upserts.push_back(objects[*it]);
  }
  pending.clear();
}

template <class T, class Index>
const T* findIn(const std::vector<T>& objects, const Index& index, std::string_view key) {
  auto it = index.find(key);
  return it == index.end() ? nullptr : &objects[*it];
}

}  // namespace

template <class T>
size_t ClusterStore::SlotHash<T>::operator()(uint32_t slot) const {
  auto [a, b] = parts((*objects)[slot]);
  return hashParts(a, b);
}

template <class T>
size_t ClusterStore::SlotHash<T>::operator()(std::string_view key) const {
  return hashParts(key, std::string_view());
}

template <class T>
bool ClusterStore::SlotEq<T>::operator()(std::string_view key, uint32_t slot) const {
  return keyEquals(key, parts((*objects)[slot]));
}

ClusterStore::ClusterStore()
    : namespaceIndex_(0, SlotHash<model::Namespace>{&cluster_.namespaces},
                      SlotEq<model::Namespace>{&cluster_.namespaces}),
      podIndex_(0, SlotHash<model::Pod>{&cluster_.pods}, SlotEq<model::Pod>{&cluster_.pods}),
      policyIndex_(0, SlotHash<model::NetworkPolicy>{&cluster_.policies},
                   SlotEq<model::NetworkPolicy>{&cluster_.policies}) {}

void ClusterStore::clear() {
  namespaceIndex_.clear();
  podIndex_.clear();
  policyIndex_.clear();
  cluster_ = model::Cluster();
  discardChanges();
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
