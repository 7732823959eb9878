#include "policyd/source/dir/dir_source.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "policyd/daemon/state_files.h"
#include "policyd/source/cluster_store.h"
#include "tests/daemon/test_util.h"

namespace sluice::source {
namespace {

using namespace std::chrono_literals;
using sluice::testing::TempDir;
using sluice::testing::writeAtomically;
using sluice::testing::writeText;

std::string podYaml(const std::string& name, const std::string& app) {
  return "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: default\n  name: " + name +
         "\n  labels:\n    app: " + app + "\nspec:\n  containers: [{name: c}]\n";
}

const char* kNamespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n";

const char* kPolicy = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: default, name: deny}
spec:
  podSelector: {}
  policyTypes: [Ingress]
)";

// The source's state after one Update: its Updates folded into a ClusterStore, as the daemon
// does.
struct Snapshot {
  model::Cluster cluster;
  std::vector<Error> errors;
  int64_t readWallNs = 0;
  uint64_t generation = 0;
  Changes changes;  // what this Update carried
  bool initialComplete = false;
};

// Collects the state after each Update; waits for one that satisfies a predicate, with a
// deadline.
class Collector {
 public:
  void operator()(Update u) {
    std::lock_guard lock(mu_);
    Snapshot s;
    s.changes = u.changes;
    store_.apply(std::move(u.changes));
    if (u.errors) errors_ = *u.errors;
    s.cluster = store_.cluster();
    s.errors = errors_;
    s.readWallNs = u.readWallNs;
    s.generation = u.generation;
    s.initialComplete = u.initialComplete;
    snapshots_.push_back(std::move(s));
    cv_.notify_all();
  }
  std::optional<Snapshot> waitFor(const std::function<bool(const Snapshot&)>& pred,
                                  std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    std::optional<Snapshot> found;
    cv_.wait_for(lock, timeout, [&] {
      for (const auto& s : snapshots_) {
        if (pred(s)) {
          found = s;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  Snapshot latest() {
    std::lock_guard lock(mu_);
    return snapshots_.back();
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return snapshots_.size();
  }
  void clear() {
    std::lock_guard lock(mu_);
    snapshots_.clear();
  }
  // A daemon restart: the new process starts from an empty model.
  void reset() {
    std::lock_guard lock(mu_);
    snapshots_.clear();
    store_.clear();
    errors_.clear();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Snapshot> snapshots_;
  ClusterStore store_;
  std::vector<Error> errors_;
};

const model::Pod* findPod(const Snapshot& s, const std::string& name) {
  for (const auto& p : s.cluster.pods) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

class DirSourceTest : public ::testing::Test {
 protected:
  void start(bool persist = false) {
    DirSourceOptions o;
    o.root = dir.path();
    o.debounce = 20ms;
    o.maxDelay = 200ms;
    if (persist) {
      o.statePath = statePath();
      o.writeState = [](const std::string& path, std::string_view text) {
        return daemon::writeFileAtomic(path, text);
      };
    }
    source = std::make_unique<DirSource>(o);
    ASSERT_TRUE(source->start([this](Update u) { got(std::move(u)); }).ok());
  }
  // A daemon restart: a new source on the same directory and state file.
  void restart() {
    source->stop();
    source.reset();
    got.reset();
    start(true);
  }
  std::string statePath() { return state / "source-dir.state"; }
  void TearDown() override {
    if (source) source->stop();
  }
  TempDir dir;
  TempDir state;
  Collector got;
  std::unique_ptr<DirSource> source;
};

TEST_F(DirSourceTest, FirstSnapshotIsDeliveredByStart) {
  writeText(dir / "ns.yaml", kNamespace);
  writeText(dir / "web.yaml", podYaml("web", "web"));
  writeText(dir / "notes.txt", "not a manifest");
  const auto before = std::chrono::system_clock::now().time_since_epoch();
  start();
  ASSERT_EQ(got.count(), 1u);
  auto s = got.latest();
  EXPECT_EQ(s.cluster.namespaces.size(), 1u);
  ASSERT_EQ(s.cluster.pods.size(), 1u);
  EXPECT_EQ(s.cluster.pods[0].labels.at("app"), "web");
  EXPECT_TRUE(s.errors.empty());
  EXPECT_GE(s.readWallNs, std::chrono::duration_cast<std::chrono::nanoseconds>(before).count());
}

TEST_F(DirSourceTest, MissingDirectoryIsAnError) {
  DirSourceOptions o;
  o.root = dir / "nope";
  DirSource s(o);
  auto st = s.start([](Update) {});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("nope"), std::string::npos);
}

TEST_F(DirSourceTest, CreateModifyDeleteAreSeen) {
  writeText(dir / "ns.yaml", kNamespace);
  start();
  writeText(dir / "web.yaml", podYaml("web", "web"));
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) { return findPod(s, "web") != nullptr; }));

  writeAtomically(dir / "web.yaml", podYaml("web", "frontend"));
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) {
    auto* p = findPod(s, "web");
    return p != nullptr && p->labels.at("app") == "frontend";
  }));

  writeText(dir / "policy.json",
            R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
                "metadata":{"namespace":"default","name":"deny"},"spec":{"podSelector":{}}})");
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) { return s.cluster.policies.size() == 1; }));

  std::filesystem::remove(dir / "web.yaml");
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) {
    return findPod(s, "web") == nullptr && s.cluster.policies.size() == 1;
  }));
}

TEST_F(DirSourceTest, SubdirectoriesAreWatchedAndHiddenFilesIgnored) {
  start();
  std::filesystem::create_directories(dir / "team/a");
  // Give the rescan triggered by the mkdir a chance to add its watch; the write below is seen
  // either by that watch or by the rescan itself.
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) { return s.generation >= 2; }));
  writeText(dir / "team/a/web.yaml", podYaml("web", "web"));
  writeText(dir / ".web.yaml.swp", podYaml("swap", "swap"));
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) { return findPod(s, "web") != nullptr; }));
  EXPECT_EQ(findPod(got.latest(), "swap"), nullptr);
}

TEST_F(DirSourceTest, InvalidFileKeepsItsLastGoodObjects) {
  writeText(dir / "ns.yaml", kNamespace);
  writeText(dir / "web.yaml", podYaml("web", "web"));
  writeText(dir / "policy.yaml", kPolicy);
  start();
  ASSERT_EQ(got.latest().cluster.policies.size(), 1u);

  // Broken YAML: reported, and the file's previous objects stay.
  writeAtomically(dir / "policy.yaml", "kind: NetworkPolicy\nmetadata: {name: [\n");
  auto broken = got.waitFor([](const Snapshot& s) { return !s.errors.empty(); });
  ASSERT_TRUE(broken);
  EXPECT_EQ(broken->cluster.policies.size(), 1u);
  EXPECT_NE(broken->errors[0].message.find("policy.yaml"), std::string::npos)
      << broken->errors[0].message;

  // An invalid field: reported naming the field; still the last good version.
  writeAtomically(dir / "web.yaml", podYaml("web", "-bad-"));
  auto invalid = got.waitFor([](const Snapshot& s) {
    return std::any_of(s.errors.begin(), s.errors.end(), [](const Error& e) {
      return e.message.find("web.yaml") != std::string::npos;
    });
  });
  ASSERT_TRUE(invalid);
  ASSERT_NE(findPod(*invalid, "web"), nullptr);
  EXPECT_EQ(findPod(*invalid, "web")->labels.at("app"), "web");

  // Fixed: the new version replaces the old, errors clear.
  writeAtomically(dir / "policy.yaml", kPolicy);
  writeAtomically(dir / "web.yaml", podYaml("web", "fixed"));
  auto fixed = got.waitFor([](const Snapshot& s) {
    auto* p = findPod(s, "web");
    return s.errors.empty() && p != nullptr && p->labels.at("app") == "fixed";
  });
  ASSERT_TRUE(fixed);
  EXPECT_EQ(fixed->cluster.policies.size(), 1u);
}

TEST_F(DirSourceTest, ANewFileWithErrorsContributesItsValidObjects) {
  start();
  writeText(dir / "mixed.yaml", podYaml("good", "web") + "---\n" + podYaml("bad", "-bad-"));
  auto s = got.waitFor([](const Snapshot& s) { return findPod(s, "good") != nullptr; });
  ASSERT_TRUE(s);
  EXPECT_EQ(findPod(*s, "bad"), nullptr);
  EXPECT_FALSE(s->errors.empty());
}

TEST_F(DirSourceTest, DuplicateObjectsAcrossFilesFirstFileWins) {
  writeText(dir / "a.yaml", podYaml("web", "first"));
  writeText(dir / "b.yaml", podYaml("web", "second"));
  start();
  auto s = got.latest();
  ASSERT_EQ(s.cluster.pods.size(), 1u);
  EXPECT_EQ(s.cluster.pods[0].labels.at("app"), "first");
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_NE(s.errors[0].message.find("duplicate"), std::string::npos);
}

TEST_F(DirSourceTest, BurstOfWritesEndsInTheFullState) {
  start();
  got.clear();
  for (int i = 0; i < 30; ++i)
    writeText(dir / ("p" + std::to_string(i) + ".yaml"), podYaml("p" + std::to_string(i), "x"));
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) { return s.cluster.pods.size() == 30; }));
  EXPECT_LE(got.count(), 30u);
}

TEST_F(DirSourceTest, AFinishedWriteIsReadAtOnceWithoutADebounce) {
  DirSourceOptions o;
  o.root = dir.path();
  o.maxDelay = 10s;  // only the close-write may trigger the read
  source = std::make_unique<DirSource>(o);
  ASSERT_TRUE(source->start([this](Update u) { got(std::move(u)); }).ok());
  const auto t0 = std::chrono::steady_clock::now();
  writeText(dir / "web.yaml", podYaml("web", "web"));
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) { return findPod(s, "web") != nullptr; }, 2s));
  // The write's IN_CLOSE_WRITE, not a quiet period, started the read.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST_F(DirSourceTest, WritesToFilesThatAreNotManifestsCauseNoRead) {
  DirSourceOptions o;
  o.root = dir.path();
  o.maxDelay = 10s;
  source = std::make_unique<DirSource>(o);
  ASSERT_TRUE(source->start([this](Update u) { got(std::move(u)); }).ok());
  got.clear();
  // An atomic writer's temporary file: read at its close, the tree would not hold the rename.
  writeText(dir / "web.yaml.tmp.123.1", podYaml("web", "web"));
  writeText(dir / ".swap", "x");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(got.count(), 0u);
  std::filesystem::rename(dir / "web.yaml.tmp.123.1", dir / "web.yaml");
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) { return findPod(s, "web") != nullptr; }, 2s));
  EXPECT_EQ(got.count(), 1u);
}

TEST_F(DirSourceTest, UpdatesCarryOnlyTheObjectsThatChanged) {
  writeText(dir / "ns.yaml", kNamespace);
  writeText(dir / "a.yaml", podYaml("a", "one") + "---\n" + podYaml("b", "one"));
  writeText(dir / "c.yaml", podYaml("c", "one"));
  start();
  {
    auto s = got.latest();
    EXPECT_TRUE(s.initialComplete);
    EXPECT_EQ(s.changes.podUpserts.size(), 3u);
    EXPECT_EQ(s.changes.namespaceUpserts.size(), 1u);
  }
  got.clear();
  // a.yaml: pod a relabelled, pod b the same, pod d new, nothing about c.yaml.
  writeAtomically(dir / "a.yaml", podYaml("a", "two") + "---\n" + podYaml("b", "one") + "---\n" +
                                      podYaml("d", "one"));
  auto s = got.waitFor([](const Snapshot& s) { return findPod(s, "d") != nullptr; });
  ASSERT_TRUE(s);
  std::set<std::string> upserted;
  for (const auto& p : s->changes.podUpserts) upserted.insert(p.name);
  EXPECT_EQ(upserted, (std::set<std::string>{"a", "d"}));
  EXPECT_TRUE(s->changes.podDeletes.empty());
  EXPECT_TRUE(s->changes.namespaceUpserts.empty());
  EXPECT_EQ(findPod(*s, "a")->labels.at("app"), "two");
  got.clear();

  // Deleting a file deletes exactly its objects.
  std::filesystem::remove(dir / "c.yaml");
  s = got.waitFor([](const Snapshot& s) { return findPod(s, "c") == nullptr; });
  ASSERT_TRUE(s);
  EXPECT_EQ(s->changes.podDeletes, (std::vector<std::string>{"default/c"}));
  EXPECT_TRUE(s->changes.podUpserts.empty());
  EXPECT_EQ(s->cluster.pods.size(), 3u);
}

TEST_F(DirSourceTest, DuplicateAcrossFilesFallsBackToTheNextDefinitionWhenTheFirstGoes) {
  writeText(dir / "a.yaml", podYaml("web", "first"));
  writeText(dir / "b.yaml", podYaml("web", "second"));
  start();
  ASSERT_EQ(got.latest().errors.size(), 1u);
  got.clear();
  std::filesystem::remove(dir / "a.yaml");
  auto s = got.waitFor([](const Snapshot& s) {
    auto* p = findPod(s, "web");
    return p != nullptr && p->labels.at("app") == "second";
  });
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->errors.empty());
  EXPECT_EQ(s->cluster.pods.size(), 1u);
}

TEST_F(DirSourceTest, StopIsPromptAndFinal) {
  start();
  source->stop();
  const size_t n = got.count();
  writeText(dir / "web.yaml", podYaml("web", "web"));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(got.count(), n);
}

TEST_F(DirSourceTest, RestartWithABrokenFileUsesItsPersistedLastGoodVersion) {
  writeText(dir / "ns.yaml", kNamespace);
  writeText(dir / "web.yaml", podYaml("web", "web"));
  writeText(dir / "policy.yaml", kPolicy);
  start(true);
  ASSERT_EQ(got.latest().cluster.policies.size(), 1u);
  ASSERT_TRUE(std::filesystem::exists(statePath()));

  // Broken while running: the last good version stays (in memory).
  writeAtomically(dir / "policy.yaml", "kind: NetworkPolicy\nmetadata: {name: [\n");
  writeAtomically(dir / "web.yaml", podYaml("web", "-bad-"));
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) { return s.errors.size() >= 2; }));

  // After a restart, from the state file: same objects, errors still reported.
  restart();
  auto s = got.latest();
  ASSERT_EQ(s.cluster.policies.size(), 1u);
  EXPECT_EQ(s.cluster.policies[0].name, "deny");
  ASSERT_NE(findPod(s, "web"), nullptr);
  EXPECT_EQ(findPod(s, "web")->labels.at("app"), "web");
  EXPECT_EQ(s.errors.size(), 2u);

  // And once more: the restored versions are persisted again, not lost after one restart.
  restart();
  EXPECT_EQ(got.latest().cluster.policies.size(), 1u);

  // A fixed file replaces its persisted version.
  writeAtomically(dir / "web.yaml", podYaml("web", "fixed"));
  ASSERT_TRUE(got.waitFor([](const Snapshot& s) {
    auto* p = findPod(s, "web");
    return p != nullptr && p->labels.at("app") == "fixed";
  }));
  restart();
  ASSERT_NE(findPod(got.latest(), "web"), nullptr);
  EXPECT_EQ(findPod(got.latest(), "web")->labels.at("app"), "fixed");
}

TEST_F(DirSourceTest, AFileDeletedWhileDownIsGone) {
  writeText(dir / "ns.yaml", kNamespace);
  writeText(dir / "policy.yaml", kPolicy);
  start(true);
  ASSERT_EQ(got.latest().cluster.policies.size(), 1u);
  source->stop();
  std::filesystem::remove(dir / "policy.yaml");
  restart();
  EXPECT_TRUE(got.latest().cluster.policies.empty());
  // Its persisted version is dropped too: a broken file of the same name created later does
  // not bring it back.
  restart();
  writeText(dir / "policy.yaml", "kind: NetworkPolicy\nmetadata: {name: [\n");
  auto s = got.waitFor([](const Snapshot& s) { return !s.errors.empty(); });
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->cluster.policies.empty());
  restart();
  EXPECT_TRUE(got.latest().cluster.policies.empty());
}

TEST_F(DirSourceTest, ACorruptStateFileIsIgnored) {
  writeText(dir / "ns.yaml", kNamespace);
  writeText(dir / "policy.yaml", kPolicy);
  start(true);
  source->stop();
  const std::string good = sluice::testing::slurp(statePath());
  writeAtomically(dir / "policy.yaml", "kind: NetworkPolicy\nmetadata: {name: [\n");
  for (const std::string& bad :
       {std::string(), std::string("garbage"), good.substr(0, good.size() / 2),
        good.substr(0, good.size() - 1), good + "x",
        std::string(good).replace(good.size() - 10, 1, "#"), std::string(4096, '\0')}) {
    writeText(statePath(), bad);
    restart();
    auto s = got.latest();
    EXPECT_TRUE(s.cluster.policies.empty()) << "state: " << bad.size() << " bytes";
    EXPECT_EQ(s.cluster.namespaces.size(), 1u);
  }
  // A state file that is a directory: ignored as well.
  std::filesystem::remove(statePath());
  std::filesystem::create_directory(statePath());
  restart();
  EXPECT_TRUE(got.latest().cluster.policies.empty());
}

TEST_F(DirSourceTest, APersistedVersionThatNoLongerDecodesIsIgnored) {
  writeText(dir / "policy.yaml", "kind: NetworkPolicy\nmetadata: {name: [\n");
  writeText(statePath(), encodeSourceState({{dir / "policy.yaml", "kind: Bogus\n"}}));
  start(true);
  EXPECT_TRUE(got.latest().cluster.policies.empty());
  EXPECT_FALSE(got.latest().errors.empty());
}

TEST(SourceStateTest, RoundTripsAndDetectsEveryTruncation) {
  std::map<std::string, std::string> files = {
      {"/m/a.yaml", "kind: Pod\n"}, {"/m/b c.json", std::string("x\n\0y", 4)}, {"/m/e", ""}};
  const std::string text = encodeSourceState(files);
  auto back = decodeSourceState(text);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, files);
  for (size_t n = 0; n < text.size(); ++n) {
    EXPECT_FALSE(decodeSourceState(text.substr(0, n)).ok()) << "truncated to " << n;
  }
  EXPECT_TRUE(decodeSourceState(encodeSourceState({})).ok());
}

}  // namespace
}  // namespace sluice::source
