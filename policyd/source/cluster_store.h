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

#include <string>
#include <string_view>
#include <unordered_map>

#include "policyd/model/types.h"
#include "policyd/source/source.h"

namespace sluice::source {

// Content equality as the engine and its readers see it (Origin ignored).
bool sameNamespace(const model::Namespace& a, const model::Namespace& b);
bool samePod(const model::Pod& a, const model::Pod& b);
bool samePolicy(const model::NetworkPolicy& a, const model::NetworkPolicy& b);

class ClusterStore {
 public:
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
  using Index = std::unordered_map<std::string, size_t, Hash, std::equal_to<>>;
  // key -> true: upserted (net), false: deleted (net).
  using Pending = std::unordered_map<std::string, bool, Hash, std::equal_to<>>;

  model::Cluster cluster_;
  Index namespaceIndex_, podIndex_, policyIndex_;
  Pending pendingNamespaces_, pendingPods_, pendingPolicies_;
};

}  // namespace sluice::source
