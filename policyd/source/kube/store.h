// What the kube source remembers of the objects of one kind, keyed by namespace/name: per object
// its resourceVersion, a hash of the content the engine reads, and its current error. Not the
// objects themselves (the daemon's cluster store holds them, once): the per-key hash is enough
// to tell, after a relist, which objects changed, and to drop updates that change nothing the
// engine reads (pod status conditions). Nodes, few and needed for routes, are kept whole.
//
// Every operation reports what changed (added, updated, deleted) with the new value, which is
// what the source hands on as per-object upserts and deletes.
//
// Last good version: an object the decoder rejects (an invalid NetworkPolicy) keeps the version
// that was good before (the consumer holds it; no value is reported), and its error is reported
// until a good version or a delete replaces it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policyd/source/kube/objects.h"

namespace sluice::source::kube {

struct Change {
  enum class Op { Added, Updated, Deleted };
  Op op;
  std::string key;
  // Added/Updated: the object's new usable version; absent when there is none (rejected, or a
  // finished Pod: the consumer drops it) or when only the error changed (`errorOnly`).
  std::optional<Value> value = std::nullopt;
  bool errorOnly = false;
  // By what happened to which key (tests compare change logs).
  bool operator==(const Change& o) const { return op == o.op && key == o.key; }
};

class KindStore {
 public:
  struct Entry {
    std::string resourceVersion;
    uint64_t hash = 0;             // of the usable version's content; meaningful when `good`
    bool good = false;             // a usable version exists (held by the consumer)
    std::unique_ptr<Error> error;  // the current version's problem (rare: a pointer's size)
    std::unique_ptr<Node> node;    // Nodes only: the usable version itself
  };

  // ADDED / MODIFIED. No change is reported when the key already holds this resourceVersion (a
  // resumed watch may repeat an event), nor when the new version differs only in fields the
  // engine does not read (pod status conditions, node heartbeats): only its version is kept.
  std::optional<Change> upsert(Object&& o);
  std::optional<Change> remove(const std::string& key);
  // A complete list: afterwards the store holds exactly `items`. Returns the differences.
  std::vector<Change> replace(std::vector<Object>&& items);

  const std::map<std::string, Entry>& entries() const { return entries_; }

 private:
  std::map<std::string, Entry> entries_;
};

// Hash of what the engine (or the node) reads of a value. NetworkPolicies hash to a value that
// never matches (any new resourceVersion counts: policies change rarely, compare conservatively).
uint64_t contentHash(const Value& v);

}  // namespace sluice::source::kube
