// Decoding a large `kubectl get pods -A -o json` dump must stay fast: sluicectl and the daemon
// load whole-cluster snapshots. The time bound is only checked in optimised builds without
// sanitizers, and on CPU time, so a busy machine does not make it flaky.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <string>

#include "policyd/model/decode.h"
#include "tests/model/test_util.h"

namespace sluice::model {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

#ifdef NDEBUG
constexpr bool kOptimised = true;
#else
constexpr bool kOptimised = false;
#endif

// About 1.2 KB per pod, shaped like kubectl output (metadata, containers, status) but without
// managedFields.
std::string podListJson(int n) {
  std::string out = R"({"apiVersion":"v1","items":[)";
  out.reserve(static_cast<size_t>(n) * 1200);
  for (int i = 0; i < n; ++i) {
    std::string idx = std::to_string(i);
    std::string v4 = "10." + std::to_string((i >> 16) & 255) + "." +
                     std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
    char v6[40];
    std::snprintf(v6, sizeof v6, "fd00::%x:%x", (i >> 16) & 0xffff, i & 0xffff);
    if (i) out += ',';
    out +=
        R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-)" + idx +
        R"(","namespace":"ns)" + std::to_string(i % 50) +
        R"(","uid":"0b1c2d3e-4a5b-8c9d-0e1f2a3b4c5d","resourceVersion":")" + idx +
        R"(","creationTimestamp":"2024-05-01T10:00:00Z","labels":{"app":"app)" +
        std::to_string(i % 100) +
        R"(","tier":"web","pod-template-hash":"7d4b9c8f6"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2024-05-01T10:00:00Z"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d4b9c8f6","uid":"x","controller":true}]},"spec":{"nodeName":"node-)" +
        std::to_string(i % 500) +
        R"(","restartPolicy":"Always","serviceAccountName":"default","containers":[{"name":"app","image":"registry.example.com/app:1.2.3","ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"metrics","containerPort":9090,"protocol":"TCP"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"memory":"256Mi"}},"env":[{"name":"MODE","value":"prod"}]}]},"status":{"phase":"Running","hostIP":"192.168.0.1","podIP":")" +
        v4 + R"(","podIPs":[{"ip":")" + v4 + R"("},{"ip":")" + v6 +
        R"("}],"conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2024-05-01T10:00:05Z"}]}})";
  }
  out += R"(],"kind":"List","metadata":{"resourceVersion":""}})";
  return out;
}

TEST(DecodeSpeedTest, HundredThousandPodJsonDump) {
  const int n = kOptimised && !kSanitized ? 100000 : 5000;
  std::string text = podListJson(n);
  std::clock_t c0 = std::clock();
  auto w0 = std::chrono::steady_clock::now();
  Decoded d = decodeText(text, "pods.json");
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  ASSERT_TRUE(d.errors.empty()) << d.errors.front().message;
  ASSERT_EQ(d.cluster.pods.size(), static_cast<size_t>(n));
  EXPECT_EQ(d.cluster.pods.back().ips.size(), 2u);
  EXPECT_EQ(d.cluster.pods.back().ports.size(), 2u);
  RecordProperty("pods", n);
  RecordProperty("megabytes", std::to_string(text.size() / 1e6));
  RecordProperty("cpu_seconds", std::to_string(cpu));
  std::printf("decoded %d pods (%.1f MB) in %.3f s wall, %.3f s CPU\n", n, text.size() / 1e6, wall,
              cpu);
  if (kOptimised && !kSanitized) {
    // The target is well under 2 s; the bound leaves room for slow CI machines.
    EXPECT_LT(cpu, 4.0);
  }
}

}  // namespace
}  // namespace sluice::model
