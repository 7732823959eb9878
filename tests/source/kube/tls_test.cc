// The client over TLS against the test API server with a certificate from a test CA: the CA
// from a file, inline (as a kubeconfig's certificate-authority-data), a CA that did not sign
// the server (refused), and insecure-skip-tls-verify. Certificates are made with the openssl
// tool at suite start.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/file_util.h"
#include "policyd/source/kube/config.h"
#include "policyd/source/kube/kube_source.h"
#include "tests/source/kube/fake_apiserver.h"

namespace sluice::source::kube {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::FakeApiServer;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("sluice-kube-tls-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::string d = dir_.string();
    std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string script =
        "set -e; cd " + d + ";" + "openssl req -x509" + ec +
        " -keyout ca.key -out ca.crt -subj /CN=sluice-test-ca -days 1;" + "openssl req -x509" + ec +
        " -keyout other.key -out other.crt -subj /CN=other -days 1;" + "openssl req" + ec +
        " -keyout server.key -out server.csr -subj /CN=127.0.0.1;" +
        "printf 'subjectAltName=IP:127.0.0.1' > san.ext;" +
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out "
        "server.crt -days 1 -extfile san.ext;" +
        "openssl base64 -A -in ca.crt > ca.b64;" + "echo s3cret > token";
    ok_ = std::system(("(" + script + ") >/dev/null 2>&1").c_str()) == 0;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void SetUp() override {
    if (!ok_) GTEST_SKIP() << "openssl could not make test certificates";
    server_ = std::make_unique<FakeApiServer>(
        path("token"), FakeApiServer::TlsFiles{path("server.crt"), path("server.key")});
    server_->upsert(testing::kNamespaces, testing::namespaceJson("default"));
    server_->upsert(testing::kPods, testing::podJson("default", "a", {}, "10.0.0.1"));
  }
  static std::string path(const std::string& f) { return (dir_ / f).string(); }
  ClusterConfig base() {
    ClusterConfig c;
    c.server = server_->url();
    c.tokenFile = path("token");
    return c;
  }

  static inline fs::path dir_;
  static inline bool ok_ = false;
  std::unique_ptr<FakeApiServer> server_;
};

TEST_F(TlsTest, CaFileVerifiesTheServer) {
  ClusterConfig c = base();
  c.caFile = path("ca.crt");
  auto s = readClusterOnce(c, 5s);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->cluster.pods.size(), 1u);
  EXPECT_EQ(server_->unauthorized(), 0);
}

TEST_F(TlsTest, KubeconfigWithInlineCaDataAndToken) {
  auto b64 = readFile(path("ca.b64"));
  ASSERT_TRUE(b64.ok());
  std::string kc =
      "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: c\n  "
      "cluster:\n    server: " +
      server_->url() + "\n    certificate-authority-data: " + *b64 +
      "\ncontexts:\n- name: t\n  context: {cluster: c, user: u}\nusers:\n- name: u\n "
      " user:\n    token: s3cret\n";
  std::ofstream(path("kubeconfig")) << kc;
  auto c = loadKubeconfig(path("kubeconfig"), "");
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto s = readClusterOnce(*c, 5s);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->cluster.namespaces.size(), 1u);
}

TEST_F(TlsTest, ServerNotSignedByTheClusterCaIsRefused) {
  ClusterConfig c = base();
  c.caFile = path("other.crt");
  auto s = readClusterOnce(c, 300ms);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("certificate"), std::string::npos) << s.error().message;
  EXPECT_GT(server_->tlsFailures(), 0);
}

TEST_F(TlsTest, InsecureSkipTlsVerify) {
  ClusterConfig c = base();
  c.caFile = path("other.crt");
  c.insecureSkipTlsVerify = true;
  auto s = readClusterOnce(c, 5s);
  ASSERT_TRUE(s.ok()) << s.error().message;
}

}  // namespace
}  // namespace sluice::source::kube
