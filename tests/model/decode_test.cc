#include "policyd/model/decode.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "tests/model/test_util.h"

namespace sluice::model {
namespace {

using testing::describe;
using testing::joinErrors;
using testing::policyYaml;

// By value: callers pass the temporary result of decodeText().
NetworkPolicy onlyPolicy(const Decoded& d) {
  EXPECT_TRUE(d.errors.empty()) << joinErrors(d);
  EXPECT_EQ(d.cluster.policies.size(), 1u);
  return d.cluster.policies.empty() ? NetworkPolicy() : d.cluster.policies.front();
}

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

// ---- defaults ----

TEST(DecodeDefaultsTest, PolicyTypesDefaultToIngressOnly) {
  Decoded d = decodeText(policyYaml("  podSelector: {}\n  ingress: [{}]\n"), "p.yaml");
  const auto& p = onlyPolicy(d);
  EXPECT_TRUE(p.affectsIngress);
  EXPECT_FALSE(p.affectsEgress);
}

TEST(DecodeDefaultsTest, PolicyTypesIncludeEgressWhenEgressHasRules) {
  const auto& p =
      onlyPolicy(decodeText(policyYaml("  podSelector: {}\n  egress: [{}]\n"), "p.yaml"));
  EXPECT_TRUE(p.affectsIngress);
  EXPECT_TRUE(p.affectsEgress);
}

TEST(DecodeDefaultsTest, EmptyEgressListDoesNotAddEgress) {
  const auto& p = onlyPolicy(decodeText(policyYaml("  podSelector: {}\n  egress: []\n"), "p.yaml"));
  EXPECT_TRUE(p.affectsIngress);
  EXPECT_FALSE(p.affectsEgress);
}

TEST(DecodeDefaultsTest, EmptyPolicyTypesListIsDefaulted) {
  const auto& p = onlyPolicy(
      decodeText(policyYaml("  podSelector: {}\n  policyTypes: []\n  egress: [{}]\n"), "p.yaml"));
  EXPECT_TRUE(p.affectsIngress);
  EXPECT_TRUE(p.affectsEgress);
}

TEST(DecodeDefaultsTest, ExplicitPolicyTypesWin) {
  Decoded d = decodeText(
      policyYaml("  podSelector: {}\n  policyTypes: [Egress]\n  ingress: [{}]\n"), "p.yaml");
  const auto& p = onlyPolicy(d);
  EXPECT_FALSE(p.affectsIngress);
  EXPECT_TRUE(p.affectsEgress);
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_NE(d.notes[0].find("spec.ingress is ignored"), std::string::npos) << d.notes[0];
}

TEST(DecodeDefaultsTest, ProtocolDefaultsToTcp) {
  const auto& p = onlyPolicy(decodeText(
      policyYaml("  podSelector: {}\n  ingress: [{ports: [{port: 80}, {}]}]\n"), "p.yaml"));
  ASSERT_EQ(p.ingress.size(), 1u);
  ASSERT_EQ(p.ingress[0].ports.size(), 2u);
  EXPECT_EQ(p.ingress[0].ports[0].protocol, Protocol::TCP);
  EXPECT_EQ(std::get<uint16_t>(p.ingress[0].ports[0].port), 80);
  EXPECT_EQ(p.ingress[0].ports[1].protocol, Protocol::TCP);
  EXPECT_FALSE(p.ingress[0].ports[1].hasPort());
}

TEST(DecodeDefaultsTest, NamespaceDefaultsToDefault) {
  Decoded d = decodeText(
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\n"
      "spec: {podSelector: {}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web}\n",
      "p.yaml");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  EXPECT_EQ(d.cluster.policies.at(0).namespace_, "default");
  EXPECT_EQ(d.cluster.pods.at(0).namespace_, "default");
}

TEST(DecodeDefaultsTest, NamespaceGetsMetadataNameLabel) {
  Decoded d = decodeText(
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels:\n    env: prod\n"
      "    kubernetes.io/metadata.name: wrong\n",
      "ns.yaml");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  ASSERT_EQ(d.cluster.namespaces.size(), 1u);
  const auto& labels = d.cluster.namespaces[0].labels;
  EXPECT_EQ(labels.at("kubernetes.io/metadata.name"), "prod");
  EXPECT_EQ(labels.at("env"), "prod");
  EXPECT_EQ(labels.size(), 2u);
}

TEST(DecodeDefaultsTest, PodFields) {
  Decoded d = decodeText(R"(apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: prod
  labels: {app: web, tier: ""}
spec:
  nodeName: node-a
  initContainers:
  - name: init
    ports: [{containerPort: 1111, name: ignored}]
  - name: sidecar
    restartPolicy: Always
    ports: [{containerPort: 9090, name: metrics}]
  containers:
  - name: app
    image: app:1
    ports:
    - {containerPort: 8080, name: http}
    - {containerPort: 53, name: dns, protocol: UDP}
    - containerPort: 7000
status:
  podIP: 10.0.0.9
  podIPs: [{ip: 10.0.0.7}, {ip: "fd00::7"}]
)",
                         "pod.yaml");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  ASSERT_EQ(d.cluster.pods.size(), 1u);
  const Pod& p = d.cluster.pods[0];
  EXPECT_EQ(p.key(), "prod/web-1");
  EXPECT_EQ(p.nodeName, "node-a");
  EXPECT_FALSE(p.hostNetwork);
  EXPECT_EQ(p.labels.at("tier"), "");
  ASSERT_EQ(p.ips.size(), 2u);  // podIPs wins over podIP
  EXPECT_EQ(p.ips[0], ip("10.0.0.7"));
  EXPECT_EQ(p.ips[1], ip("fd00::7"));
  ASSERT_EQ(p.ports.size(), 4u);
  EXPECT_EQ(p.ports[0].name, "http");
  EXPECT_EQ(p.ports[0].port, 8080);
  EXPECT_EQ(p.ports[0].protocol, Protocol::TCP);
  EXPECT_EQ(p.ports[1].protocol, Protocol::UDP);
  EXPECT_EQ(p.ports[2].name, "");
  EXPECT_EQ(p.ports[3].name, "metrics");  // the restartPolicy: Always sidecar
  EXPECT_EQ(p.origin.file, "pod.yaml");
}

TEST(DecodeDefaultsTest, PodIpFallsBackToPodIp) {
  Decoded d = decodeText(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {hostNetwork: true}\n"
      "status: {podIP: 192.168.1.5}\n",
      "pod.yaml");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  const Pod& p = d.cluster.pods.at(0);
  EXPECT_TRUE(p.hostNetwork);
  ASSERT_EQ(p.ips.size(), 1u);
  EXPECT_EQ(p.ips[0], ip("192.168.1.5"));
}

// ---- rule and peer shapes ----

TEST(DecodeRulesTest, AbsentAndEmptyIngressMeanNoRules) {
  EXPECT_TRUE(onlyPolicy(decodeText(policyYaml("  podSelector: {}\n"), "p.yaml")).ingress.empty());
  EXPECT_TRUE(onlyPolicy(decodeText(policyYaml("  podSelector: {}\n  ingress: []\n"), "p.yaml"))
                  .ingress.empty());
  EXPECT_TRUE(onlyPolicy(decodeText(policyYaml("  podSelector: {}\n  ingress: null\n"), "p.yaml"))
                  .ingress.empty());
}

TEST(DecodeRulesTest, EmptyRuleAllowsAll) {
  const auto& p =
      onlyPolicy(decodeText(policyYaml("  podSelector: {}\n  ingress: [{}]\n"), "p.yaml"));
  ASSERT_EQ(p.ingress.size(), 1u);
  EXPECT_TRUE(p.ingress[0].peers.empty());
  EXPECT_TRUE(p.ingress[0].ports.empty());
}

TEST(DecodeRulesTest, EmptyFromMeansAllPeers) {
  const auto& p = onlyPolicy(decodeText(
      policyYaml("  podSelector: {}\n  ingress: [{from: [], ports: [{port: 80}]}]\n"), "p.yaml"));
  ASSERT_EQ(p.ingress.size(), 1u);
  EXPECT_TRUE(p.ingress[0].peers.empty());
  EXPECT_EQ(p.ingress[0].ports.size(), 1u);
}

TEST(DecodeRulesTest, NullRuleIsAcceptedAsEmptyRuleWithANote) {
  // `ingress:\n  -\n` is [null]; the API server turns it into {} (allow all).
  Decoded d = decodeText(policyYaml("  podSelector: {}\n  ingress:\n  -\n"), "p.yaml");
  const auto& p = onlyPolicy(d);
  ASSERT_EQ(p.ingress.size(), 1u);
  EXPECT_TRUE(p.ingress[0].peers.empty());
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_NE(d.notes[0].find("spec.ingress[0]: empty list element treated as {}"), std::string::npos)
      << d.notes[0];
}

TEST(DecodeRulesTest, PeerShapes) {
  const auto& p = onlyPolicy(decodeText(policyYaml(R"(  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    - namespaceSelector: {matchLabels: {team: a}}
    - podSelector: {}
      namespaceSelector: {}
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16, 10.2.0.0/16]
    - ipBlock: {cidr: "fd00::/48", except: ["fd00:0:0:1::/64"]}
)"),
                                        "p.yaml"));
  ASSERT_EQ(p.ingress.size(), 1u);
  const auto& peers = p.ingress[0].peers;
  ASSERT_EQ(peers.size(), 5u);
  EXPECT_TRUE(peers[0].podSelector && !peers[0].namespaceSelector && !peers[0].ipBlock);
  EXPECT_EQ(peers[0].podSelector->matchLabels.at("app"), "web");
  EXPECT_TRUE(!peers[1].podSelector && peers[1].namespaceSelector && !peers[1].ipBlock);
  EXPECT_TRUE(peers[2].podSelector && peers[2].namespaceSelector);
  EXPECT_TRUE(peers[2].podSelector->empty() && peers[2].namespaceSelector->empty());
  ASSERT_TRUE(peers[3].ipBlock);
  EXPECT_EQ(peers[3].ipBlock->cidr.toString(), "10.0.0.0/8");
  ASSERT_EQ(peers[3].ipBlock->except.size(), 2u);
  EXPECT_TRUE(peers[3].ipBlock->contains(ip("10.3.0.1")));
  EXPECT_FALSE(peers[3].ipBlock->contains(ip("10.2.0.1")));
  ASSERT_TRUE(peers[4].ipBlock);
  EXPECT_EQ(peers[4].ipBlock->cidr.family(), Family::V6);
  EXPECT_TRUE(peers[4].ipBlock->contains(ip("fd00::5")));
  EXPECT_FALSE(peers[4].ipBlock->contains(ip("fd00:0:0:1::5")));
}

TEST(DecodeRulesTest, PortShapes) {
  const auto& p = onlyPolicy(decodeText(policyYaml(R"(  podSelector: {}
  egress:
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports:
    - {protocol: UDP, port: 53}
    - {port: 32000, endPort: 32768}
    - {port: 80, endPort: 80}
    - {protocol: SCTP, port: web-api}
    - {protocol: UDP}
)"),
                                        "p.yaml"));
  ASSERT_EQ(p.egress.size(), 1u);
  const auto& ports = p.egress[0].ports;
  ASSERT_EQ(ports.size(), 5u);
  EXPECT_EQ(ports[0].protocol, Protocol::UDP);
  EXPECT_EQ(std::get<uint16_t>(ports[0].port), 53);
  EXPECT_FALSE(ports[0].endPort);
  EXPECT_EQ(std::get<uint16_t>(ports[1].port), 32000);
  EXPECT_EQ(ports[1].endPort, 32768);
  EXPECT_EQ(ports[2].endPort, 80);
  EXPECT_TRUE(ports[3].isNamed());
  EXPECT_EQ(std::get<std::string>(ports[3].port), "web-api");
  EXPECT_EQ(ports[3].protocol, Protocol::SCTP);
  EXPECT_FALSE(ports[4].hasPort());
  EXPECT_TRUE(p.affectsEgress);
}

// ---- selectors ----

TEST(DecodeSelectorTest, EmptyVersusAbsentSelectors) {
  // Absent spec.podSelector decodes as {} (select all), with a note; a peer's absent
  // podSelector stays absent (the peer is namespace-only).
  Decoded d = decodeText(policyYaml("  ingress: [{from: [{namespaceSelector: {}}]}]\n"), "p.yaml");
  const auto& p = onlyPolicy(d);
  EXPECT_TRUE(p.podSelector.empty());
  EXPECT_TRUE(p.podSelector.matches({}));
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_NE(d.notes[0].find("spec.podSelector absent"), std::string::npos);
  const Peer& peer = p.ingress.at(0).peers.at(0);
  EXPECT_FALSE(peer.podSelector.has_value());
  ASSERT_TRUE(peer.namespaceSelector.has_value());
  EXPECT_TRUE(peer.namespaceSelector->empty());
}

TEST(DecodeSelectorTest, ExpressionsMatchLikeTheApiServer) {
  const auto& p = onlyPolicy(decodeText(policyYaml(R"(  podSelector:
    matchLabels: {app: web}
    matchExpressions:
    - {key: tier, operator: NotIn, values: [debug, canary, debug]}
    - {key: owner, operator: Exists}
    - {key: legacy, operator: DoesNotExist}
    - {key: env, operator: In, values: [prod, staging]}
)"),
                                        "p.yaml"));
  const LabelSelector& s = p.podSelector;
  ASSERT_EQ(s.matchExpressions.size(), 4u);
  EXPECT_EQ(s.matchExpressions[0].values, (std::vector<std::string>{"canary", "debug"}));  // sorted
  Labels base{{"app", "web"}, {"owner", "x"}, {"env", "prod"}};
  EXPECT_TRUE(s.matches(base)) << "NotIn on a missing key matches";
  Labels l = base;
  l["tier"] = "debug";
  EXPECT_FALSE(s.matches(l));
  l["tier"] = "frontend";
  EXPECT_TRUE(s.matches(l));
  l = base;
  l.erase("owner");
  EXPECT_FALSE(s.matches(l)) << "Exists needs the key";
  l = base;
  l["owner"] = "";
  EXPECT_TRUE(s.matches(l)) << "Exists accepts an empty value";
  l = base;
  l["legacy"] = "";
  EXPECT_FALSE(s.matches(l)) << "DoesNotExist rejects the key even with an empty value";
  l = base;
  l.erase("env");
  EXPECT_FALSE(s.matches(l)) << "In on a missing key does not match";
}

TEST(DecodeSelectorTest, EmptyMatchLabelsAndExpressionsSelectAll) {
  const auto& p = onlyPolicy(
      decodeText(policyYaml("  podSelector: {matchLabels: {}, matchExpressions: []}\n"), "p.yaml"));
  EXPECT_TRUE(p.podSelector.empty());
}

TEST(DecodeSelectorTest, LabelEdgeCases) {
  const auto& p = onlyPolicy(decodeText(policyYaml(R"(  podSelector:
    matchLabels:
      app.kubernetes.io/name: web
      empty: ""
      nulled:
      "x-y_z.1": "A-b_c.9"
)"),
                                        "p.yaml"));
  const auto& m = p.podSelector.matchLabels;
  EXPECT_EQ(m.at("app.kubernetes.io/name"), "web");
  EXPECT_EQ(m.at("empty"), "");
  EXPECT_EQ(m.at("nulled"), "");
  EXPECT_EQ(m.at("x-y_z.1"), "A-b_c.9");
}

// ---- documents, Lists and kinds ----

TEST(DecodeDocumentsTest, MultiDocumentWithEmptyDocsAndUnknownKinds) {
  Decoded d = decodeText(R"(---
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: calico, namespace: prod}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod}
...
)",
                         "all.yaml");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  EXPECT_EQ(d.cluster.namespaces.size(), 1u);
  EXPECT_EQ(d.cluster.pods.size(), 1u);
  EXPECT_TRUE(d.cluster.policies.empty());
  ASSERT_EQ(d.notes.size(), 2u);
  EXPECT_NE(d.notes[0].find("all.yaml: skipped Deployment prod/web (apps/v1)"), std::string::npos)
      << d.notes[0];
  EXPECT_NE(d.notes[1].find("skipped NetworkPolicy prod/calico (projectcalico.org/v3)"),
            std::string::npos)
      << d.notes[1];
  EXPECT_EQ(d.cluster.pods[0].origin.document, 3);
}

TEST(DecodeDocumentsTest, ListKinds) {
  Decoded d = decodeText(R"(apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a}
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: nested}}
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: b, namespace: x}
- metadata: {name: c, namespace: x}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicyList
metadata: {resourceVersion: "1"}
items:
- metadata: {name: deny, namespace: x}
  spec: {podSelector: {}}
---
apiVersion: v1
kind: List
items: []
)",
                         "list.yaml");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  ASSERT_EQ(d.cluster.pods.size(), 3u);
  EXPECT_EQ(d.cluster.pods[1].key(), "x/b");
  EXPECT_EQ(d.cluster.namespaces.size(), 1u);
  ASSERT_EQ(d.cluster.policies.size(), 1u);
  EXPECT_EQ(d.cluster.policies[0].key(), "x/deny");
}

TEST(DecodeDocumentsTest, InvalidObjectDoesNotStopOthers) {
  Decoded d = decodeText(policyYaml("  podSelector: {}\n  ingress: [{ports: [{port: 0}]}]\n") +
                             "---\napiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n",
                         "mixed.yaml");
  EXPECT_EQ(d.errors.size(), 1u);
  EXPECT_TRUE(d.cluster.policies.empty());
  EXPECT_EQ(d.cluster.pods.size(), 1u);
}

TEST(DecodeDocumentsTest, DuplicateInOneFileKeepsFirst) {
  Decoded d = decodeText(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {v: one}}\n---\n"
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: default, labels: {v: two}}\n",
      "dup.yaml");
  ASSERT_EQ(d.cluster.pods.size(), 1u);
  EXPECT_EQ(d.cluster.pods[0].labels.at("v"), "one");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0].message,
            "dup.yaml: Pod default/a: duplicate: already defined in dup.yaml; keeping the first "
            "definition");
}

TEST(DecodeDocumentsTest, SameNameDifferentKindsOrNamespacesAreNotDuplicates) {
  Decoded d = decodeText(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n"
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: b}\n---\n"
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: {}\n---\n"
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
      "x.yaml");
  EXPECT_TRUE(d.errors.empty()) << joinErrors(d);
  EXPECT_EQ(d.cluster.pods.size(), 2u);
  EXPECT_EQ(d.cluster.policies.size(), 1u);
  EXPECT_EQ(d.cluster.namespaces.size(), 1u);
}

// ---- JSON ----

const char* kYamlFixture = R"(apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
  labels: {app: web, version: "2"}
spec:
  nodeName: n1
  containers:
  - name: c
    ports: [{containerPort: 8080, name: http}, {containerPort: 53, protocol: UDP}]
status:
  podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: prod}
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: NotIn, values: [b, a]}]
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: prod}}
      podSelector: {matchExpressions: [{key: role, operator: Exists}]}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.9.0.0/16]}
    ports: [{port: http}, {protocol: UDP, port: 53}, {port: 9000, endPort: 9100}]
  - {}
  egress:
  - to: [{ipBlock: {cidr: "fd00::/8"}}]
)";

const char* kJsonFixture = R"([
 {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "labels": {"env": "prod"}}},
 {"kind": "Pod", "apiVersion": "v1",
  "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web", "version": "2"},
               "annotations": {"a": "b"}, "managedFields": [{"manager": "kubectl"}]},
  "spec": {"nodeName": "n1", "volumes": [{"name": "v"}],
           "containers": [{"name": "c", "image": "x", "env": [{"name": "A"}],
                           "ports": [{"containerPort": 8080, "name": "http"},
                                     {"containerPort": 53, "protocol": "UDP"}]}]},
  "status": {"phase": "Running", "conditions": [{"type": "Ready"}],
             "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}},
 {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
  "metadata": {"name": "allow-web", "namespace": "prod"},
  "spec": {
   "podSelector": {"matchLabels": {"app": "web"},
                   "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["b", "a"]}]},
   "policyTypes": ["Ingress", "Egress"],
   "ingress": [
    {"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
               "podSelector": {"matchExpressions": [{"key": "role", "operator": "Exists"}]}},
              {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}],
     "ports": [{"port": "http"}, {"protocol": "UDP", "port": 53}, {"port": 9000, "endPort": 9100}]},
    {}],
   "egress": [{"to": [{"ipBlock": {"cidr": "fd00::/8"}}]}]}}
])";

TEST(DecodeJsonTest, JsonAndYamlGiveTheSameModel) {
  Decoded y = decodeText(kYamlFixture, "f.yaml");
  Decoded j = decodeText(kJsonFixture, "f.json");
  ASSERT_TRUE(y.errors.empty()) << joinErrors(y);
  ASSERT_TRUE(j.errors.empty()) << joinErrors(j);
  EXPECT_EQ(y.cluster.policies.size(), 1u);
  EXPECT_EQ(describe(y.cluster), describe(j.cluster));
}

TEST(DecodeJsonTest, ListObjectAndTypedList) {
  // kubectl prints "items" before "kind": typed-list items must wait for the list's kind.
  Decoded d = decodeText(R"({"apiVersion": "v1", "items": [
      {"metadata": {"name": "a", "namespace": "n"}},
      {"metadata": {"name": "b", "namespace": "n"}}], "kind": "PodList"})",
                         "pods.json");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  ASSERT_EQ(d.cluster.pods.size(), 2u);
  EXPECT_EQ(d.cluster.pods[1].key(), "n/b");

  d = decodeText(R"({"apiVersion": "v1", "items": [
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}},
      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}], "kind": "List"})",
                 "list.json");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  EXPECT_EQ(d.cluster.pods.size(), 1u);
  EXPECT_EQ(d.cluster.namespaces.size(), 1u);
}

TEST(DecodeJsonTest, ItemsOfANonListKindAreNotObjects) {
  Decoded d = decodeText(R"({"apiVersion": "example.com/v1", "items": [
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}], "kind": "Bundle",
      "metadata": {"name": "b"}})",
                         "bundle.json");
  EXPECT_TRUE(d.errors.empty()) << joinErrors(d);
  EXPECT_TRUE(d.cluster.pods.empty());
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_NE(d.notes[0].find("skipped Bundle b"), std::string::npos) << d.notes[0];
}

TEST(DecodeJsonTest, JsonStringPortIsAName) {
  Decoded d = decodeText(R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
      "metadata": {"name": "p", "namespace": "prod"},
      "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "8080"}]}]}})",
                         "p.json");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("p.json: NetworkPolicy prod/p: spec.ingress[0].ports[0].port: "
                                     "\"8080\" is not a valid port name"),
            std::string::npos)
      << d.errors[0].message;
}

TEST(DecodeJsonTest, JsonWrongTypes) {
  Decoded d = decodeText(R"({"apiVersion": "v1", "kind": "Pod",
      "metadata": {"name": "a", "labels": {"v": 1}}, "spec": {"hostNetwork": "yes"}})",
                         "p.json");
  ASSERT_EQ(d.errors.size(), 1u);
  const std::string& m = d.errors[0].message;
  EXPECT_NE(m.find("metadata.labels: value of label \"v\": expected a string, got an integer"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("spec.hostNetwork: expected a boolean, got a string"), std::string::npos) << m;
  // The float and huge-integer forms of a port are type errors too.
  d = decodeText(R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
      "metadata": {"name": "p"}, "spec": {"ingress": [{"ports": [{"port": 80.0},
      {"port": 18446744073709551615}, {"port": -5}]}]}})",
                 "p.json");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("ports[0].port: expected a port number or name, got a number"),
            std::string::npos)
      << d.errors[0].message;
  EXPECT_NE(d.errors[0].message.find("ports[1].port: expected a port number or name, got a number"),
            std::string::npos);
  EXPECT_NE(d.errors[0].message.find("ports[2].port: -5 is not a valid port number"),
            std::string::npos);
}

TEST(DecodeJsonTest, UnknownFieldsAreCheckedInJsonToo) {
  Decoded d = decodeText(R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
      "metadata": {"name": "p"}, "spec": {"podSelector": {}, "volumes": [1],
      "ingres": []}})",
                         "p.json");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("spec: unknown field \"ingres\""), std::string::npos)
      << d.errors[0].message;
  EXPECT_NE(d.errors[0].message.find("spec: unknown field \"volumes\""), std::string::npos)
      << d.errors[0].message;
}

// ---- malformed input ----

TEST(DecodeMalformedTest, YamlSyntaxErrorNamesFileAndLine) {
  Decoded d =
      decodeText("apiVersion: v1\nkind: Pod\nmetadata: {name: a\n---\nkind: [\n", "bad.yaml");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_TRUE(d.cluster.pods.empty());
  EXPECT_EQ(d.errors[0].message.rfind("bad.yaml: line ", 0), 0u) << d.errors[0].message;
  EXPECT_NE(d.errors[0].message.find("invalid YAML"), std::string::npos);
}

TEST(DecodeMalformedTest, JsonSyntaxErrorNamesFileAndPosition) {
  Decoded d = decodeText(
      "[{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"a\"}},\n"
      " {\"kind\": }]",
      "bad.json");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_TRUE(d.cluster.pods.empty()) << "nothing from a file with a syntax error is used";
  EXPECT_EQ(d.errors[0].message.rfind("bad.json: invalid JSON: parse error at line 2", 0), 0u)
      << d.errors[0].message;
}

TEST(DecodeMalformedTest, EmptyAndCommentOnlyInputs) {
  EXPECT_TRUE(decodeText("", "e.yaml").errors.empty());
  EXPECT_TRUE(decodeText("  \n\n", "e.yaml").errors.empty());
  EXPECT_TRUE(decodeText("# nothing\n---\n", "e.yaml").errors.empty());
  EXPECT_TRUE(decodeText("[]", "e.json").errors.empty());
  EXPECT_TRUE(
      decodeText(
          "\xEF\xBB\xBF{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}",
          "bom.json")
          .errors.empty());
}

TEST(DecodeMalformedTest, EveryTruncationIsAnErrorNotACrash) {
  // Cut the fixtures at every byte: the decoder must report, never throw or crash (this runs
  // under ASan+UBSan too).
  for (std::string_view text : {std::string_view(kYamlFixture), std::string_view(kJsonFixture)}) {
    for (size_t n = 0; n <= text.size(); n += 3) {
      Decoded d;
      EXPECT_NO_THROW(d = decodeText(text.substr(0, n), "cut"));
    }
  }
}

TEST(DecodeMalformedTest, StrangeButWellFormedDocuments) {
  for (const char* text : {
           "- 1\n- 2\n",
           "apiVersion: v1\nkind: Pod\nmetadata: [1]\n",
           "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: 5\nstatus: [x]\n",
           "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: {a: 1}}\n",
           "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIPs: [1, {ip: [x]}, {}]}\n",
           "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: "
           "{ingress: [1, [2], {from: [1]}, {ports: [3, {port: {}}]}]}\n",
           "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: "
           "{podSelector: {matchExpressions: [1, {key: {}, operator: [], values: [[]]}]}}\n",
           "? [complex, key]\n: value\n",
           "&a [*a]\n",
           "apiVersion: v1\nkind: List\nitems: [1, null, [2], {kind: List, apiVersion: v1, items: "
           "[{kind: List, apiVersion: v1, items: [{kind: List, apiVersion: v1, items: [{kind: "
           "List, "
           "apiVersion: v1, items: [{kind: List, apiVersion: v1, items: []}]}]}]}]}]\n",
           "{\"kind\": 1}",
           "[1, \"x\", null, [], {\"items\": 5, \"kind\": \"List\"}]",
       }) {
    Decoded d;
    EXPECT_NO_THROW(d = decodeText(text, "odd")) << text;
    EXPECT_TRUE(d.cluster.pods.empty() && d.cluster.policies.empty()) << text;
  }
}

// ---- what the API server accepts, Sluice reads ----

bool hasNote(const Decoded& d, std::string_view text) {
  return std::any_of(d.notes.begin(), d.notes.end(),
                     [&](const std::string& n) { return n.find(text) != std::string::npos; });
}

TEST(DecodeApiCompatTest, IpBlockWithHostBitsMeansItsNetwork) {
  // The API server validates ipBlocks with ParseCIDRSloppy; upstream e2e tests use such CIDRs.
  Decoded d = decodeText(
      policyYaml("  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.5/24, "
                 "except: [10.0.0.7/28]}\n    - ipBlock: {cidr: \"fd00::1/64\"}\n"),
      "p.yaml");
  const auto p = onlyPolicy(d);
  ASSERT_EQ(p.ingress.size(), 1u);
  ASSERT_EQ(p.ingress[0].peers.size(), 2u);
  const auto& v4 = *p.ingress[0].peers[0].ipBlock;
  EXPECT_EQ(v4.cidr.toString(), "10.0.0.0/24");
  ASSERT_EQ(v4.except.size(), 1u);
  EXPECT_EQ(v4.except[0].toString(), "10.0.0.0/28");
  EXPECT_TRUE(v4.contains(ip("10.0.0.200")));
  EXPECT_FALSE(v4.contains(ip("10.0.0.5")));  // inside the except's network
  EXPECT_FALSE(v4.contains(ip("10.0.1.5")));
  using Written = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(v4.hostBitsSet, (Written{{"cidr", "10.0.0.5/24"}, {"except[0]", "10.0.0.7/28"}}));
  const auto& v6 = *p.ingress[0].peers[1].ipBlock;
  EXPECT_EQ(v6.cidr.toString(), "fd00::/64");
  EXPECT_EQ(v6.hostBitsSet, (Written{{"cidr", "fd00::1/64"}}));
  EXPECT_TRUE(hasNote(d,
                      "spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.5/24\" has host bits "
                      "set; read as its network 10.0.0.0/24"))
      << testing::joinNotes(d);
  // A canonical CIDR records nothing.
  const auto q = onlyPolicy(decodeText(
      policyYaml("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24}}]}]\n"),
      "q.yaml"));
  EXPECT_TRUE(q.ingress[0].peers[0].ipBlock->hostBitsSet.empty());
}

TEST(DecodeApiCompatTest, IpBlockWithHostBitsSameInJson) {
  Decoded d = decodeText(
      R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p"},)"
      R"("spec":{"podSelector":{},"egress":[{"to":[{"ipBlock":{"cidr":"192.168.1.77/16"}}]}]}})",
      "p.json");
  const auto p = onlyPolicy(d);
  ASSERT_EQ(p.egress.size(), 1u);
  EXPECT_EQ(p.egress[0].peers[0].ipBlock->cidr.toString(), "192.168.0.0/16");
  EXPECT_EQ(p.egress[0].peers[0].ipBlock->hostBitsSet.size(), 1u);
}

TEST(DecodeApiCompatTest, FlowJsonFirstDocumentThenYamlDocuments) {
  // kubectl reads this as a YAML stream: JSON is flow-style YAML.
  Decoded d = decodeText(
      "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"a\", \"namespace\": "
      "\"prod\", \"labels\": {\"app\": \"web\"}}}\n"
      "---\n"
      "apiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n  namespace: prod\n"
      "--- # a comment after the marker\n" +
          policyYaml("  podSelector: {matchLabels: {app: web}}\n"),
      "stream.yaml");
  ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
  ASSERT_EQ(d.cluster.pods.size(), 2u);
  EXPECT_EQ(d.cluster.pods[0].key(), "prod/a");
  EXPECT_EQ(d.cluster.pods[0].labels.at("app"), "web");
  EXPECT_EQ(d.cluster.pods[1].key(), "prod/b");
  EXPECT_EQ(d.cluster.policies.size(), 1u);
  // "---" inside a JSON string is not a document marker: still one JSON document.
  Decoded j = decodeText(
      "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"x\",\n"
      "\"labels\":{\"a\":\"b\"}}}",
      "one.json");
  ASSERT_TRUE(j.errors.empty()) << joinErrors(j);
  EXPECT_EQ(j.cluster.namespaces.size(), 1u);
}

// One answer for a key given twice, whatever the format: the last value, with a note.
struct DuplicateCase {
  const char* name;
  const char* text;
};

TEST(DecodeApiCompatTest, DuplicateKeysTakeTheLastValueInYamlAndJson) {
  const DuplicateCase cases[] = {
      {"p.yaml",
       "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
       "prod}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  podSelector: {matchLabels: "
       "{app: web}}\n  ingress: [{ports: [{port: 80, port: 443}]}]\n"},
      {"p.json",
       R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p",)"
       R"("namespace":"prod"},"spec":{"podSelector":{"matchLabels":{"app":"db"}},)"
       R"("podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"ports":[{"port":80,"port":443}]}]}})"},
      // Streamed List items and a root array go through other paths of the JSON reader.
      {"list.json",
       R"({"apiVersion":"v1","kind":"List","items":[{"apiVersion":"networking.k8s.io/v1",)"
       R"("kind":"NetworkPolicy","metadata":{"name":"p","namespace":"prod"},"spec":{)"
       R"("podSelector":{"matchLabels":{"app":"db"}},"podSelector":{"matchLabels":{"app":"web"}},)"
       R"("ingress":[{"ports":[{"port":80,"port":443}]}]}}]})"},
      {"array.json",
       R"([{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"other"}},)"
       R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p",)"
       R"("namespace":"prod"},"spec":{"podSelector":{"matchLabels":{"app":"db"}},)"
       R"("podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"ports":[{"port":80,"port":443}]}]}}])"},
      {"list.yaml",
       "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: "
       "NetworkPolicy\n  metadata: {name: p, namespace: prod}\n  spec:\n    podSelector: "
       "{matchLabels: {app: db}}\n    podSelector: {matchLabels: {app: web}}\n    ingress: "
       "[{ports: [{port: 80, port: 443}]}]\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Decoded d = decodeText(c.text, c.name);
    const auto p = onlyPolicy(d);
    EXPECT_EQ(p.podSelector.toString(), "app=web");
    ASSERT_EQ(p.ingress.size(), 1u);
    ASSERT_EQ(p.ingress[0].ports.size(), 1u);
    EXPECT_EQ(std::get<uint16_t>(p.ingress[0].ports[0].port), 443);
    EXPECT_EQ(p.duplicateKeys,
              (std::vector<std::string>{"spec.ingress[0].ports[0].port", "spec.podSelector"}));
    EXPECT_TRUE(hasNote(d,
                        "NetworkPolicy prod/p: spec.podSelector: duplicate key; the last "
                        "value is used"))
        << testing::joinNotes(d);
  }
}

TEST(DecodeApiCompatTest, DuplicateLabelKeysTakeTheLastValue) {
  for (
      const char* text :
      {"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels:\n    app: db\n    app: web\n",
       R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"app":"db","app":"web"}}})"}) {
    SCOPED_TRACE(text);
    Decoded d = decodeText(text, "pod");
    ASSERT_TRUE(d.errors.empty()) << joinErrors(d);
    ASSERT_EQ(d.cluster.pods.size(), 1u);
    EXPECT_EQ(d.cluster.pods[0].labels, (Labels{{"app", "web"}}));
    EXPECT_TRUE(hasNote(d, "Pod default/a: metadata.labels.app: duplicate key"))
        << testing::joinNotes(d);
  }
}

TEST(DecodeApiCompatTest, UnknownKindsAreSkippedWithANote) {
  Decoded d = decodeText("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", "s.yaml");
  EXPECT_TRUE(d.errors.empty());
  EXPECT_TRUE(hasNote(d, "skipped Service s (v1)")) << testing::joinNotes(d);
}

}  // namespace
}  // namespace sluice::model
