// The compiler as the node agent sees it: model changes + node -> IR diff. An interface so agent
// tests can run with a fake; IncrementalCompiler adapts compiler::Compiler.
#pragma once

#include <memory>

#include "policyd/compiler/compiler.h"
#include "policyd/compiler/ir.h"
#include "policyd/model/types.h"

namespace sluice::daemon {

class PolicyCompiler {
 public:
  virtual ~PolicyCompiler() = default;
  // Brings the compiled state up to date with the whole model and returns what changed (the
  // first call: everything). O(cluster): the agent uses it for the first compile only.
  virtual compiler::Diff update(const model::Cluster& cluster,
                                const compiler::NodeContext& node) = 0;
  // Applies what changed since the previous update (objects by key; `changes.node` when the
  // node context changed) and returns the diff. O(change).
  virtual compiler::Diff update(const compiler::ChangeSet& changes) = 0;
  // The whole compiled state after the last update (what backend.sync() is given).
  virtual const compiler::State& state() const = 0;
};

// The real, incremental compiler (compiler/compiler.h).
std::unique_ptr<PolicyCompiler> makeIncrementalCompiler();

}  // namespace sluice::daemon
