// The cluster model as a set of objects with per-object upsert/delete, and the net change since it
// was last asked. The daemon owns one (the model it serves through ModelView and compiles from);
// sluicectl's one-shot read and the source tests fold a source's Updates into one too.
//
// Upserts whose content equals what is held (Origin ignored) are dropped. What is applied between
// two takeChanges() calls comes out as one net change: upsert then delete = delete, delete then
// upsert = upsert of the newest content, several upserts = the last. An object changed and then
// changed back still comes out as an upsert (the consumer's own comparison drops it).
//
// Lookups by key are O(1); a delete moves the last object of its kind into the freed slot, so the
// order of model::Cluster's vectors is not the order of arrival.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "policyd/model/equality.h"
#include "policyd/model/types.h"
#include "policyd/source/source.h"

namespace sluice::source {

using model::sameNamespace;  // content equality (model/equality.h), for the sources' diffs
using model::samePod;
using model::samePolicy;

class ClusterStore {
 public:
  ClusterStore();
  // The indexes refer to this object's vectors: not copyable or movable (clear() resets).
  ClusterStore(const ClusterStore&) = delete;
  ClusterStore& operator=(const ClusterStore&) = delete;

  // Back to empty, nothing pending.
  void clear();
  // Applies `changes` (deletes first, then upserts); returns how many objects changed. Takes
  // them by value: a large batch is freed here, not later by the caller.
  size_t apply(Changes changes);
  // The net change since the last takeChanges() (or discardChanges()), with copies of the objects
  // upserted; afterwards nothing is pending.
  Changes takeChanges();
  void discardChanges();
  bool hasChanges() const {
    return !pendingNamespaces_.empty() || !pendingPods_.empty() || !pendingPolicies_.empty();
  }

  const model::Cluster& cluster() const { return cluster_; }
  const model::Namespace* findNamespace(std::string_view name) const;
  const model::Pod* findPod(std::string_view key) const;
  const model::NetworkPolicy* findPolicy(std::string_view key) const;
  size_t objectCount() const {
    return cluster_.namespaces.size() + cluster_.pods.size() + cluster_.policies.size();
  }

  // Releases spare capacity (after the initial state).
  void shrink();

 private:
  // Transparent lookup: string_view keys without a temporary std::string.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // key -> true: upserted (net), false: deleted (net).
  using Pending = std::unordered_map<std::string, bool, Hash, std::equal_to<>>;

 public:
  // Key -> slot in a vector of objects, holding only the slot: the key is read from the object
  // (at 100,000 pods a second copy of every "ns/name" would cost about 8 MB).
  template <class T>
  struct SlotHash {
    using is_transparent = void;
    const std::vector<T>* objects;
    size_t operator()(uint32_t slot) const;
    size_t operator()(std::string_view key) const;
  };
  template <class T>
  struct SlotEq {
    using is_transparent = void;
    const std::vector<T>* objects;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(std::string_view key, uint32_t slot) const;
    bool operator()(uint32_t slot, std::string_view key) const { return (*this)(key, slot); }
  };
  template <class T>
  using Index = std::unordered_set<uint32_t, SlotHash<T>, SlotEq<T>>;

 private:
  model::Cluster cluster_;
  Index<model::Namespace> namespaceIndex_;
  Index<model::Pod> podIndex_;
  Index<model::NetworkPolicy> policyIndex_;
  Pending pendingNamespaces_, pendingPods_, pendingPolicies_;
};

}  // namespace sluice::source
