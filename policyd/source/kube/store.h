// The objects of one kind as last read from the API, keyed by namespace/name, with per-object
// upserts and deletes and the relist that replaces them all. Every operation reports what
// changed (added, updated, deleted), which is what a change-set consumer needs; the snapshot
// source only needs to know that something did.
//
// Last good version: an object the decoder rejects (an invalid NetworkPolicy) keeps the version
// that was good before, and its error is reported until a good version or a delete replaces it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "policyd/source/kube/objects.h"

namespace sluice::source::kube {

struct Change {
  enum class Op { Added, Updated, Deleted };
  Op op;
  std::string key;
  bool operator==(const Change&) const = default;
};

class KindStore {
 public:
  struct Entry {
    std::string resourceVersion;
    std::optional<Value> good;   // what the engine uses; absent: nothing usable yet
    std::optional<Error> error;  // the current version's problem
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

}  // namespace sluice::source::kube
