// The compiler as the node agent sees it: model + node -> IR diff. An interface so agent tests
// can run with a fake; IncrementalCompiler adapts compiler::Compiler.
#pragma once

#include <memory>

#include "policyd/compiler/compiler.h"
#include "policyd/compiler/ir.h"
#include "policyd/model/types.h"

namespace sluice::daemon {

class PolicyCompiler {
 public:
  virtual ~PolicyCompiler() = default;
  // Brings the compiled state up to date and returns what changed (the first call: everything).
  virtual compiler::Diff update(const model::Cluster& cluster,
                                const compiler::NodeContext& node) = 0;
  // The whole compiled state after the last update (what backend.sync() is given).
  virtual const compiler::State& state() const = 0;
};

// The real, incremental compiler (compiler/compiler.h).
std::unique_ptr<PolicyCompiler> makeIncrementalCompiler();

}  // namespace sluice::daemon
