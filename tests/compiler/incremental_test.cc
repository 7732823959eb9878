// Incremental == full: after every random change, the long-running Compiler's State equals a
// fresh compile() of the same model (modulo id numbering), and its Diff takes the previous
// State to the new one.
#include <gtest/gtest.h>

#include "policyd/compiler/compiler.h"
#include "tests/compiler/canonical.h"
#include "tests/compiler/random_cluster.h"

namespace sluice::compiler::testing {
namespace {

constexpr int kSeeds = 120;
constexpr int kSteps = 25;

TEST(CompilerIncrementalTest, RandomChangeSequencesMatchFullCompile) {
  for (int seed = 0; seed < kSeeds; ++seed) {
    RandomCluster gen(static_cast<uint64_t>(seed) * 7919 + 1);
    Scenario s = gen.generate();
    Compiler c;
    State applied;
    applyDiff(applied, c.update(s.cluster, s.node));
    std::vector<std::string> history;
    for (int step = 0; step < kSteps; ++step) {
      history.push_back(gen.mutate(s));
      Diff d = c.update(s.cluster, s.node);
      applyDiff(applied, d);
      SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step) + ": " +
                   history.back());
      ASSERT_EQ(applied.classes, c.state().classes);
      ASSERT_EQ(applied.endpoints, c.state().endpoints);
      ASSERT_EQ(applied.rules, c.state().rules);
      const CanonicalState want = canonical(compile(s.cluster, s.node));
      const CanonicalState got = canonical(c.state());
      ASSERT_EQ(toString(got), toString(want));
    }
  }
}

TEST(CompilerIncrementalTest, UnchangedModelGivesEmptyDiff) {
  RandomCluster gen(42);
  Scenario s = gen.generate();
  Compiler c;
  c.update(s.cluster, s.node);
  const uint64_t rev = c.state().revision;
  EXPECT_TRUE(c.update(s.cluster, s.node).empty());
  EXPECT_EQ(c.state().revision, rev);
  EXPECT_EQ(c.lastStats().endpointsRecomputed, 0u);
}

}  // namespace
}  // namespace sluice::compiler::testing
