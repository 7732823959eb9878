#include "common/result.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

Result<int> half(int x) {
  if (x % 2) return makeError("odd value " + std::to_string(x), 7);
  return x / 2;
}

Result<int> quarter(int x) {
  SLUICE_ASSIGN_OR_RETURN(int h, half(x));
  SLUICE_ASSIGN_OR_RETURN(int q, half(h));
  return q;
}

TEST(ResultTest, PropagatesErrorsWithCode) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "odd value 3");
  EXPECT_EQ(r.error().code, 7);
}

TEST(ResultTest, WrapAddsContext) {
  Error e = makeError("bad CIDR").wrap("ipam.ranges[0][0].subnet");
  EXPECT_EQ(e.message, "ipam.ranges[0][0].subnet: bad CIDR");
}

}  // namespace
}  // namespace sluice
