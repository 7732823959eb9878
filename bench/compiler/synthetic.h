// The synthetic cluster the compiler and agent benchmarks share (bench/scale/gen_dump.py's
// shapes): deployments of ~10 replicas (shared labels), every 20th pod a StatefulSet member with
// a unique pod-name label, policies cycling through default deny, namespace-selected named port,
// matchExpressions, egress DNS, egress ipBlock with except and port ranges. One node ("local")
// holds `local` endpoints.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "policyd/compiler/compiler.h"
#include "policyd/model/types.h"

namespace sluice::bench {

using model::Protocol;

struct Options {
  int pods = 10000;
  int policies = 1000;
  int namespaces = 100;
  int local = 110;
  int rounds = 9;
};

inline model::LabelSelector sel(model::Labels l) { return {std::move(l), {}}; }

struct Synthetic {
  model::Cluster cluster;
  compiler::NodeContext node;
};

inline Synthetic build(const Options& o) {
  Synthetic s;
  for (int n = 0; n < o.namespaces; ++n) {
    std::string name = "ns-" + std::to_string(n);
    s.cluster.namespaces.push_back({name,
                                    {{"kubernetes.io/metadata.name", name},
                                     {"team", "t" + std::to_string(n % 10)},
                                     {"env", n % 3 == 0 ? "prod" : "dev"}},
                                    {}});
  }
  for (int i = 0; i < o.pods; ++i) {
    model::Pod p;
    const int deployment = i / 10;
    p.namespace_ = "ns-" + std::to_string(deployment % o.namespaces);
    p.name = "pod-" + std::to_string(i);
    p.labels = {{"app", "app-" + std::to_string(deployment % 20)},
                {"pod-template-hash", "h" + std::to_string(deployment)},
                {"tier", deployment % 2 ? "fe" : "be"}};
    if (i % 20 == 0) p.labels["statefulset.kubernetes.io/pod-name"] = p.name;
    p.ips = {IpAddr::v4((10u << 24) | static_cast<uint32_t>(i + 1))};
    std::array<uint8_t, 16> v6{};
    v6[0] = 0xfd;
    v6[14] = static_cast<uint8_t>(i >> 8);
    v6[15] = static_cast<uint8_t>(i);
    p.ips.push_back(IpAddr::v6(v6));
    p.ports = {{"http", static_cast<uint16_t>(deployment % 2 ? 8080 : 80), Protocol::TCP},
               {"dns", 53, Protocol::UDP}};
    p.nodeName = i % (o.pods / o.local) == 0 ? "local" : "remote";
    if (p.nodeName == "local" && static_cast<int>(s.node.endpoints.size()) < o.local) {
      s.node.endpoints.push_back(
          {static_cast<compiler::EndpointId>(i + 1), p.namespace_, p.name, p.ips});
    }
    s.cluster.pods.push_back(std::move(p));
  }
  s.node.hostAddresses = {*IpAddr::parse("192.168.0.1")};
  for (int k = 0; k < o.policies; ++k) {
    model::NetworkPolicy pol;
    pol.namespace_ = "ns-" + std::to_string(k % o.namespaces);
    pol.name = "pol-" + std::to_string(k);
    const std::string app = "app-" + std::to_string(k % 20);
    model::Rule r;
    switch (k % 6) {
      case 0:  // default deny, both directions
        pol.affectsIngress = pol.affectsEgress = true;
        break;
      case 1:  // from labelled namespaces on a named port
        pol.podSelector = sel({{"app", app}});
        pol.affectsIngress = true;
        r.peers.push_back(
            {std::nullopt, sel({{"team", "t" + std::to_string(k % 10)}}), std::nullopt});
        r.ports.push_back({Protocol::TCP, std::string("http"), std::nullopt});
        pol.ingress.push_back(r);
        break;
      case 2: {  // from a pod selector with matchExpressions
        pol.podSelector = sel({{"app", app}});
        pol.affectsIngress = true;
        model::LabelSelector ls;
        ls.matchExpressions.push_back({"tier", model::SelectorOp::In, {"fe"}});
        ls.matchExpressions.push_back({"app", model::SelectorOp::NotIn, {app}});
        r.peers.push_back({ls, std::nullopt, std::nullopt});
        r.ports.push_back({Protocol::TCP, uint16_t{5432}, std::nullopt});
        pol.ingress.push_back(r);
        break;
      }
      case 3:  // egress DNS to kube-system-like namespace
        pol.affectsEgress = true;
        r.peers.push_back(
            {std::nullopt, sel({{"kubernetes.io/metadata.name", "ns-0"}}), std::nullopt});
        r.ports.push_back({Protocol::UDP, uint16_t{53}, std::nullopt});
        pol.egress.push_back(r);
        break;
      case 4: {  // egress to an ipBlock with except
        pol.podSelector = sel({{"app", app}});
        pol.affectsEgress = true;
        const uint32_t net = static_cast<uint32_t>(k % 50) << 16;
        model::IPBlock b{Prefix(IpAddr::v4((172u << 24) | net), 16),
                         {Prefix(IpAddr::v4((172u << 24) | net | (1u << 8)), 24)}};
        r.peers.push_back({std::nullopt, std::nullopt, b});
        r.ports.push_back({Protocol::TCP, uint16_t{443}, std::nullopt});
        pol.egress.push_back(r);
        break;
      }
      default:  // port range from the same app
        pol.podSelector = sel({{"app", app}});
        pol.affectsIngress = true;
        r.peers.push_back({sel({{"app", app}}), std::nullopt, std::nullopt});
        r.ports.push_back({Protocol::TCP, uint16_t{8000}, uint16_t{8100}});
        pol.ingress.push_back(r);
        break;
    }
    s.cluster.policies.push_back(std::move(pol));
  }
  return s;
}

}  // namespace sluice::bench
