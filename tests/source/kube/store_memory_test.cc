// What the kube source keeps per Pod: its resourceVersion and a content hash, nothing of the
// object (the daemon's cluster store holds that, once) and nothing of the API's JSON. Measured with
// mallinfo2 over N pods shaped like a Deployment's (3 labels, one IP, one named port).
#include <gtest/gtest.h>
#include <malloc.h>

#include "policyd/source/kube/store.h"
#include "tests/source/kube/fake_apiserver.h"

namespace sluice::source::kube {
namespace {

TEST(KindStoreMemoryTest, APodCostsUnderAQuarterKilobyte) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "allocator sizes are not meaningful under AddressSanitizer";
#endif
  constexpr int kPods = 20000;
  KindStore store;
  size_t before = mallinfo2().uordblks;
  for (int i = 0; i < kPods; ++i) {
    auto j = testing::podJson("ns-" + std::to_string(i % 500), "web-7d9f8c6b5-" + std::to_string(i),
                              {{"app", "web-" + std::to_string(i % 50)},
                               {"pod-template-hash", "7d9f8c6b5"},
                               {"tier", "frontend"}},
                              "10." + std::to_string(i / 65536 % 256) + "." +
                                  std::to_string(i / 256 % 256) + "." + std::to_string(i % 256));
    j["metadata"]["resourceVersion"] = std::to_string(1000 + i);
    auto o = decodeObject(Kind::Pod, j);
    ASSERT_TRUE(o.ok());
    ASSERT_TRUE(store.upsert(std::move(*o)));
  }
  size_t after = mallinfo2().uordblks;
  double perPod = static_cast<double>(after - before) / kPods;
  RecordProperty("bytes_per_pod", static_cast<int>(perPod));
  std::printf("kube store: %d pods, %.0f bytes per pod (%.1f MB per 100,000 pods)\n", kPods, perPod,
              perPod * 100000 / 1e6);
  EXPECT_EQ(store.entries().size(), static_cast<size_t>(kPods));
  EXPECT_LT(perPod, 256);
}

}  // namespace
}  // namespace sluice::source::kube
