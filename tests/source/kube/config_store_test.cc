// Kubeconfig and in-cluster configuration, the per-kind store (relist differences, last good
// version), object decoding and the watch line splitter.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "policyd/source/kube/config.h"
#include "policyd/source/kube/informer.h"
#include "policyd/source/kube/objects.h"
#include "policyd/source/kube/store.h"
#include "tests/source/kube/fake_apiserver.h"

namespace sluice::source::kube {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("sluice-kubeconfig-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream((dir / name).string()) << text;
    return (dir / name).string();
  }
  fs::path dir;
};

constexpr const char* kTwoContexts = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c1
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
- name: c2
  cluster:
    server: https://10.0.0.2:6443
    certificate-authority: ca.crt
contexts:
- name: dev
  context: {cluster: c1, user: u1}
- name: prod
  context: {cluster: c2, user: u2}
users:
- name: u1
  user:
    token: abc
- name: u2
  user:
    tokenFile: tok
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
)";

TEST_F(ConfigTest, CurrentContextWithInlineCaAndToken) {
  auto path = write("config", kTwoContexts);
  write("ca.crt", "pem");
  write("tok", "t");
  auto c = loadKubeconfig(path, "");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->server, "https://10.0.0.1:6443");
  EXPECT_EQ(c->caData, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(c->token, "abc");
  EXPECT_EQ(c->origin, "kubeconfig " + path + " context dev");
}

TEST_F(ConfigTest, ExplicitContextResolvesFilesRelativeToTheKubeconfig) {
  auto path = write("config", kTwoContexts);
  write("ca.crt", "pem");
  write("tok", "t");
  auto c = loadKubeconfig(path, "prod");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->caFile, (dir / "ca.crt").string());
  EXPECT_EQ(c->tokenFile, (dir / "tok").string());
  EXPECT_EQ(c->clientCertData, "cert");
  EXPECT_EQ(c->clientKeyData, "key");
}

TEST_F(ConfigTest, ErrorsNameTheFileAndField) {
  auto path = write("config", kTwoContexts);
  auto missingCa = loadKubeconfig(path, "prod");  // ca.crt not written
  ASSERT_FALSE(missingCa.ok());
  EXPECT_NE(missingCa.error().message.find("kubeconfig " + path + ": "), std::string::npos);
  EXPECT_NE(missingCa.error().message.find("ca.crt"), std::string::npos)
      << missingCa.error().message;

  auto noCtx = loadKubeconfig(path, "staging");
  ASSERT_FALSE(noCtx.ok());
  EXPECT_NE(noCtx.error().message.find("contexts: no entry named \"staging\""), std::string::npos)
      << noCtx.error().message;

  auto bad = write("bad",
                   "clusters:\n- name: c\n  cluster:\n    server: ftp://x\ncontexts:\n- "
                   "name: a\n  context: {cluster: c}\ncurrent-context: a\n");
  auto r = loadKubeconfig(bad, "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("clusters(c).cluster.server: want an http(s):// URL"),
            std::string::npos)
      << r.error().message;

  auto badData = write("bad64",
                       "clusters:\n- name: c\n  cluster:\n    server: https://x\n    "
                       "certificate-authority-data: '!!!'\ncontexts:\n- name: a\n  "
                       "context: {cluster: c}\ncurrent-context: a\n");
  r = loadKubeconfig(badData, "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("certificate-authority-data: not valid base64"),
            std::string::npos)
      << r.error().message;

  auto yaml = write("yaml", "clusters: [\n");
  r = loadKubeconfig(yaml, "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("invalid YAML"), std::string::npos) << r.error().message;

  r = loadKubeconfig((dir / "absent").string(), "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("absent"), std::string::npos) << r.error().message;
}

TEST_F(ConfigTest, KubeconfigListIsMergedFirstFileWins) {
  // first: sets current-context and defines user u1; second: defines cluster c1 (and a u1 that
  // loses), its CA path relative to its own directory; a missing file in the list is skipped.
  std::filesystem::create_directories(dir / "other");
  auto first = write("first",
                     "current-context: dev\ncontexts:\n- name: dev\n  context: {cluster: c1, "
                     "user: u1}\nusers:\n- name: u1\n  user: {token: from-first}\n");
  auto second = write("other/second",
                      "current-context: prod\nclusters:\n- name: c1\n  cluster:\n    server: "
                      "https://10.0.0.9:6443\n    certificate-authority: ca.crt\nusers:\n- name: "
                      "u1\n  user: {token: from-second}\n");
  write("other/ca.crt", "pem");
  std::map<std::string, std::string> env = {
      {"KUBECONFIG", first + ":" + (dir / "missing").string() + ":" + second}};
  auto c = resolveConfig("", "", env);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->server, "https://10.0.0.9:6443");
  EXPECT_EQ(c->token, "from-first");
  EXPECT_EQ(c->caFile, (dir / "other" / "ca.crt").string());

  // A problem names the file the entry came from.
  auto broken = write("broken", "clusters:\n- name: c1\n  cluster:\n    server: ftp://x\n");
  env["KUBECONFIG"] = first + ":" + broken;
  auto r = resolveConfig("", "", env);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("kubeconfig " + broken + ": clusters(c1).cluster.server"),
            std::string::npos)
      << r.error().message;

  env["KUBECONFIG"] = (dir / "missing").string();
  EXPECT_FALSE(resolveConfig("", "", env).ok());
}

TEST_F(ConfigTest, InClusterAndKubeconfigFromTheEnvironment) {
  write("token", "sa-token\n");
  write("ca.crt", "pem");
  std::map<std::string, std::string> env = {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                            {"KUBERNETES_SERVICE_PORT", "443"}};
  auto c = inClusterConfig(env, dir.string());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->tokenFile, (dir / "token").string());
  EXPECT_EQ(c->caFile, (dir / "ca.crt").string());

  auto none = inClusterConfig({}, dir.string());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("KUBERNETES_SERVICE_HOST"), std::string::npos);

  auto path = write("config", kTwoContexts);
  env["KUBECONFIG"] = path + ":/elsewhere";
  auto viaEnv = resolveConfig("", "", env);
  ASSERT_TRUE(viaEnv.ok()) << viaEnv.error().message;
  EXPECT_EQ(viaEnv->token, "abc");
}

model::Pod podValue(const Change& c) { return std::get<model::Pod>(*c.value); }

Object decoded(Kind k, const nlohmann::json& j) {
  auto o = decodeObject(k, j);
  EXPECT_TRUE(o.ok());
  return std::move(*o);
}

nlohmann::json withRv(nlohmann::json j, const std::string& rv) {
  j["metadata"]["resourceVersion"] = rv;
  return j;
}

TEST(KindStoreTest, RelistReportsExactlyTheDifferences) {
  using testing::podJson;
  KindStore s;
  std::vector<Object> first;
  for (const char* n : {"a", "b", "c"})
    first.push_back(decoded(Kind::Pod, withRv(podJson("ns", n, {}, "10.0.0.1"), "1")));
  auto c1 = s.replace(std::move(first));
  EXPECT_EQ(c1.size(), 3u);

  std::vector<Object> second;
  second.push_back(decoded(Kind::Pod, withRv(podJson("ns", "a", {}, "10.0.0.1"), "1")));
  second.push_back(decoded(Kind::Pod, withRv(podJson("ns", "b", {{"v", "2"}}, "10.0.0.2"), "5")));
  second.push_back(decoded(Kind::Pod, withRv(podJson("ns", "d", {}, "10.0.0.4"), "6")));
  auto c2 = s.replace(std::move(second));
  std::vector<Change> want = {
      {Change::Op::Updated, "ns/b"}, {Change::Op::Added, "ns/d"}, {Change::Op::Deleted, "ns/c"}};
  EXPECT_EQ(c2, want);
  EXPECT_EQ(s.entries().size(), 3u);
  // The changes carry the new versions (the store itself keeps only versions and hashes).
  EXPECT_EQ(podValue(c2[0]).labels.at("v"), "2");
  EXPECT_EQ(podValue(c2[1]).name, "d");
  EXPECT_FALSE(c2[2].value);
}

TEST(KindStoreTest, RepeatedEventIsNoChangeAndDeleteOfUnknownIsNone) {
  KindStore s;
  auto pod = withRv(testing::podJson("ns", "a", {}, "10.0.0.1"), "7");
  EXPECT_TRUE(s.upsert(decoded(Kind::Pod, pod)));
  EXPECT_FALSE(s.upsert(decoded(Kind::Pod, pod)));
  EXPECT_FALSE(s.remove("ns/zzz"));
  EXPECT_EQ(s.remove("ns/a"), (Change{Change::Op::Deleted, "ns/a"}));
}

TEST(KindStoreTest, InvalidVersionKeepsTheLastGood) {
  KindStore s;
  auto good =
      withRv(testing::policyJson("ns", "p", {{"podSelector", nlohmann::json::object()}}), "1");
  ASSERT_TRUE(s.upsert(decoded(Kind::NetworkPolicy, good)));
  auto bad = withRv(testing::policyJson("ns", "p", {{"podSelector", {{"matchLabels", 5}}}}), "2");
  Object badObj = decoded(Kind::NetworkPolicy, bad);
  ASSERT_TRUE(badObj.error);
  auto c = s.upsert(std::move(badObj));
  EXPECT_EQ(c, (Change{Change::Op::Updated, "ns/p"}));
  // Only the error changed: the consumer keeps the last good version.
  EXPECT_TRUE(c->errorOnly);
  EXPECT_FALSE(c->value);
  const auto& e = s.entries().at("ns/p");
  ASSERT_TRUE(e.good);
  ASSERT_TRUE(e.error);
  EXPECT_NE(
      e.error->message.find("kube-apiserver: NetworkPolicy ns/p: spec.podSelector.matchLabels"),
      std::string::npos)
      << e.error->message;
  // A never-good object has nothing to use but is tracked (its delete must be seen).
  ASSERT_TRUE(s.upsert(
      decoded(Kind::NetworkPolicy, withRv(testing::policyJson("ns", "q", {{"x", 1}}), "3"))));
  EXPECT_FALSE(s.entries().at("ns/q").good);
}

TEST(DecodeObjectTest, NodeKeepsInternalIpsAndPodCidrs) {
  auto n = decoded(Kind::Node, testing::nodeJson("n1", "192.0.2.9", {"10.1.0.0/24", "fd00::/64"}));
  ASSERT_TRUE(n.value);
  const auto& node = std::get<Node>(*n.value);
  EXPECT_EQ(node.name, "n1");
  ASSERT_EQ(node.internalIps.size(), 1u);
  EXPECT_EQ(node.internalIps[0].toString(), "192.0.2.9");
  ASSERT_EQ(node.podCidrs.size(), 2u);
  EXPECT_EQ(node.podCidrs[1].toString(), "fd00::/64");
}

TEST(DecodeObjectTest, ObjectWithoutNameIsAnError) {
  EXPECT_FALSE(
      decodeObject(Kind::Pod, nlohmann::json{{"metadata", nlohmann::json::object()}}).ok());
  EXPECT_FALSE(decodeObject(Kind::Pod, nlohmann::json::array()).ok());
}

TEST(LineSplitterTest, HandsOutOnlyCompleteLines) {
  LineSplitter s;
  std::vector<std::string> lines;
  auto on = [&](std::string_view l) { lines.emplace_back(l); };
  s.feed("{\"a\":1}\n{\"b\"", on);
  s.feed(":2}\n\n{\"c", on);
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", ""}));
  EXPECT_EQ(s.pending(), "{\"c");
}

}  // namespace
}  // namespace sluice::source::kube
