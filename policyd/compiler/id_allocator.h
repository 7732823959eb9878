// RuleId and ClassId allocation. Ids stay dense (the lowest free id is reused first), and an id
// freed during an update is reused only from the next update on, so one Diff never re-purposes
// an id it also removes.
#pragma once

#include <algorithm>
#include <functional>
#include <vector>

namespace sluice::compiler {

template <class Id>
class IdAllocator {
 public:
  explicit IdAllocator(Id first) : next_(first) {}

  // Ids released during the previous update become reusable.
  void startUpdate() {
    free_.insert(free_.end(), quarantined_.begin(), quarantined_.end());
    quarantined_.clear();
    // Lowest ids last, popped first, so tables stay dense.
    std::sort(free_.begin(), free_.end(), std::greater<>());
  }

  Id allocate() {
    if (!free_.empty()) {
      Id id = free_.back();
      free_.pop_back();
      return id;
    }
    return next_++;
  }

  void release(Id id) { quarantined_.push_back(id); }

 private:
  Id next_;
  std::vector<Id> free_;
  std::vector<Id> quarantined_;
};

}  // namespace sluice::compiler
