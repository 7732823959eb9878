// The daemon's cluster store: per-object apply, no-op upserts dropped, and the net change set of
// everything applied since the last take.
#include "policyd/source/cluster_store.h"

#include <gtest/gtest.h>

#include <set>

namespace sluice::source {
namespace {

model::Pod pod(const std::string& name, const std::string& app) {
  model::Pod p;
  p.namespace_ = "ns";
  p.name = name;
  p.labels = {{"app", app}};
  return p;
}

std::set<std::string> podNames(const std::vector<model::Pod>& pods) {
  std::set<std::string> out;
  for (const auto& p : pods) out.insert(p.name);
  return out;
}

TEST(ClusterStoreTest, NoOpUpsertsAreDroppedAndOriginIsIgnored) {
  ClusterStore s;
  Changes c;
  c.podUpserts = {pod("a", "x"), pod("b", "x")};
  EXPECT_EQ(s.apply(std::move(c)), 2u);
  s.takeChanges();
  Changes same;
  auto a = pod("a", "x");
  a.origin.file = "elsewhere.yaml";
  same.podUpserts = {a};
  EXPECT_EQ(s.apply(std::move(same)), 0u);
  EXPECT_FALSE(s.hasChanges());
  EXPECT_TRUE(s.takeChanges().empty());
}

TEST(ClusterStoreTest, ChangesCoalesceIntoOneNetSet) {
  ClusterStore s;
  Changes init;
  init.podUpserts = {pod("a", "x"), pod("b", "x"), pod("c", "x")};
  s.apply(std::move(init));
  s.discardChanges();

  Changes first;
  first.podUpserts = {pod("a", "y"), pod("new", "x")};  // a relabelled, new added
  first.podDeletes = {"ns/b"};
  s.apply(std::move(first));
  Changes second;
  second.podDeletes = {"ns/new", "ns/a"};  // upsert then delete = delete
  second.podUpserts = {pod("b", "z")};     // delete then upsert = upsert of the newest
  s.apply(std::move(second));
  Changes third;
  third.podUpserts = {pod("b", "w")};  // several upserts = the last
  s.apply(std::move(third));

  Changes net = s.takeChanges();
  EXPECT_EQ(podNames(net.podUpserts), (std::set<std::string>{"b"}));
  ASSERT_EQ(net.podUpserts.size(), 1u);
  EXPECT_EQ(net.podUpserts[0].labels.at("app"), "w");
  EXPECT_EQ(std::set<std::string>(net.podDeletes.begin(), net.podDeletes.end()),
            (std::set<std::string>{"ns/a", "ns/new"}));
  EXPECT_TRUE(s.takeChanges().empty());

  // The model: c untouched, b the newest, a and new gone; lookups follow the moved slots.
  EXPECT_EQ(podNames(s.cluster().pods), (std::set<std::string>{"b", "c"}));
  ASSERT_NE(s.findPod("ns/b"), nullptr);
  EXPECT_EQ(s.findPod("ns/b")->labels.at("app"), "w");
  ASSERT_NE(s.findPod("ns/c"), nullptr);
  EXPECT_EQ(s.findPod("ns/c")->name, "c");
  EXPECT_EQ(s.findPod("ns/a"), nullptr);
}

TEST(ClusterStoreTest, LookupsFollowObjectsMovedByDeletes) {
  ClusterStore s;
  Changes c;
  for (int i = 0; i < 200; ++i) c.podUpserts.push_back(pod("p" + std::to_string(i), "x"));
  s.apply(std::move(c));
  Changes del;
  for (int i = 199; i >= 0; i -= 3) del.podDeletes.push_back("ns/p" + std::to_string(i));
  for (int i = 1; i < 200; i += 7) del.podDeletes.push_back("ns/p" + std::to_string(i));
  s.apply(std::move(del));
  std::set<std::string> gone;
  for (int i = 199; i >= 0; i -= 3) gone.insert("p" + std::to_string(i));
  for (int i = 1; i < 200; i += 7) gone.insert("p" + std::to_string(i));
  EXPECT_EQ(s.cluster().pods.size(), 200 - gone.size());
  for (int i = 0; i < 200; ++i) {
    const std::string name = "p" + std::to_string(i);
    const model::Pod* p = s.findPod("ns/" + name);
    if (gone.contains(name)) {
      EXPECT_EQ(p, nullptr) << name;
    } else {
      ASSERT_NE(p, nullptr) << name;
      EXPECT_EQ(p->name, name);
    }
  }
  // A key that is a prefix or extension of another is not confused with it.
  EXPECT_EQ(s.findPod("ns/p"), nullptr);
  EXPECT_EQ(s.findPod("ns/p10x"), nullptr);
  EXPECT_EQ(s.findPod("nsx/p2"), nullptr);
}

TEST(ClusterStoreTest, DeletesOfUnknownKeysAreNoChange) {
  ClusterStore s;
  Changes c;
  c.podDeletes = {"ns/nope"};
  c.namespaceDeletes = {"nope"};
  c.policyDeletes = {"ns/nope"};
  EXPECT_EQ(s.apply(std::move(c)), 0u);
  EXPECT_FALSE(s.hasChanges());
}

TEST(ClusterStoreTest, PolicyAndNamespaceContentComparison) {
  ClusterStore s;
  model::NetworkPolicy p;
  p.namespace_ = "ns";
  p.name = "deny";
  p.affectsIngress = true;
  model::Namespace n{"ns", {{"team", "a"}}, {}};
  Changes c;
  c.policyUpserts = {p};
  c.namespaceUpserts = {n};
  EXPECT_EQ(s.apply(std::move(c)), 2u);
  s.discardChanges();
  Changes again;
  again.policyUpserts = {p};
  again.namespaceUpserts = {n};
  EXPECT_EQ(s.apply(std::move(again)), 0u);
  p.affectsEgress = true;
  n.labels["team"] = "b";
  Changes changed;
  changed.policyUpserts = {p};
  changed.namespaceUpserts = {n};
  EXPECT_EQ(s.apply(std::move(changed)), 2u);
  Changes net = s.takeChanges();
  ASSERT_EQ(net.policyUpserts.size(), 1u);
  EXPECT_TRUE(net.policyUpserts[0].affectsEgress);
  ASSERT_NE(s.findNamespace("ns"), nullptr);
  EXPECT_EQ(s.findNamespace("ns")->labels.at("team"), "b");
}

// Switching a policy between audit and enforce changes nothing in its spec, only the annotation:
// it is a change (dropping it as a no-op left an audited policy unenforced after the annotation
// was removed).
TEST(ClusterStoreTest, EnforcementAnnotationIsContent) {
  ClusterStore s;
  model::NetworkPolicy p;
  p.namespace_ = "ns";
  p.name = "lockdown";
  p.affectsIngress = true;
  p.enforcement = model::Enforcement::Audit;
  p.enforcementText = "audit";
  Changes c;
  c.policyUpserts = {p};
  EXPECT_EQ(s.apply(std::move(c)), 1u);
  s.discardChanges();
  p.enforcement = model::Enforcement::Enforce;
  p.enforcementText = "enforce";
  Changes enforced;
  enforced.policyUpserts = {p};
  EXPECT_EQ(s.apply(std::move(enforced)), 1u);
  Changes net = s.takeChanges();
  ASSERT_EQ(net.policyUpserts.size(), 1u);
  EXPECT_FALSE(net.policyUpserts[0].audited());
}

}  // namespace
}  // namespace sluice::source
