// The sluice.io/enforcement annotation (docs/audit.md): decoded from YAML and from JSON (whose
// fast path drops every other annotation), any value accepted, only "audit" audits.
#include <gtest/gtest.h>

#include <string>

#include "policyd/model/decode.h"

namespace sluice::model {
namespace {

std::string yamlPolicy(const std::string& annotations) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n"
         "  namespace: prod\n" +
         annotations + "spec:\n  podSelector: {}\n";
}

std::string jsonPolicy(const std::string& annotations) {
  return R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "p", "namespace": "prod", "annotations": )" +
         annotations + R"(, "managedFields": [{"manager": "x"}]},
             "spec": {"podSelector": {}}})";
}

const NetworkPolicy& only(const Decoded& d) {
  EXPECT_TRUE(d.errors.empty()) << (d.errors.empty() ? "" : d.errors.front().message);
  EXPECT_EQ(d.cluster.policies.size(), 1u);
  return d.cluster.policies.front();
}

TEST(EnforcementTest, AuditFromYamlAndJson) {
  auto y = decodeText(yamlPolicy("  annotations:\n    sluice.io/enforcement: audit\n"), "p.yaml");
  EXPECT_EQ(only(y).enforcement, Enforcement::Audit);
  EXPECT_TRUE(only(y).audited());
  EXPECT_EQ(only(y).enforcementText, "audit");
  auto j = decodeText(jsonPolicy(R"({"kubectl.kubernetes.io/last-applied-configuration": "{}",
                     "sluice.io/enforcement": "audit", "z": "y"})"),
                      "p.json");
  EXPECT_EQ(only(j).enforcement, Enforcement::Audit);
  // A List of them, as `kubectl get netpol -A -o json` prints (the streamed fast path).
  auto list = decodeText(R"({"apiVersion": "v1", "kind": "List", "items": [)" +
                             jsonPolicy(R"({"sluice.io/enforcement": "audit"})") + "]}",
                         "l.json");
  EXPECT_EQ(only(list).enforcement, Enforcement::Audit);
}

TEST(EnforcementTest, AbsentEnforceAndUnknownValuesAreEnforced) {
  for (const char* text : {"", "  annotations: {}\n", "  annotations: {other: audit}\n",
                           "  annotations: {sluice.io/enforcement: enforce}\n",
                           "  annotations: {sluice.io/enforcement: Audit}\n",
                           "  annotations: {sluice.io/enforcement: \"\"}\n"}) {
    auto d = decodeText(yamlPolicy(text), "p.yaml");
    SCOPED_TRACE(text);
    EXPECT_EQ(only(d).enforcement, Enforcement::Enforce);
  }
  // The value as written stays, for lint.
  auto d = decodeText(yamlPolicy("  annotations: {sluice.io/enforcement: Audit}\n"), "p.yaml");
  EXPECT_EQ(only(d).enforcementText, "Audit");
}

TEST(EnforcementTest, NonStringValuesAreRejectedNamingTheField) {
  // The API server only stores string annotation values.
  auto d = decodeText(yamlPolicy("  annotations:\n    sluice.io/enforcement: [audit]\n"), "p.yaml");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("metadata.annotations.sluice.io/enforcement: expected"),
            std::string::npos)
      << d.errors[0].message;
  auto m = decodeText(yamlPolicy("  annotations: [x]\n"), "p.yaml");
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_NE(m.errors[0].message.find("metadata.annotations: expected"), std::string::npos)
      << m.errors[0].message;
}

}  // namespace
}  // namespace sluice::model
