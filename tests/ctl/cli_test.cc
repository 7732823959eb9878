// The built sluicectl binary: exit codes, stdout/stderr, JSON contracts (DESIGN.md §7).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "subprocess.h"

namespace sluice::ctl {
namespace {

using nlohmann::json;
using testing::fixture;
using testing::ProcessResult;
using testing::runCtl;

void expectCleanExit(const ProcessResult& r, int code) {
  EXPECT_EQ(r.signal, 0) << "killed by signal: " << r.err;
  EXPECT_EQ(r.exitCode, code) << "stderr: " << r.err;
}

TEST(CliTest, MatrixJson) {
  auto r = runCtl({"matrix", "-f", fixture("cluster"), "-o", "json"});
  expectCleanExit(r, 0);
  auto j = json::parse(r.out);
  EXPECT_EQ(j["port"], 80);
  EXPECT_EQ(j["protocol"], "TCP");
  ASSERT_EQ(j["pods"].size(), 6u);  // the hostNetwork pod is not an endpoint
  // Every prod pod is isolated both ways and nothing allows port 80: only the three pods
  // outside prod reach each other (themselves included).
  for (size_t i = 0; i < 6; ++i) {
    for (size_t k = 0; k < 6; ++k) EXPECT_EQ(j["allowed"][i][k].get<bool>(), i < 3 && k < 3);
  }
}

TEST(CliTest, FilesGivenSeveralWays) {
  auto a = runCtl({"matrix", "-f", fixture("cluster/namespaces.yaml"), fixture("cluster/pods.json"),
                   fixture("cluster/policies.yaml"), "-o", "json"});
  auto b = runCtl({"matrix", "-f", fixture("cluster/namespaces.yaml"), "-f",
                   fixture("cluster/pods.json"), "--filename=" + fixture("cluster/policies.yaml"),
                   "-ojson"});
  auto c = runCtl({"matrix", "-f", fixture("cluster"), "-o", "json"});
  expectCleanExit(a, 0);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out, c.out);
}

TEST(CliTest, MatrixUdpAndNamedPort) {
  auto r = runCtl({"matrix", "-f", fixture("cluster"), "--port", "dns", "--protocol", "UDP",
                   "-o", "json"});
  expectCleanExit(r, 0);
  auto j = json::parse(r.out);
  EXPECT_EQ(j["port"], "dns");
  EXPECT_EQ(j["protocol"], "UDP");
  // Everyone reaches coredns (index 1) on its named UDP port: prod pods through allow-dns.
  for (size_t i = 0; i < 6; ++i) {
    for (size_t k = 0; k < 6; ++k) EXPECT_EQ(j["allowed"][i][k].get<bool>(), k == 1);
  }
}

TEST(CliTest, ExplainJson) {
  auto r = runCtl({"explain", "-f", fixture("cluster"), "--from", "prod/web", "--to", "prod/api",
                   "--port", "9000", "-o", "json"});
  expectCleanExit(r, 0);
  auto j = json::parse(r.out);
  EXPECT_TRUE(j["allowed"]);
  EXPECT_EQ(j["egress"]["allowedBy"], json::parse(R"({"policy":"prod/web","rule":0})"));
  EXPECT_EQ(j["ingress"]["allowedBy"], json::parse(R"({"policy":"prod/api","rule":0})"));
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST(CliTest, DiffJsonAndText) {
  std::vector<std::string> args = {"diff", "-f", fixture("cluster"), "--with",
                                   fixture("cluster/namespaces.yaml"),
                                   fixture("cluster/pods.json"), fixture("cluster-changed"),
                                   "--port", "5432"};
  auto text = runCtl(args);
  expectCleanExit(text, 0);
  EXPECT_EQ(text.out,
            "dev/client -> prod/db: denied -> allowed\n"
            "1 of 36 pairs changed for TCP/5432 (0 now denied, 1 now allowed)\n");
  args.push_back("-o");
  args.push_back("json");
  auto r = runCtl(args);
  expectCleanExit(r, 0);
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"port":5432,"protocol":"TCP","changes":[
      {"from":"dev/client","to":"prod/db","before":false,"after":true}]})"));
  // Reversed, the same pair loses access.
  r = runCtl({"diff", "-f", fixture("cluster/namespaces.yaml"), fixture("cluster/pods.json"),
              fixture("cluster-changed"), "--with", fixture("cluster"), "--port", "postgres",
              "-o", "json"});
  expectCleanExit(r, 0);
  EXPECT_EQ(json::parse(r.out)["changes"][0]["after"], false);
  EXPECT_EQ(json::parse(r.out)["port"], "postgres");
}

TEST(CliTest, LintEachKindExit1AndCleanExit0) {
  for (const char* kind : {"policy-selects-nothing", "peer-selects-nothing", "egress-without-dns",
                           "unknown-named-port", "ipblock-covers-pods", "shadowed-rule",
                           "ignored-rules", "or-peers"}) {
    auto r = runCtl({"lint", "-f", fixture("cluster/namespaces.yaml"), fixture("cluster/pods.json"),
                     fixture(std::string("lint/") + kind)});
    expectCleanExit(r, 1);
    std::istringstream in(r.out);
    std::string l;
    int n = 0;
    while (std::getline(in, l)) {
      // WARN <kind> <ns/name> <field>: <message> (hint: <hint>)
      std::istringstream words(l);
      std::string warn, k, object, field;
      words >> warn >> k >> object >> field;
      EXPECT_EQ(warn, "WARN") << l;
      EXPECT_EQ(k, kind) << l;
      EXPECT_NE(object.find('/'), std::string::npos) << l;
      EXPECT_TRUE(field.starts_with("spec.") && field.ends_with(":")) << l;
      EXPECT_NE(l.find(" (hint: "), std::string::npos) << l;
      EXPECT_TRUE(l.ends_with(")")) << l;
      ++n;
    }
    EXPECT_GT(n, 0) << kind;
    auto j = runCtl({"lint", "-f", fixture("cluster/namespaces.yaml"),
                     fixture("cluster/pods.json"), fixture(std::string("lint/") + kind), "-o",
                     "json"});
    expectCleanExit(j, 1);
    EXPECT_EQ(json::parse(j.out)["findings"].size(), static_cast<size_t>(n));
  }
  auto clean = runCtl({"lint", "-f", fixture("cluster")});
  expectCleanExit(clean, 0);
  EXPECT_EQ(clean.out, "");
  auto cleanJson = runCtl({"lint", "-f", fixture("cluster"), "-o", "json"});
  expectCleanExit(cleanJson, 0);
  EXPECT_EQ(json::parse(cleanJson.out), json::parse(R"({"findings":[]})"));
}

struct BadInput {
  const char* name;
  std::vector<std::string> args;
  std::vector<std::string> stderrHas;  // the file and the field
};

class CliBadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(CliBadInputTest, Exit2WithMessageNamingFileAndField) {
  const auto& p = GetParam();
  auto r = runCtl(p.args);
  expectCleanExit(r, 2);
  EXPECT_TRUE(r.out.empty()) << r.out;
  for (const auto& s : p.stderrHas) EXPECT_NE(r.err.find(s), std::string::npos) << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, CliBadInputTest,
    ::testing::Values(
        BadInput{"malformed_yaml",
                 {"matrix", "-f", fixture("cluster"), fixture("bad/malformed.yaml")},
                 {"bad/malformed.yaml", "line 6"}},
        BadInput{"invalid_policy",
                 {"explain", "-f", fixture("cluster"), fixture("bad/invalid-policy.yaml"),
                  "--from", "dev/client", "--to", "prod/web", "--port", "80"},
                 {"bad/invalid-policy.yaml", "prod/bad-cidr",
                  "spec.ingress[0].from[0].ipBlock.cidr"}},
        BadInput{"invalid_pod",
                 {"matrix", "-f", fixture("bad/invalid-pod.json")},
                 {"bad/invalid-pod.json", "status.podIPs[0].ip"}},
        BadInput{"lint_invalid_policy",
                 {"lint", "-f", fixture("bad/invalid-policy.yaml")},
                 {"bad/invalid-policy.yaml", "ipBlock.cidr"}},
        BadInput{"diff_bad_with",
                 {"diff", "-f", fixture("cluster"), "--with", fixture("bad/malformed.yaml")},
                 {"bad/malformed.yaml"}},
        BadInput{"missing_file",
                 {"matrix", "-f", fixture("bad/does-not-exist.yaml")},
                 {"does-not-exist.yaml", "cannot read"}},
        BadInput{"unknown_pod",
                 {"explain", "-f", fixture("cluster"), "--from", "prod/nope", "--to", "prod/web",
                  "--port", "80"},
                 {"--from prod/nope"}},
        BadInput{"unknown_flag", {"matrix", "-f", fixture("cluster"), "--bogus"},
                 {"unknown flag '--bogus'", "Usage:"}},
        BadInput{"no_command", {}, {"missing command", "Usage:"}},
        BadInput{"missing_port",
                 {"explain", "-f", fixture("cluster"), "--from", "a/b", "--to", "c/d"},
                 {"--port is required", "Usage:"}},
        BadInput{"bad_protocol",
                 {"matrix", "-f", fixture("cluster"), "--protocol", "ICMP"},
                 {"--protocol ICMP"}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(CliTest, HelpIsExit0OnStdout) {
  auto r = runCtl({"--help"});
  expectCleanExit(r, 0);
  EXPECT_NE(r.out.find("sluicectl explain"), std::string::npos);
}

TEST(CliTest, DemoManifestsWork) {
  const std::string ex = std::string(SLUICE_SOURCE_DIR) + "/manifests/examples";
  expectCleanExit(runCtl({"matrix", "-f", ex, "--port", "http"}), 0);
  auto r = runCtl({"explain", "-f", ex, "--from", "dev/client", "--to", "prod/web", "--port",
                   "http", "-o", "json"});
  expectCleanExit(r, 0);
  EXPECT_TRUE(json::parse(r.out)["allowed"]);
  expectCleanExit(runCtl({"lint", "-f", ex}), 0);
}

}  // namespace
}  // namespace sluice::ctl
