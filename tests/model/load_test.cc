#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "policyd/model/decode.h"
#include "tests/model/test_util.h"

namespace sluice::model {
namespace {

namespace fs = std::filesystem;
using testing::joinErrors;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-model-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? fs::path(tmpl) : fs::path();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string write(const std::string& rel, const std::string& text) const {
    fs::path p = path_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  fs::path path_;
};

std::string pod(const std::string& name, const std::string& ns = "default") {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: " + ns + "}\n";
}

TEST(LoadPathsTest, DirectoriesAreReadRecursivelyInSortedOrder) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  dir.write("b.yaml", pod("b"));
  dir.write("a.yml", pod("a"));
  dir.write("sub/c.json", R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"}})");
  dir.write("sub/deeper/d.yaml", pod("d") + "---\n" + pod("e"));
  dir.write("notes.txt", pod("ignored-by-extension"));
  dir.write(".hidden.yaml", pod("ignored-hidden-file"));
  dir.write("..2024_01_01/x.yaml", pod("ignored-hidden-dir"));
  Decoded d = loadPaths({dir.path().string()});
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  std::vector<std::string> names;
  for (const auto& p : d.cluster.pods) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_EQ(d.cluster.pods[2].origin.file, (dir.path() / "sub/c.json").string());
  EXPECT_EQ(d.cluster.pods[4].origin.document, 1);
}

TEST(LoadPathsTest, ExplicitFileIsReadWhateverItsExtension) {
  TempDir dir;
  std::string f = dir.write("pods.txt", pod("a"));
  Decoded d = loadPaths({f});
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  EXPECT_EQ(d.cluster.pods.size(), 1u);
}

TEST(LoadPathsTest, SameFileGivenTwiceIsReadOnce) {
  TempDir dir;
  std::string f = dir.write("a.yaml", pod("a"));
  Decoded d = loadPaths({dir.path().string(), f});
  EXPECT_TRUE(d.errors.empty()) << joinErrors(d);
  EXPECT_EQ(d.cluster.pods.size(), 1u);
}

TEST(LoadPathsTest, DuplicateAcrossFilesNamesBothAndKeepsFirst) {
  TempDir dir;
  std::string a = dir.write("a.yaml", pod("web", "prod") + "spec: {nodeName: n1}\n");
  std::string b = dir.write("b.yaml", pod("web", "prod") + "spec: {nodeName: n2}\n");
  Decoded d = loadPaths({dir.path().string()});
  ASSERT_EQ(d.cluster.pods.size(), 1u);
  EXPECT_EQ(d.cluster.pods[0].origin.file, a);
  EXPECT_EQ(d.cluster.pods[0].nodeName, "n1");
  ASSERT_EQ(d.errors.size(), 1u) << joinErrors(d);
  EXPECT_EQ(d.errors[0].message, b + ": Pod prod/web: duplicate: already defined in " + a +
                                     "; keeping the first definition");
}

TEST(LoadPathsTest, MissingPathAndBadFileDoNotStopTheRest) {
  TempDir dir;
  std::string good = dir.write("good.yaml", pod("a"));
  std::string bad = dir.write("bad.yaml", "kind: [\n");
  std::string missing = (dir.path() / "missing.yaml").string();
  Decoded d = loadPaths({missing, bad, good});
  EXPECT_EQ(d.cluster.pods.size(), 1u);
  ASSERT_EQ(d.errors.size(), 2u) << joinErrors(d);
  EXPECT_EQ(d.errors[0].message.rfind(missing + ": cannot read: ", 0), 0u) << d.errors[0].message;
  EXPECT_EQ(d.errors[1].message.rfind(bad + ": line ", 0), 0u) << d.errors[1].message;
}

TEST(LoadPathsTest, UnreadableFileIsAnError) {
  TempDir dir;
  // A directory named like a manifest cannot be read as one.
  fs::create_directories(dir.path() / "x.yaml");
  Decoded d = loadPaths({(dir.path() / "x.yaml" / "..").string() + "/x.yaml/"});
  // Given explicitly, a directory is walked (and is empty): not an error.
  EXPECT_TRUE(d.errors.empty()) << joinErrors(d);
  if (::geteuid() != 0) {
    std::string f = dir.write("secret.yaml", pod("a"));
    fs::permissions(f, fs::perms::none);
    d = loadPaths({f});
    ASSERT_EQ(d.errors.size(), 1u);
    EXPECT_NE(d.errors[0].message.find(f + ": cannot open"), std::string::npos);
  }
}

TEST(DecodedMergeTest, MergeAppendsAndRejectsDuplicates) {
  Decoded a = decodeText(pod("p-x") + "---\n" + pod("p-y"), "a.yaml");
  Decoded b = decodeText(
      pod("p-y") + "---\n" + pod("p-z") + "---\napiVersion: apps/v1\nkind: Job\n", "b.yaml");
  Decoded c = decodeText("kind: [\n", "c.yaml");
  a.merge(std::move(b));
  a.merge(std::move(c));
  std::vector<std::string> names;
  for (const auto& p : a.cluster.pods) names.push_back(p.name + "@" + p.origin.file);
  EXPECT_EQ(names, (std::vector<std::string>{"p-x@a.yaml", "p-y@a.yaml", "p-z@b.yaml"}));
  ASSERT_EQ(a.errors.size(), 2u) << joinErrors(a);
  EXPECT_EQ(a.errors[0].message,
            "b.yaml: Pod default/p-y: duplicate: already defined in a.yaml; keeping the first "
            "definition");
  EXPECT_EQ(a.errors[1].message.rfind("c.yaml: line 2, column 1: invalid YAML", 0), 0u)
      << a.errors[1].message;
  ASSERT_EQ(a.notes.size(), 1u);
  EXPECT_NE(a.notes[0].find("b.yaml: skipped Job"), std::string::npos);
}

}  // namespace
}  // namespace sluice::model
