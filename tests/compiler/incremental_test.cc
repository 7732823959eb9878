// Incremental == full: after every random change, the long-running Compiler's State equals a
// fresh compile() of the same model (modulo id numbering), and its Diff takes the previous
// State to the new one.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

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

// A content fingerprint of each object, so the test names exactly the objects that changed, as
// a cluster store would.
std::string fingerprint(const model::Pod& p) {
  std::string out = p.key() + (p.hostNetwork ? " host" : "") + " " + p.nodeName + " |";
  for (const auto& [k, v] : p.labels) out += k + "=" + v + ",";
  out += "|";
  for (const auto& ip : p.ips) out += ip.toString() + ",";
  out += "|";
  for (const auto& cp : p.ports) {
    out += cp.name + ":" + std::to_string(cp.port) + "/" + model::protocolName(cp.protocol) + ",";
  }
  return out;
}

std::string fingerprint(const model::Namespace& n) {
  std::string out = n.name + " |";
  for (const auto& [k, v] : n.labels) out += k + "=" + v + ",";
  return out;
}

std::string fingerprint(const model::NetworkPolicy& p) {
  std::string out = p.key() + " " + p.podSelector.toString() + (p.affectsIngress ? " I" : "") +
                    (p.affectsEgress ? " E" : "");
  for (const auto* rules : {&p.ingress, &p.egress}) {
    out += " [";
    for (const auto& r : *rules) {
      out += " (";
      for (const auto& peer : r.peers) {
        out += " pod:" + (peer.podSelector ? peer.podSelector->toString() : "-");
        out += " ns:" + (peer.namespaceSelector ? peer.namespaceSelector->toString() : "-");
        if (peer.ipBlock) {
          out += " ip:" + peer.ipBlock->cidr.toString();
          for (const auto& e : peer.ipBlock->except) out += "-" + e.toString();
        }
      }
      out += " ;";
      for (const auto& ps : r.ports) {
        out += std::string(" ") + model::protocolName(ps.protocol) + ":";
        if (const auto* n = std::get_if<uint16_t>(&ps.port)) out += std::to_string(*n);
        if (const auto* n = std::get_if<std::string>(&ps.port)) out += *n;
        if (ps.endPort) out += "-" + std::to_string(*ps.endPort);
      }
      out += ")";
    }
    out += " ]";
  }
  return out;
}

template <class T, class KeyOf>
void diffObjects(const std::vector<T>& before, const std::vector<T>& after, KeyOf keyOf,
                 std::vector<T>& upserts, std::vector<std::string>& deletes) {
  std::map<std::string, std::string> old;
  for (const auto& o : before) old.emplace(keyOf(o), fingerprint(o));
  std::set<std::string> seen;
  for (const auto& o : after) {
    const std::string key = keyOf(o);
    if (!seen.insert(key).second) continue;  // duplicate key: the first wins
    auto it = old.find(key);
    if (it == old.end() || it->second != fingerprint(o)) upserts.push_back(o);
  }
  for (const auto& [key, fp] : old) {
    if (!seen.contains(key)) deletes.push_back(key);
  }
}

ChangeSet changesBetween(const Scenario& before, const Scenario& after) {
  ChangeSet cs;
  diffObjects(
      before.cluster.namespaces, after.cluster.namespaces,
      [](const model::Namespace& n) { return n.name; }, cs.namespaceUpserts, cs.namespaceDeletes);
  diffObjects(
      before.cluster.pods, after.cluster.pods, [](const model::Pod& p) { return p.key(); },
      cs.podUpserts, cs.podDeletes);
  diffObjects(
      before.cluster.policies, after.cluster.policies,
      [](const model::NetworkPolicy& p) { return p.key(); }, cs.policyUpserts, cs.policyDeletes);
  if (!(before.node == after.node)) cs.node = after.node;
  return cs;
}

// Change sets == full: the same random sequences, each step handed over as the change set a
// cluster store would produce; every third step is a snapshot update instead, so the two kinds
// of update are proven to mix.
TEST(CompilerIncrementalTest, RandomChangeSetsMatchFullCompile) {
  for (int seed = 0; seed < kSeeds; ++seed) {
    RandomCluster gen(static_cast<uint64_t>(seed) * 6271 + 3);
    Scenario s = gen.generate();
    Compiler c;
    State applied;
    applyDiff(applied, c.update(s.cluster, s.node));
    std::vector<std::string> history;
    for (int step = 0; step < kSteps; ++step) {
      const Scenario before = s;
      history.push_back(gen.mutate(s));
      const bool snapshot = step % 3 == 2;
      Diff d = snapshot ? c.update(s.cluster, s.node) : c.update(changesBetween(before, s));
      applyDiff(applied, d);
      SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step) +
                   (snapshot ? " (snapshot): " : " (change set): ") + history.back());
      ASSERT_EQ(applied.classes, c.state().classes);
      ASSERT_EQ(applied.endpoints, c.state().endpoints);
      ASSERT_EQ(applied.rules, c.state().rules);
      const CanonicalState want = canonical(compile(s.cluster, s.node));
      const CanonicalState got = canonical(c.state());
      ASSERT_EQ(toString(got), toString(want));
    }
  }
}

TEST(CompilerIncrementalTest, EmptyAndNoOpChangeSetsGiveEmptyDiffs) {
  RandomCluster gen(43);
  Scenario s = gen.generate();
  Compiler c;
  c.update(s.cluster, s.node);
  const uint64_t rev = c.state().revision;
  EXPECT_TRUE(c.update(ChangeSet{}).empty());
  // Upserting what the compiler already has changes nothing either.
  ChangeSet same;
  same.podUpserts = s.cluster.pods;
  same.policyUpserts = s.cluster.policies;
  same.namespaceUpserts = s.cluster.namespaces;
  same.node = s.node;
  EXPECT_TRUE(c.update(same).empty());
  EXPECT_EQ(c.state().revision, rev);
  EXPECT_EQ(c.lastStats().endpointsRecomputed, 0u);
  // Deleting what it never had is a no-op.
  ChangeSet unknown;
  unknown.podDeletes = {"nowhere/none"};
  unknown.policyDeletes = {"nowhere/none"};
  unknown.namespaceDeletes = {"nowhere"};
  EXPECT_TRUE(c.update(unknown).empty());
}

}  // namespace
}  // namespace sluice::compiler::testing
