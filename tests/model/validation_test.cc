// Every validation the decoder performs, one table row each: the error must name the file, the
// object and the field.
#include <gtest/gtest.h>

#include "policyd/model/decode.h"
#include "tests/model/test_util.h"

namespace sluice::model {
namespace {

using testing::joinErrors;
using testing::policyYaml;

struct ErrorCase {
  const char* name;
  const char* spec;   // spec body, indented by two spaces
  const char* error;  // expected to appear after "policies.yaml: NetworkPolicy prod/allow-web: "
};

class PolicyValidationTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(PolicyValidationTest, RejectsWithFieldPath) {
  const ErrorCase& c = GetParam();
  Decoded d = decodeText(policyYaml(c.spec), "policies.yaml");
  EXPECT_TRUE(d.cluster.policies.empty()) << "an invalid policy must be rejected whole";
  ASSERT_EQ(d.errors.size(), 1u) << joinErrors(d);
  const std::string prefix = "policies.yaml: NetworkPolicy prod/allow-web: ";
  const std::string& msg = d.errors[0].message;
  ASSERT_EQ(msg.substr(0, prefix.size()), prefix) << msg;
  EXPECT_NE(msg.find(c.error, prefix.size()), std::string::npos)
      << "expected: " << c.error << "\n     got: " << msg;
}

// clang-format off
const ErrorCase kErrorCases[] = {
  // Selectors.
  {"InWithoutValues", "  podSelector: {matchExpressions: [{key: app, operator: In, values: []}]}\n",
   "spec.podSelector.matchExpressions[0].values: must be non-empty when operator is In"},
  {"NotInValuesAbsent", "  podSelector: {matchExpressions: [{key: app, operator: NotIn}]}\n",
   "spec.podSelector.matchExpressions[0].values: must be non-empty when operator is NotIn"},
  {"ExistsWithValues", "  podSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}\n",
   "spec.podSelector.matchExpressions[0].values: must be empty when operator is Exists"},
  {"DoesNotExistWithValues",
   "  podSelector: {matchExpressions: [{key: app, operator: DoesNotExist, values: [a]}]}\n",
   "spec.podSelector.matchExpressions[0].values: must be empty when operator is DoesNotExist"},
  {"UnknownOperator", "  podSelector: {matchExpressions: [{key: app, operator: Equals, values: [a]}]}\n",
   "spec.podSelector.matchExpressions[0].operator: unsupported operator \"Equals\""},
  {"LowercaseOperator", "  podSelector: {matchExpressions: [{key: app, operator: in, values: [a]}]}\n",
   "spec.podSelector.matchExpressions[0].operator: unsupported operator \"in\""},
  {"ExpressionKeyMissing", "  podSelector: {matchExpressions: [{operator: Exists}]}\n",
   "spec.podSelector.matchExpressions[0].key: required"},
  {"ExpressionKeyInvalid", "  podSelector: {matchExpressions: [{key: \"a b\", operator: Exists}]}\n",
   "spec.podSelector.matchExpressions[0].key: invalid label key \"a b\""},
  {"ExpressionValueInvalid",
   "  podSelector: {matchExpressions: [{key: app, operator: In, values: [ok, \"not ok\"]}]}\n",
   "spec.podSelector.matchExpressions[0].values[1]: invalid label value \"not ok\""},
  {"MatchLabelsKeyInvalid", "  podSelector: {matchLabels: {\"-app\": web}}\n",
   "spec.podSelector.matchLabels: invalid label key \"-app\""},
  {"MatchLabelsKeyBadPrefix", "  podSelector: {matchLabels: {\"Example.com/app\": web}}\n",
   "spec.podSelector.matchLabels: invalid label key \"Example.com/app\""},
  {"MatchLabelsValueInvalid", "  podSelector: {matchLabels: {app: \"web server\"}}\n",
   "spec.podSelector.matchLabels: invalid value \"web server\" for label \"app\""},
  {"MatchLabelsValueTooLong",
   "  podSelector: {matchLabels: {app: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}\n",
   "no more than 63 characters"},
  {"NamespaceSelectorInvalid",
   "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: team, operator: In}]}}]}]\n",
   "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must be non-empty"},
  // ipBlock.
  {"CidrNoLength", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0}}]}]\n",
   "spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR \"10.0.0.0\""},
  {"CidrGarbage", "  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: banana}}]}]\n",
   "spec.egress[0].to[0].ipBlock.cidr: invalid CIDR \"banana\""},
  {"CidrBadLength", "  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]\n",
   "spec.egress[0].to[0].ipBlock.cidr: invalid CIDR \"10.0.0.0/33\""},
  {"CidrMissing", "  podSelector: {}\n  egress: [{to: [{ipBlock: {except: [10.0.0.0/8]}}]}]\n",
   "spec.egress[0].to[0].ipBlock.cidr: required"},
  {"ExceptOutsideCidr",
   "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n    - ipBlock: {cidr: 10.2.0.0/16, except: [10.1.0.0/16]}\n",
   "spec.ingress[0].from[1].ipBlock.except[0]: \"10.1.0.0/16\" is not inside cidr \"10.2.0.0/16\""},
  // Host bits are allowed (the block is the network), so an except that masks to the cidr
  // is still equal to it.
  {"ExceptEqualsCidrAfterMasking",
   "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.2.3/8]}}]}]\n",
   "spec.ingress[0].from[0].ipBlock.except[0]: \"10.1.2.3/8\" must be strictly inside cidr \"10.0.0.0/8\""},
  {"ExceptEqualsCidr", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]\n",
   "spec.ingress[0].from[0].ipBlock.except[0]: \"10.0.0.0/8\" must be strictly inside cidr \"10.0.0.0/8\""},
  {"ExceptWiderThanCidr", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.1.0.0/16, except: [10.0.0.0/8]}}]}]\n",
   "spec.ingress[0].from[0].ipBlock.except[0]: \"10.0.0.0/8\" is not inside cidr \"10.1.0.0/16\""},
  {"ExceptOtherFamily",
   "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [\"fd00::/64\"]}}]}]\n",
   "spec.ingress[0].from[0].ipBlock.except[0]: \"fd00::/64\" is not inside cidr \"10.0.0.0/8\" (different address family)"},
  {"ExceptV6Outside",
   "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: \"fd00::/64\", except: [\"fd00:0:0:1::/80\"]}}]}]\n",
   "spec.ingress[0].from[0].ipBlock.except[0]: \"fd00:0:0:1::/80\" is not inside cidr \"fd00::/64\""},
  // Peers.
  {"EmptyPeer", "  podSelector: {}\n  egress: [{to: [{}]}]\n",
   "spec.egress[0].to[0]: a peer must set podSelector, namespaceSelector or ipBlock"},
  {"NullSelectorsOnlyIsEmptyPeer", "  podSelector: {}\n  egress: [{to: [{podSelector: null}]}]\n",
   "spec.egress[0].to[0]: a peer must set podSelector"},
  {"IpBlockWithPodSelector",
   "  podSelector: {}\n  ingress: [{from: [{podSelector: {}, ipBlock: {cidr: 10.0.0.0/8}}]}]\n",
   "spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector"},
  {"IpBlockWithNamespaceSelector",
   "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}, ipBlock: {cidr: 10.0.0.0/8}}]}]\n",
   "spec.ingress[0].from[0]: ipBlock cannot be combined"},
  // Ports.
  {"PortZero", "  podSelector: {}\n  ingress: [{ports: [{port: 0}]}]\n",
   "spec.ingress[0].ports[0].port: 0 is not a valid port number (must be 1-65535)"},
  {"PortTooLarge", "  podSelector: {}\n  ingress: [{ports: [{port: 65536}]}]\n",
   "spec.ingress[0].ports[0].port: 65536 is not a valid port number"},
  {"PortNegative", "  podSelector: {}\n  ingress: [{ports: [{port: -1}]}]\n",
   "spec.ingress[0].ports[0].port: -1 is not a valid port number"},
  {"EndPortBelowPort", "  podSelector: {}\n  ingress: [{ports: [{port: 8080, endPort: 80}]}]\n",
   "spec.ingress[0].ports[0].endPort: endPort 80 must be greater than or equal to port 8080"},
  {"EndPortWithNamedPort", "  podSelector: {}\n  ingress: [{ports: [{port: http, endPort: 90}]}]\n",
   "spec.ingress[0].ports[0].endPort: endPort cannot be used with a named port (\"http\")"},
  {"EndPortWithoutPort", "  podSelector: {}\n  egress: [{ports: [{endPort: 90}]}]\n",
   "spec.egress[0].ports[0].endPort: endPort requires port to be set"},
  {"EndPortTooLarge", "  podSelector: {}\n  egress: [{ports: [{port: 80, endPort: 70000}]}]\n",
   "spec.egress[0].ports[0].endPort: 70000 is not a valid port number"},
  {"NamedPortUppercase", "  podSelector: {}\n  ingress: [{ports: [{port: HTTP}]}]\n",
   "spec.ingress[0].ports[0].port: \"HTTP\" is not a valid port name"},
  {"NamedPortTooLong", "  podSelector: {}\n  ingress: [{ports: [{port: abcdefghijklmnop}]}]\n",
   "spec.ingress[0].ports[0].port: \"abcdefghijklmnop\" is not a valid port name: must be 1-15"},
  {"NamedPortDoubleDash", "  podSelector: {}\n  ingress: [{ports: [{port: web--x}]}]\n",
   "spec.ingress[0].ports[0].port: \"web--x\" is not a valid port name: must not contain consecutive '-'"},
  {"NamedPortLeadingDash", "  podSelector: {}\n  ingress: [{ports: [{port: \"-web\"}]}]\n",
   "spec.ingress[0].ports[0].port: \"-web\" is not a valid port name"},
  {"QuotedNumericPort", "  podSelector: {}\n  ingress: [{ports: [{port: \"80\"}]}]\n",
   "spec.ingress[0].ports[0].port: \"80\" is not a valid port name: must contain at least one letter "
   "(IANA_SVC_NAME); for a numeric port write the number without quotes"},
  {"ProtocolLowercase", "  podSelector: {}\n  ingress: [{ports: [{protocol: tcp, port: 80}]}]\n",
   "spec.ingress[0].ports[0].protocol: unsupported protocol \"tcp\": must be TCP, UDP or SCTP"},
  {"ProtocolIcmp", "  podSelector: {}\n  ingress: [{ports: [{protocol: ICMP}]}]\n",
   "spec.ingress[0].ports[0].protocol: unsupported protocol \"ICMP\""},
  // policyTypes.
  {"PolicyTypeUnknown", "  podSelector: {}\n  policyTypes: [Ingress, Both]\n",
   "spec.policyTypes[1]: unsupported policy type \"Both\": must be Ingress or Egress"},
  {"PolicyTypeLowercase", "  podSelector: {}\n  policyTypes: [ingress]\n",
   "spec.policyTypes[0]: unsupported policy type \"ingress\""},
  {"TooManyPolicyTypes", "  podSelector: {}\n  policyTypes: [Ingress, Egress, Ingress]\n",
   "spec.policyTypes: may not list more than two policyTypes"},
  // Wrong types and unknown fields.
  {"PortAsList", "  podSelector: {}\n  ingress: [{ports: [{port: [80]}]}]\n",
   "spec.ingress[0].ports[0].port: expected a port number or name, got a list"},
  {"PortAsFloat", "  podSelector: {}\n  ingress: [{ports: [{port: 80.5}]}]\n",
   "spec.ingress[0].ports[0].port: expected a port number or name, got a number"},
  {"EndPortAsString", "  podSelector: {}\n  ingress: [{ports: [{port: 80, endPort: \"90\"}]}]\n",
   "spec.ingress[0].ports[0].endPort: expected an integer, got a string"},
  {"IngressAsMap", "  podSelector: {}\n  ingress: {from: []}\n",
   "spec.ingress: expected a list, got a map"},
  {"FromAsMap", "  podSelector: {}\n  ingress: [{from: {podSelector: {}}}]\n",
   "spec.ingress[0].from: expected a list, got a map"},
  {"PodSelectorAsString", "  podSelector: app=web\n", "spec.podSelector: expected a map, got a string"},
  {"PodSelectorAsList", "  podSelector: [app]\n", "spec.podSelector: expected a map, got a list"},
  {"MatchLabelsAsList", "  podSelector: {matchLabels: [app]}\n",
   "spec.podSelector.matchLabels: expected a map, got a list"},
  {"LabelValueInteger", "  podSelector: {matchLabels: {version: 1}}\n",
   "spec.podSelector.matchLabels: value of label \"version\": expected a string, got an integer "
   "(quote it: \"1\")"},
  {"LabelValueYamlBoolean", "  podSelector: {matchLabels: {enabled: yes}}\n",
   "value of label \"enabled\": expected a string, got a boolean (quote it: \"yes\")"},
  {"ExpressionValuesAsString",
   "  podSelector: {matchExpressions: [{key: app, operator: In, values: web}]}\n",
   "spec.podSelector.matchExpressions[0].values: expected a list, got a string"},
  {"ExceptAsString", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: 10.1.0.0/16}}]}]\n",
   "spec.ingress[0].from[0].ipBlock.except: expected a list, got a string"},
  {"CidrAsInteger", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10}}]}]\n",
   "spec.ingress[0].from[0].ipBlock.cidr: expected a string, got an integer"},
  {"PolicyTypesAsString", "  podSelector: {}\n  policyTypes: Ingress\n",
   "spec.policyTypes: expected a list, got a string"},
  {"SpecAsList", "  - podSelector: {}\n", "spec: expected a map, got a list"},
  {"UnknownRuleField", "  podSelector: {}\n  ingress: [{form: [{podSelector: {}}]}]\n",
   "spec.ingress[0]: unknown field \"form\""},
  {"ToInIngressRule", "  podSelector: {}\n  ingress: [{to: [{podSelector: {}}]}]\n",
   "spec.ingress[0]: unknown field \"to\""},
  {"UnknownSpecField", "  podSelecter: {matchLabels: {app: web}}\n", "spec: unknown field \"podSelecter\""},
  {"UnknownPeerField", "  podSelector: {}\n  ingress: [{from: [{podSelector: {}, nameSpaceSelector: {}}]}]\n",
   "spec.ingress[0].from[0]: unknown field \"nameSpaceSelector\""},
  {"UnknownSelectorField", "  podSelector: {matchLabel: {app: web}}\n",
   "spec.podSelector: unknown field \"matchLabel\""},
};
// clang-format on

INSTANTIATE_TEST_SUITE_P(Cases, PolicyValidationTest, ::testing::ValuesIn(kErrorCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(PolicyValidationTest, ReportsSeveralProblemsInOneError) {
  Decoded d = decodeText(policyYaml("  podSelector: {}\n"
                                    "  ingress: [{ports: [{port: 0}, {protocol: ICMP}]}]\n"),
                         "policies.yaml");
  ASSERT_EQ(d.errors.size(), 1u) << joinErrors(d);
  EXPECT_NE(d.errors[0].message.find("ports[0].port"), std::string::npos);
  EXPECT_NE(d.errors[0].message.find("ports[1].protocol"), std::string::npos);
}

struct MetaCase {
  const char* name;
  const char* yaml;
  const char* error;  // the whole expected message
};

class MetadataValidationTest : public ::testing::TestWithParam<MetaCase> {};

TEST_P(MetadataValidationTest, RejectsWithObjectAndField) {
  const MetaCase& c = GetParam();
  Decoded d = decodeText(c.yaml, "objs.yaml");
  EXPECT_TRUE(d.cluster.pods.empty() && d.cluster.policies.empty() && d.cluster.namespaces.empty());
  ASSERT_EQ(d.errors.size(), 1u) << joinErrors(d);
  EXPECT_EQ(d.errors[0].message.substr(0, std::string(c.error).size()), c.error)
      << d.errors[0].message;
}

// clang-format off
const MetaCase kMetaCases[] = {
  {"PolicyNameMissing", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: prod}\nspec: {podSelector: {}}\n",
   "objs.yaml: NetworkPolicy (object 1): metadata.name: required"},
  {"MetadataMissing", "apiVersion: v1\nkind: Pod\n",
   "objs.yaml: Pod (object 1): metadata: required"},
  {"PolicyNameInvalid", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: Allow_Web, namespace: prod}\nspec: {podSelector: {}}\n",
   "objs.yaml: NetworkPolicy prod/Allow_Web: metadata.name: invalid name \"Allow_Web\""},
  {"NamespaceInvalid", "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: Prod}\n",
   "objs.yaml: Pod Prod/web: metadata.namespace: invalid namespace \"Prod\""},
  {"NamespaceNameWithDot", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n",
   "objs.yaml: Namespace a.b: metadata.name: invalid name \"a.b\""},
  {"NameAsInteger", "apiVersion: v1\nkind: Pod\nmetadata: {name: 123}\n",
   "objs.yaml: Pod (object 1): metadata.name: expected a string, got an integer (quote it: \"123\")"},
  // go-yaml (kubectl) reads unquoted yes/no/on/off/y/n as booleans: the Norway problem.
  {"NameYamlBoolean", "apiVersion: v1\nkind: Namespace\nmetadata: {name: no}\n",
   "objs.yaml: Namespace (object 1): metadata.name: expected a string, got a boolean (quote it: \"no\")"},
  {"PodLabelInvalid", "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {\"app/x/y\": a}}\n",
   "objs.yaml: Pod default/web: metadata.labels: invalid label key \"app/x/y\""},
  {"PodLabelsAsList", "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: [a]}\n",
   "objs.yaml: Pod default/web: metadata.labels: expected a map, got a list"},
  {"PodIpInvalid", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nstatus: {podIPs: [{ip: 10.0.0.300}]}\n",
   "objs.yaml: Pod default/web: status.podIPs[0].ip: invalid IP address \"10.0.0.300\""},
  {"PodIpFallbackInvalid", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nstatus: {podIP: nope}\n",
   "objs.yaml: Pod default/web: status.podIP: invalid IP address \"nope\""},
  {"ContainerPortInvalid", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: a, ports: [{containerPort: 0}]}]}\n",
   "objs.yaml: Pod default/web: spec.containers[0].ports[0].containerPort: 0 is not a valid port number"},
  {"ContainerPortNameInvalid", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: a, ports: [{containerPort: 80, name: Web_Port}]}]}\n",
   "objs.yaml: Pod default/web: spec.containers[0].ports[0].name: \"Web_Port\" is not a valid port name"},
  {"ContainerPortProtocolInvalid", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: a, ports: [{containerPort: 80, protocol: udp}]}]}\n",
   "objs.yaml: Pod default/web: spec.containers[0].ports[0].protocol: unsupported protocol \"udp\""},
  {"ContainerPortMissing", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: a, ports: [{name: http}]}]}\n",
   "objs.yaml: Pod default/web: spec.containers[0].ports[0].containerPort: required"},
  {"HostNetworkAsString", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {hostNetwork: \"true\"}\n",
   "objs.yaml: Pod default/web: spec.hostNetwork: expected a boolean, got a string"},
  {"ApiVersionMissing", "kind: Pod\nmetadata: {name: web}\n",
   "objs.yaml: Pod web: apiVersion: required (v1)"},
  {"KindMissing", "apiVersion: v1\nmetadata: {name: web}\n", "objs.yaml: object 1: kind: required"},
  {"KindNotString", "apiVersion: v1\nkind: [Pod]\n", "objs.yaml: object 1: kind: expected a string, got a list"},
  {"DocumentNotMap", "just a string\n", "objs.yaml: object 1: expected a Kubernetes object (a map), got a string"},
  {"ListItemsNotList", "apiVersion: v1\nkind: List\nitems: {a: b}\n", "objs.yaml: List: items: expected a list, got a map"},
};
// clang-format on

INSTANTIATE_TEST_SUITE_P(Cases, MetadataValidationTest, ::testing::ValuesIn(kMetaCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sluice::model
