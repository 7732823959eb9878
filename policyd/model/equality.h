// Content equality of model objects as everything that reads the model sees them (Origin, the
// file an object came from, is ignored). One home: the daemon's cluster store drops upserts that
// change nothing with these, and the compiler's change detection skips unchanged objects with
// them, so a field that matters (a label, a port, the enforcement annotation) cannot be seen by
// one and missed by the other.
#pragma once

#include "policyd/model/types.h"

namespace sluice::model {

bool sameNamespace(const Namespace& a, const Namespace& b);
bool samePod(const Pod& a, const Pod& b);
bool samePolicy(const NetworkPolicy& a, const NetworkPolicy& b);

}  // namespace sluice::model
