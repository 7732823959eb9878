// The flow log pipeline: annotation against the model (pods by address, the engine's words),
// the per-endpoint rate limit, the ring sluicectl reads, and reopening the file for rotation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <thread>

#include "policyd/daemon/flow_log.h"
#include "tests/daemon/fake_model.h"
#include "policyd/model/decode.h"

namespace sluice::daemon {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kCluster = R"(
apiVersion: v1
kind: Pod
metadata: {namespace: prod, name: web, labels: {app: web}}
status: {podIPs: [{ip: 10.1.0.5}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: prod, name: client, labels: {app: client}}
status: {podIPs: [{ip: 10.1.0.9}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: dev, name: other, labels: {app: other}}
status: {podIPs: [{ip: 10.2.0.7}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: prod, name: web-from-client}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: prod, name: deny-all}
spec:
  podSelector: {}
)";

using testing::FakeModel;

datapath::FlowEvent event(const char* src, const char* dst, uint16_t port, compiler::Direction dir,
                          const char* reason) {
  datapath::FlowEvent e;
  e.wallNs = 1'700'000'000'000'000'000LL;
  e.endpoint = 3;
  e.direction = dir;
  e.src = IpAddr::parse(src).value();
  e.dst = IpAddr::parse(dst).value();
  e.srcPort = 40000;
  e.dstPort = port;
  e.protocol = 6;
  e.reason = reason;
  e.verdict = *reason ? datapath::FlowVerdict::Denied : datapath::FlowVerdict::Allowed;
  return e;
}

std::vector<FlowAnnotation> annotate(FlowAnnotator& a, const datapath::FlowEvent& e,
                                     Clock::time_point now = Clock::time_point{} + 1h) {
  std::vector<FlowAnnotation> out;
  EXPECT_EQ(a.annotate({e}, out, now), 1u);
  return out;
}

TEST(FlowAnnotatorTest, PolicyDropNamesEveryIsolatingPolicyInExplainsWords) {
  FakeModel model(kCluster);
  FlowAnnotator a(model);
  auto out = annotate(a, event("10.2.0.7", "10.1.0.5", 80, compiler::Direction::Ingress, "policy"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].srcPod, "dev/other");
  EXPECT_EQ(out[0].dstPod, "prod/web");
  EXPECT_EQ(out[0].why,
            "denied: isolated for ingress by prod/deny-all, prod/web-from-client, none of whose "
            "rules match");
  EXPECT_EQ(out[0].policies, (std::vector<std::string>{"prod/deny-all", "prod/web-from-client"}));
  EXPECT_EQ(out[0].engineAllowed, std::optional<bool>(false));
}

TEST(FlowAnnotatorTest, AllowedFlowNamesTheRuleThatAdmittedIt) {
  FakeModel model(kCluster);
  FlowAnnotator a(model);
  auto out = annotate(a, event("10.1.0.9", "10.1.0.5", 80, compiler::Direction::Ingress, ""));
  EXPECT_EQ(out[0].why, "allowed by prod/web-from-client spec.ingress[0]");
  EXPECT_EQ(out[0].policies, std::vector<std::string>{"prod/web-from-client"});
}

TEST(FlowAnnotatorTest, PolicyDropTheEngineAllowsIsReportedAsAMismatch) {
  FakeModel model(kCluster);
  FlowAnnotator a(model);
  auto e = event("10.1.0.9", "10.1.0.5", 80, compiler::Direction::Ingress, "policy");
  auto out = annotate(a, e);
  EXPECT_EQ(out[0].engineAllowed, std::optional<bool>(true));
  EXPECT_NE(out[0].why.find("but the engine allows it"), std::string::npos) << out[0].why;
  auto j = nlohmann::json::parse(flowLogLine(e, "n1", "prod/web", out[0]));
  EXPECT_EQ(j["engineMismatch"], true);
}

TEST(FlowAnnotatorTest, NonPolicyDropKeepsItsReason) {
  FakeModel model(kCluster);
  FlowAnnotator a(model);
  auto e = event("10.9.9.9", "10.1.0.5", 80, compiler::Direction::Egress, "spoofed");
  auto out = annotate(a, e);
  EXPECT_EQ(out[0].why, "denied: source address is not the pod's own (spoofed)");
  EXPECT_TRUE(out[0].policies.empty());
  auto j = nlohmann::json::parse(flowLogLine(e, "n1", "prod/web", out[0]));
  EXPECT_EQ(j["reason"], "spoofed");
  EXPECT_EQ(j["node"], "n1");
  EXPECT_EQ(j["dstPod"], "prod/web");
  EXPECT_FALSE(j.contains("srcPod"));
}

TEST(FlowAnnotatorTest, RebuildsOncePerGenerationAndAtMostEveryInterval) {
  FakeModel model(kCluster);
  FlowAnnotator a(model, 250ms);
  auto e = event("10.2.0.7", "10.1.0.5", 80, compiler::Direction::Ingress, "policy");
  Clock::time_point t0 = Clock::time_point{} + 1h;
  std::vector<FlowAnnotation> out;
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.annotate({e}, out, t0), 1u);
  EXPECT_EQ(a.rebuilds(), 1u);
  // The model changes 10 ms later: the events wait for the interval, then see the new model.
  model.set(std::string(kCluster) + R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: prod, name: web-from-dev}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dev}}}]}]
)");
  out.clear();
  EXPECT_EQ(a.annotate({e}, out, t0 + 10ms), 0u);
  EXPECT_EQ(a.annotate({e}, out, t0 + 100ms), 0u);
  ASSERT_EQ(a.annotate({e}, out, t0 + 260ms), 1u);
  EXPECT_EQ(a.rebuilds(), 2u);
  EXPECT_EQ(out[0].why,
            "denied by the datapath, but the engine allows it: allowed by "
            "prod/web-from-dev spec.ingress[0]");
}

TEST(FlowRateLimiterTest, BurstThenRatePerEndpointAndCountsWhatItRefuses) {
  FlowRateLimiter lim(10, 5);
  Clock::time_point t = Clock::time_point{} + 1h;
  int admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += lim.admit(1, t) ? 1 : 0;
  EXPECT_EQ(admitted, 5);
  EXPECT_EQ(lim.suppressed(), 15u);
  // Another endpoint has its own bucket.
  EXPECT_TRUE(lim.admit(2, t));
  // 10/s: after 300 ms three more.
  admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += lim.admit(1, t + 300ms) ? 1 : 0;
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(lim.suppressed(), 22u);
}

TEST(FlowRingTest, KeepsTheLastRecordsAndWakesFollowers) {
  FlowRing ring(3);
  for (int i = 0; i < 5; ++i) ring.push(FlowRecord{0, true, "p", "", "", std::to_string(i)});
  auto all = ring.since(0, 100);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all.front().seq, 3u);
  EXPECT_EQ(all.back().line, "4");
  EXPECT_EQ(ring.since(4, 100).size(), 1u);
  EXPECT_FALSE(ring.waitFor(5, 10ms));
  std::jthread t([&] { ring.push(FlowRecord{0, false, "p", "", "", "5"}); });
  EXPECT_TRUE(ring.waitFor(5, 5000ms));
  EXPECT_EQ(ring.since(5, 10).at(0).line, "5");
}

TEST(FlowRecorderTest, WritesAnnotatedLinesAndCountsSuppressedOnes) {
  FakeModel model(kCluster);
  auto dir = std::filesystem::temp_directory_path() / ("flowrec-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "flows.log").string();
  auto log = FlowLog::open(path);
  ASSERT_TRUE(log.ok());
  FlowRing ring(100);
  FlowRecorderOptions opts;
  opts.node = "n1";
  opts.ratePerSecond = 1;
  opts.burst = 4;
  FlowRecorder rec(
      opts, model, [](uint32_t) { return std::string("prod/web"); }, log->get(), &ring);
  Clock::time_point t = Clock::time_point{} + 1h;
  for (int i = 0; i < 10; ++i) {
    rec.offer(event("10.2.0.7", "10.1.0.5", 80, compiler::Direction::Ingress, "policy"), t);
  }
  EXPECT_FALSE(rec.flush(t));
  auto s = rec.stats();
  EXPECT_EQ(s.writtenDenied, 4u);
  EXPECT_EQ(s.suppressedRate, 6u);
  EXPECT_EQ(ring.since(0, 100).size(), 4u);

  // Rotation: the file is moved away, reopen() starts a new one at the same path.
  std::filesystem::rename(path, path + ".1");
  ASSERT_TRUE((*log)->reopen().ok());
  rec.offer(event("10.2.0.7", "10.1.0.5", 80, compiler::Direction::Ingress, "policy"), t + 2s);
  rec.flush(t + 2s);
  std::ifstream old(path + ".1"), fresh(path);
  std::string line;
  int oldLines = 0;
  while (std::getline(old, line)) ++oldLines;
  EXPECT_EQ(oldLines, 4);
  ASSERT_TRUE(std::getline(fresh, line));
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["pod"], "prod/web");
  EXPECT_EQ(j["srcPod"], "dev/other");
  EXPECT_EQ(j["policies"].size(), 2u);
  std::filesystem::remove_all(dir);
}

// dev/other is isolated by nothing enforced; dev/lockdown (audit) would deny it all ingress.
constexpr const char* kAuditCluster = R"(
apiVersion: v1
kind: Pod
metadata: {namespace: dev, name: other, labels: {app: other}}
status: {podIPs: [{ip: 10.2.0.7}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: prod, name: client, labels: {app: client}}
status: {podIPs: [{ip: 10.1.0.9}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  namespace: dev
  name: lockdown
  annotations: {sluice.io/enforcement: audit}
spec:
  podSelector: {}
)";

TEST(FlowAnnotatorTest, AllowedFlowAnAuditedPolicyWouldDenyIsAnAuditDenyNamingIt) {
  FakeModel model(kAuditCluster);
  FlowAnnotator a(model);
  auto e = event("10.1.0.9", "10.2.0.7", 80, compiler::Direction::Ingress, "");
  auto out = annotate(a, e);
  EXPECT_TRUE(out[0].auditDeny);
  EXPECT_EQ(out[0].auditPolicies, std::vector<std::string>{"dev/lockdown"});
  EXPECT_NE(out[0].why.find("allowed now, denied once enforced (audit: dev/lockdown)"),
            std::string::npos)
      << out[0].why;
  auto j = nlohmann::json::parse(flowLogLine(e, "n1", "dev/other", out[0]));
  EXPECT_EQ(j["verdict"], "audit-deny");
  EXPECT_EQ(j["auditPolicies"], nlohmann::json::array({"dev/lockdown"}));
  EXPECT_FALSE(j.contains("engineMismatch"));
}

TEST(FlowRecorderTest, AuditedEndpointsAllowedFlowsAreWrittenOnlyAsAuditDenies) {
  FakeModel model(kAuditCluster);
  FlowRing ring(100);
  FlowRecorderOptions opts;
  opts.node = "n1";  // logAllowed off: plain allowed flows are not written
  FlowRecorder rec(
      opts, model, [](uint32_t) { return std::string("dev/other"); }, nullptr, &ring);
  Clock::time_point t = Clock::time_point{} + 1h;
  // Would be denied once dev/lockdown is enforced: written and counted against it.
  rec.offer(event("10.1.0.9", "10.2.0.7", 80, compiler::Direction::Ingress, ""), t);
  rec.offer(event("10.1.0.9", "10.2.0.7", 81, compiler::Direction::Ingress, ""), t);
  // The client's egress is not audited: an allowed flow that stays allowed, not written.
  rec.offer(event("10.1.0.9", "10.2.0.7", 80, compiler::Direction::Egress, ""), t);
  rec.flush(t);
  auto s = rec.stats();
  EXPECT_EQ(s.writtenAuditDenied, 2u);
  EXPECT_EQ(s.writtenAllowed, 2u);
  EXPECT_EQ((s.auditDenied[{"dev/lockdown", compiler::Direction::Ingress}]), 2u);
  ASSERT_EQ(ring.since(0, 100).size(), 2u);

  model.set(R"(
apiVersion: v1
kind: Pod
metadata: {namespace: dev, name: other, labels: {app: other}}
status: {podIPs: [{ip: 10.2.0.7}]}
)");
  // With logAllowed the same plain allowed flows are written as "allowed".
  opts.logAllowed = true;
  FlowRecorder all(
      opts, model, [](uint32_t) { return std::string("dev/other"); }, nullptr, &ring);
  all.offer(event("10.1.0.9", "10.2.0.7", 80, compiler::Direction::Ingress, ""), t);
  all.flush(t);
  EXPECT_EQ(all.stats().writtenAllowed, 1u);
  EXPECT_EQ(all.stats().writtenAuditDenied, 0u);
  auto last = ring.since(2, 100);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_NE(last[0].line.find("\"verdict\":\"allowed\""), std::string::npos) << last[0].line;
}

}  // namespace
}  // namespace sluice::daemon
