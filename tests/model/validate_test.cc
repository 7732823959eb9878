#include "policyd/model/validate.h"

#include <gtest/gtest.h>

#include "policyd/model/label_selector.h"

namespace sluice::model {
namespace {

TEST(ValidateTest, PortNames) {
  for (const char* ok : {"http", "h2", "web-80", "a", "metrics-port123"}) {
    EXPECT_EQ(validatePortName(ok), "") << ok;
  }
  struct Bad {
    const char* name;
    const char* problem;
  };
  for (const Bad& b :
       {Bad{"", "1-15"}, Bad{"abcdefghijklmnop", "1-15"}, Bad{"80", "letter"},
        Bad{"HTTP", "lowercase"}, Bad{"-http", "begin or end"}, Bad{"http-", "begin or end"},
        Bad{"ht--tp", "consecutive"}, Bad{"ht_tp", "lowercase"}, Bad{"ht.tp", "lowercase"}}) {
    auto e = validatePortName(b.name);
    EXPECT_NE(e.find(b.problem), std::string::npos) << b.name << " -> " << e;
  }
}

TEST(ValidateTest, DnsLabelAndSubdomain) {
  EXPECT_EQ(validateDnsLabel("prod-1"), "");
  EXPECT_NE(validateDnsLabel("Prod"), "");
  EXPECT_NE(validateDnsLabel("a.b"), "");
  EXPECT_NE(validateDnsLabel("-a"), "");
  EXPECT_NE(validateDnsLabel(std::string(64, 'a')), "");
  EXPECT_EQ(validateDnsLabel(std::string(63, 'a')), "");
  EXPECT_EQ(validateDnsSubdomain("web-1.prod"), "");
  EXPECT_NE(validateDnsSubdomain("web..prod"), "");
  EXPECT_NE(validateDnsSubdomain("web.-prod"), "");
  EXPECT_NE(validateDnsSubdomain("Web"), "");
  EXPECT_NE(validateDnsSubdomain(""), "");
  EXPECT_NE(validateDnsSubdomain(std::string(254, 'a')), "");
}

TEST(ValidateTest, LabelSyntax) {
  EXPECT_EQ(validateLabelKey("app"), "");
  EXPECT_EQ(validateLabelKey("app.kubernetes.io/name"), "");
  EXPECT_EQ(validateLabelKey("kubernetes.io/metadata.name"), "");
  EXPECT_NE(validateLabelKey(""), "");
  EXPECT_NE(validateLabelKey("-app"), "");
  EXPECT_NE(validateLabelKey("Example.COM/app"), "");
  EXPECT_NE(validateLabelKey("example.com/"), "");
  EXPECT_NE(validateLabelKey("a b"), "");
  EXPECT_NE(validateLabelKey(std::string(64, 'a')), "");
  EXPECT_EQ(validateLabelValue(""), "");
  EXPECT_EQ(validateLabelValue("v1.2_3-x"), "");
  EXPECT_NE(validateLabelValue("a b"), "");
  EXPECT_NE(validateLabelValue("-x"), "");
  EXPECT_NE(validateLabelValue(std::string(64, 'a')), "");
}

}  // namespace
}  // namespace sluice::model
