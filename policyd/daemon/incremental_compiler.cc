#include "policyd/compiler/compiler.h"
#include "policyd/daemon/policy_compiler.h"

namespace sluice::daemon {

namespace {

class IncrementalCompiler final : public PolicyCompiler {
 public:
  compiler::Diff update(const model::Cluster& cluster, const compiler::NodeContext& node) override {
    return compiler_.update(cluster, node);
  }
  compiler::Diff update(const compiler::ChangeSet& changes) override {
    return compiler_.update(changes);
  }
  const compiler::State& state() const override { return compiler_.state(); }

 private:
  compiler::Compiler compiler_;
};

}  // namespace

std::unique_ptr<PolicyCompiler> makeIncrementalCompiler() {
  return std::make_unique<IncrementalCompiler>();
}

}  // namespace sluice::daemon
