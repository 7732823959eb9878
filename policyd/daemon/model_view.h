// Read access to the daemon's one copy of the cluster model, for what runs beside the sync path
// (the flow log naming pods and policies, live sluicectl queries). Whoever owns the model
// implements it; readers never copy the model.
#pragma once

#include <cstdint>
#include <functional>

#include "policyd/model/types.h"

namespace sluice::daemon {

class ModelView {
 public:
  using Reader = std::function<void(const model::Cluster&, uint64_t generation)>;
  virtual ~ModelView() = default;
  // Calls `fn` with the current model and its generation (changes whenever the model does),
  // under a shared lock: `fn` must be quick and must not call back into the owner.
  virtual void readModel(const Reader& fn) const = 0;
};

}  // namespace sluice::daemon
