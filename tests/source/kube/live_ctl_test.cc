// `sluicectl explain|matrix|lint|diff` against a live cluster: the built binary with a
// kubeconfig that points at the test API server.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/ctl/subprocess.h"
#include "tests/source/kube/fake_apiserver.h"

namespace sluice::source::kube {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sluice::ctl::testing::runCtl;
using testing::FakeApiServer;

class LiveCtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("sluice-live-ctl-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
    server.upsert(testing::kNamespaces, testing::namespaceJson("prod", {{"env", "prod"}}));
    server.upsert(testing::kNamespaces, testing::namespaceJson("dev"));
    server.upsert(testing::kPods, testing::podJson("prod", "db", {{"app", "db"}}, "10.0.0.1"));
    server.upsert(testing::kPods, testing::podJson("dev", "client", {{"app", "c"}}, "10.0.0.2"));
    server.upsert(testing::kPolicies,
                  testing::policyJson("prod", "isolate", {{"podSelector", json::object()}}));
    kubeconfig = (dir / "kubeconfig").string();
    std::ofstream(kubeconfig) << "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                                 "clusters:\n- name: c\n  cluster: {server: '" +
                                     server.url() +
                                     "'}\ncontexts:\n- name: test\n  context: {cluster: c}\n";
  }
  void TearDown() override { fs::remove_all(dir); }

  fs::path dir;
  FakeApiServer server;
  std::string kubeconfig;
};

TEST_F(LiveCtlTest, ExplainAndMatrixReadTheLiveCluster) {
  auto r = runCtl({"explain", "--kubeconfig", kubeconfig, "--from", "dev/client", "--to", "prod/db",
                   "--port", "80", "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["allowed"], false);
  EXPECT_EQ(json::parse(r.out)["ingress"]["policies"], json::array({"prod/isolate"})) << r.out;

  r = runCtl({"matrix", "--kubeconfig=" + kubeconfig, "--context", "test", "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["pods"].size(), 2u) << r.out;
}

TEST_F(LiveCtlTest, DiffAnswersWhatApplyingTheFilesWouldChange) {
  // Replaces the live `isolate` policy by one that admits dev; the other objects stay.
  std::string file = (dir / "allow.yaml").string();
  std::ofstream(file) << R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dev}}
)";
  auto r = runCtl({"diff", "--kubeconfig", kubeconfig, "--with", file, "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["changes"],
            json::parse(R"([{"from":"dev/client","to":"prod/db","before":false,"after":true}])"))
      << r.out;
}

TEST_F(LiveCtlTest, ErrorsAreClear) {
  auto r = runCtl({"lint", "--kubeconfig", (dir / "absent").string()});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("absent"), std::string::npos) << r.err;

  r = runCtl({"matrix", "-f", kubeconfig, "--kubeconfig", kubeconfig});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("exclude each other"), std::string::npos) << r.err;

  server.setForbidden(testing::kPods, true);
  r = runCtl({"lint", "--kubeconfig", kubeconfig, "--context", "nope"});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("no entry named \"nope\""), std::string::npos) << r.err;
}

}  // namespace
}  // namespace sluice::source::kube
