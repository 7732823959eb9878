// explain through run(), in process, on the fixture cluster.
#include "policyd/ctl/explain.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "policyd/ctl/app.h"
#include "subprocess.h"

namespace sluice::ctl {
namespace {

using nlohmann::json;
using testing::fixture;

struct Ran {
  int code;
  std::string out, err;
};

Ran ctl(std::vector<std::string> args) {
  std::ostringstream out, err;
  int code = run(args, out, err);
  return {code, out.str(), err.str()};
}

json explainJson(const std::string& from, const std::string& to, const std::string& port,
                 const std::string& protocol = "TCP") {
  auto r = ctl({"explain", "-f", fixture("cluster"), "--from", from, "--to", to, "--port", port,
                "--protocol", protocol, "-o", "json"});
  EXPECT_EQ(r.code, 0) << r.err;
  return r.code == 0 ? json::parse(r.out) : json();
}

TEST(ExplainTest, NamespaceSelectorOnNamedPort) {
  auto j = explainJson("dev/client", "prod/web", "http");
  EXPECT_EQ(j, json::parse(R"({"allowed":true,
    "egress":{"pod":"dev/client","isolated":false,"policies":[],"allowedBy":null,"allowed":true},
    "ingress":{"pod":"prod/web","isolated":true,"policies":["prod/default-deny","prod/web"],
               "allowedBy":{"policy":"prod/web","rule":0},"allowed":true}})"));
}

TEST(ExplainTest, JsonKeysInContractOrder) {
  auto r = ctl({"explain", "-f", fixture("cluster"), "--from", "dev/client", "--to", "prod/web",
                "--port", "8080", "-o", "json"});
  ASSERT_EQ(r.code, 0);
  auto j = nlohmann::ordered_json::parse(r.out);
  std::vector<std::string> top, side;
  for (auto it = j.begin(); it != j.end(); ++it) top.push_back(it.key());
  for (auto it = j["ingress"].begin(); it != j["ingress"].end(); ++it) side.push_back(it.key());
  EXPECT_EQ(top, (std::vector<std::string>{"allowed", "egress", "ingress"}));
  EXPECT_EQ(side,
            (std::vector<std::string>{"pod", "isolated", "policies", "allowedBy", "allowed"}));
}

TEST(ExplainTest, Ipv6OnlySourceUsesDestinationsIpv6) {
  auto j = explainJson("monitoring/prometheus", "prod/web", "metrics");
  EXPECT_TRUE(j["allowed"]);
  EXPECT_EQ(j["ingress"]["allowedBy"]["rule"], 1);
}

TEST(ExplainTest, BothSidesDeny) {
  auto j = explainJson("prod/web", "prod/db", "5432");
  EXPECT_FALSE(j["allowed"]);
  EXPECT_FALSE(j["egress"]["allowed"]);
  EXPECT_TRUE(j["egress"]["allowedBy"].is_null());
  EXPECT_EQ(j["egress"]["policies"],
            json::parse(R"(["prod/allow-dns","prod/default-deny","prod/web"])"));
  EXPECT_FALSE(j["ingress"]["allowed"]);
}

TEST(ExplainTest, IpBlockWithExceptAndBareAddresses) {
  auto j = explainJson("10.99.0.5", "prod/db", "5432");
  EXPECT_TRUE(j["allowed"]);
  EXPECT_TRUE(j["egress"]["pod"].is_null());
  EXPECT_EQ(j["ingress"]["allowedBy"], json::parse(R"({"policy":"prod/db","rule":1})"));
  EXPECT_FALSE(explainJson("10.99.1.5", "prod/db", "5432")["allowed"]);
  EXPECT_TRUE(explainJson("prod/web", "1.1.1.1", "443")["allowed"]);
  EXPECT_FALSE(explainJson("prod/web", "10.1.2.3", "443")["allowed"]);
}

TEST(ExplainTest, PodAddressIsThatPod) {
  auto j = explainJson("10.244.1.10", "fd00:244:1::11", "grpc");
  EXPECT_EQ(j["egress"]["pod"], "prod/web");
  EXPECT_EQ(j["ingress"]["pod"], "prod/api");
  EXPECT_TRUE(j["allowed"]);
}

TEST(ExplainTest, EgressDnsAllowed) {
  auto j = explainJson("prod/api", "kube-system/coredns", "53", "UDP");
  EXPECT_TRUE(j["allowed"]);
  EXPECT_EQ(j["egress"]["allowedBy"], json::parse(R"({"policy":"prod/allow-dns","rule":0})"));
  EXPECT_FALSE(explainJson("prod/api", "kube-system/coredns", "5353", "UDP")["allowed"]);
}

TEST(ExplainTest, TextNamesDecidingRuleAndNearestMiss) {
  auto r = ctl({"explain", "-f", fixture("cluster"), "--from", "dev/client", "--to", "prod/db",
                "--port", "5432"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("dev/client (10.244.1.30) -> prod/db (10.244.2.20) TCP/5432: DENIED"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("isolated for ingress by prod/db, prod/default-deny, none of whose rules "
                       "match"),
            std::string::npos)
      << r.out;
  // prod/db's first rule: the port matches, but its podSelector-only peer is namespace-local.
  EXPECT_NE(r.out.find("prod/db: nearest miss spec.ingress[0]: the port matches"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("dev/client is in dev (add a namespaceSelector)"), std::string::npos)
      << r.out;

  r = ctl({"explain", "-f", fixture("cluster"), "--from", "prod/web", "--to", "prod/api",
           "--port", "grpc"});
  EXPECT_NE(r.out.find("ALLOWED"), std::string::npos);
  EXPECT_NE(r.out.find("allowed by prod/web spec.egress[0] (to[0] podSelector app=api, ports[0] "
                       "TCP/grpc)"),
            std::string::npos)
      << r.out;
}

TEST(ExplainTest, NearestMissOnPort) {
  auto r = ctl({"explain", "-f", fixture("cluster"), "--from", "prod/api", "--to", "prod/db",
                "--port", "5433"});
  ASSERT_EQ(r.code, 0);
  // prod/api's egress rule reaches prod/db, but on 5432 only.
  EXPECT_NE(r.out.find("prod/api: nearest miss spec.egress[0]: to[0] podSelector app=db matches, "
                       "but TCP/5433 is not among its ports (TCP/5432)"),
            std::string::npos)
      << r.out;
}

TEST(ExplainTest, BadEndpointsAreExit2) {
  auto r = ctl({"explain", "-f", fixture("cluster"), "--from", "prod/nope", "--to", "prod/web",
                "--port", "80"});
  EXPECT_EQ(r.code, kExitBadInput);
  EXPECT_NE(r.err.find("prod/nope"), std::string::npos);
  r = ctl({"explain", "-f", fixture("cluster"), "--from", "web", "--to", "prod/web", "--port",
           "80"});
  EXPECT_EQ(r.code, kExitBadInput);
  EXPECT_NE(r.err.find("expected NS/POD or an IP address"), std::string::npos);
  r = ctl({"explain", "-f", fixture("cluster"), "--from", "prod/web", "--to", "dev/client",
           "--port", "http"});
  EXPECT_EQ(r.code, kExitBadInput);
  EXPECT_NE(r.err.find("dev/client has no TCP container port named http"), std::string::npos);
  r = ctl({"explain", "-f", fixture("cluster"), "--from", "prod/web", "--to", "8.8.8.8",
           "--port", "http"});
  EXPECT_EQ(r.code, kExitBadInput);
}

}  // namespace
}  // namespace sluice::ctl
