#include "tests/compiler/random_cluster.h"

#include <algorithm>

namespace sluice::compiler::testing {

namespace {

using model::LabelSelector;
using model::Labels;
using model::Protocol;
using model::SelectorOp;

constexpr const char* kNode = "node-a";
constexpr EndpointId kFirstEndpoint = 100;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }
Prefix cidr(const char* s) { return *Prefix::parse(s); }

struct BlockSpec {
  const char* cidr;
  std::vector<const char*> except;
};

// Pods live in 10.0.0.0/24 and 10.0.1.0/24 (and fd00::/64); the node in 192.168.0.0/24.
const std::vector<BlockSpec>& blockVocabulary() {
  static const std::vector<BlockSpec> kBlocks = {
      {"10.0.0.0/16", {"10.0.1.0/24"}},
      {"10.0.1.0/24", {}},
      {"10.0.0.0/8", {"10.0.0.0/28", "10.0.1.16/28"}},
      {"0.0.0.0/0", {"10.0.0.0/8"}},
      {"0.0.0.0/0", {}},
      {"10.0.0.16/28", {"10.0.0.20/30"}},
      {"192.168.0.0/24", {}},
      {"192.168.0.1/32", {}},
      {"fd00::/64", {"fd00::/124"}},
      {"fd00::/120", {}},
      {"::/0", {}},
      {"fd00:ffff::/64", {}},
  };
  return kBlocks;
}

}  // namespace

RandomCluster::RandomCluster(uint64_t seed, RandomClusterOptions options)
    : rng_(seed), options_(options) {}

bool RandomCluster::chance(double p) { return std::bernoulli_distribution(p)(rng_); }

int RandomCluster::uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

Labels RandomCluster::randomPodLabels() {
  Labels l;
  if (chance(0.8)) l["app"] = pick<std::string>({"web", "db", "cache"});
  if (chance(0.5)) l["tier"] = pick<std::string>({"fe", "be"});
  if (chance(0.1)) l["debug"] = "true";
  return l;
}

LabelSelector RandomCluster::randomSelector(bool namespaces) {
  LabelSelector s;
  const int shape = uniform(0, 5);
  if (shape == 0) return s;  // {} selects everything
  if (namespaces) {
    switch (shape) {
      case 1: s.matchLabels["team"] = pick<std::string>({"a", "b"}); break;
      case 2:
        s.matchLabels["kubernetes.io/metadata.name"] = "ns" + std::to_string(uniform(0, 3));
        break;
      case 3: s.matchExpressions.push_back({"env", SelectorOp::In, {"prod"}}); break;
      case 4: s.matchExpressions.push_back({"env", SelectorOp::DoesNotExist, {}}); break;
      default: s.matchExpressions.push_back({"team", SelectorOp::NotIn, {"a"}}); break;
    }
    return s;
  }
  switch (shape) {
    case 1:
    case 2: s.matchLabels["app"] = pick<std::string>({"web", "db", "cache"}); break;
    case 3: s.matchExpressions.push_back({"tier", SelectorOp::In, {"be", "fe"}}); break;
    case 4: s.matchExpressions.push_back({"app", SelectorOp::NotIn, {"db"}}); break;
    default:
      s.matchExpressions.push_back(
          {"debug", chance(0.5) ? SelectorOp::Exists : SelectorOp::DoesNotExist, {}});
      break;
  }
  return s;
}

model::Peer RandomCluster::randomPeer() {
  model::Peer p;
  switch (uniform(0, 3)) {
    case 0: p.podSelector = randomSelector(false); break;
    case 1: p.namespaceSelector = randomSelector(true); break;
    case 2:
      p.podSelector = randomSelector(false);
      p.namespaceSelector = randomSelector(true);
      break;
    default: {
      const BlockSpec& b = pick(blockVocabulary());
      model::IPBlock block{cidr(b.cidr), {}};
      for (const char* e : b.except) block.except.push_back(cidr(e));
      p.ipBlock = block;
      break;
    }
  }
  return p;
}

model::PortSpec RandomCluster::randomPort() {
  model::PortSpec ps;
  ps.protocol = chance(0.6) ? Protocol::TCP : (chance(0.7) ? Protocol::UDP : Protocol::SCTP);
  switch (uniform(0, 4)) {
    case 0: break;  // protocol only: all its ports
    case 1: ps.port = static_cast<uint16_t>(pick<int>({53, 80, 8080, 9090})); break;
    case 2: {
      const uint16_t first = static_cast<uint16_t>(pick<int>({80, 8000, 50}));
      ps.port = first;
      ps.endPort = static_cast<uint16_t>(first + pick<int>({0, 5, 100}));
      break;
    }
    default: ps.port = pick<std::string>({"http", "dns", "metrics", "nope"}); break;
  }
  return ps;
}

model::Rule RandomCluster::randomRule() {
  model::Rule r;
  if (!chance(0.25)) {
    for (int i = uniform(1, 2); i > 0; --i) r.peers.push_back(randomPeer());
  }
  if (!chance(0.35)) {
    for (int i = uniform(1, 2); i > 0; --i) r.ports.push_back(randomPort());
  }
  return r;
}

model::NetworkPolicy RandomCluster::randomPolicy(const std::string& ns, const std::string& name) {
  model::NetworkPolicy p;
  p.namespace_ = ns;
  p.name = name;
  p.podSelector = randomSelector(false);
  const int types = uniform(0, 2);
  p.affectsIngress = types != 1;
  p.affectsEgress = types != 0;
  for (int i = uniform(0, 2); i > 0; --i) p.ingress.push_back(randomRule());
  for (int i = uniform(0, 2); i > 0; --i) p.egress.push_back(randomRule());
  return p;
}

void RandomCluster::assignAddresses(model::Pod& pod) {
  pod.ips.clear();
  if (pod.hostNetwork) {
    // On this node a hostNetwork pod has the node's address; elsewhere another node's.
    pod.ips.push_back(ip(pod.nodeName == kNode ? "192.168.0.1" : "192.168.0.2"));
    return;
  }
  if (chance(options_.noAddressFraction)) return;
  const int n = nextAddress_++;
  // Alternate between the two /24s, walking addresses so ipBlock edges (/28, /30) are hit.
  pod.ips.push_back(IpAddr::v4((10u << 24) | (static_cast<uint32_t>(n % 2) << 8) |
                               static_cast<uint32_t>(n / 2 % 250 + 1)));
  if (chance(options_.dualStackFraction)) {
    std::array<uint8_t, 16> b{};
    b[0] = 0xfd;
    b[14] = static_cast<uint8_t>(n >> 8);
    b[15] = static_cast<uint8_t>(n);
    pod.ips.push_back(IpAddr::v6(b));
  }
}

model::Pod RandomCluster::randomPod(const std::string& ns, const std::string& name) {
  model::Pod pod;
  pod.namespace_ = ns;
  pod.name = name;
  pod.labels = randomPodLabels();
  pod.hostNetwork = chance(options_.hostNetworkFraction);
  pod.nodeName = chance(0.5) ? kNode : "node-b";
  if (chance(0.6)) pod.ports.push_back({"http", static_cast<uint16_t>(pick<int>({80, 8080})), Protocol::TCP});
  if (chance(0.3)) pod.ports.push_back({"dns", 53, Protocol::UDP});
  if (chance(0.2)) pod.ports.push_back({"dns", 5353, Protocol::TCP});
  if (chance(0.3)) pod.ports.push_back({"metrics", 9090, Protocol::TCP});
  assignAddresses(pod);
  return pod;
}

// Registers or unregisters the pod as an endpoint of this node, as the CNI would.
void RandomCluster::syncEndpoint(Scenario& s, const model::Pod& pod) {
  auto& eps = s.node.endpoints;
  auto it = std::find_if(eps.begin(), eps.end(), [&](const LocalEndpoint& e) {
    return e.podNamespace == pod.namespace_ && e.podName == pod.name;
  });
  if (it != eps.end()) {
    if (pod.hostNetwork || pod.ips.empty()) {
      eps.erase(it);
    } else {
      it->ips = pod.ips;
    }
  }
}

Scenario RandomCluster::generate() {
  Scenario s;
  for (int i = 0; i < options_.namespaces; ++i) {
    const std::string name = "ns" + std::to_string(i);
    // Sometimes a namespace object is missing (not yet seen): it still has its name label.
    if (i == options_.namespaces - 1 && chance(0.3)) continue;
    model::Namespace ns{name, {{"kubernetes.io/metadata.name", name}}, {}};
    if (chance(0.7)) ns.labels["team"] = pick<std::string>({"a", "b"});
    if (chance(0.5)) ns.labels["env"] = pick<std::string>({"prod", "dev"});
    s.cluster.namespaces.push_back(std::move(ns));
  }
  const int pods = uniform(options_.minPods, options_.maxPods);
  for (int i = 0; i < pods; ++i) {
    model::Pod pod = randomPod("ns" + std::to_string(uniform(0, options_.namespaces - 1)),
                               "p" + std::to_string(nextPod_++));
    if (!pod.hostNetwork && !pod.ips.empty() && chance(options_.localFraction)) {
      pod.nodeName = kNode;
      s.node.endpoints.push_back(
          {kFirstEndpoint + static_cast<EndpointId>(i), pod.namespace_, pod.name, pod.ips});
    }
    s.cluster.pods.push_back(std::move(pod));
  }
  const int policies = uniform(0, options_.maxPolicies);
  for (int i = 0; i < policies; ++i) {
    s.cluster.policies.push_back(randomPolicy("ns" + std::to_string(uniform(0, options_.namespaces - 1)),
                                              "pol" + std::to_string(nextPolicy_++)));
  }
  s.node.hostAddresses = {ip("192.168.0.1"), ip("fd00:ffff::1")};
  return s;
}

std::string RandomCluster::mutate(Scenario& s) {
  auto& pods = s.cluster.pods;
  auto& pols = s.cluster.policies;
  const std::string ns = "ns" + std::to_string(uniform(0, options_.namespaces - 1));
  switch (uniform(0, 11)) {
    case 0:
    case 1:
      if (!pods.empty()) {
        auto& pod = pods[static_cast<size_t>(uniform(0, static_cast<int>(pods.size()) - 1))];
        pod.labels = randomPodLabels();
        return "relabel pod " + pod.key();
      }
      break;
    case 2: {
      model::Pod pod = randomPod(ns, "p" + std::to_string(nextPod_++));
      std::string what = "add pod " + pod.key();
      if (!pod.hostNetwork && !pod.ips.empty() && chance(options_.localFraction)) {
        pod.nodeName = kNode;
        s.node.endpoints.push_back(
            {kFirstEndpoint + static_cast<EndpointId>(nextPod_), pod.namespace_, pod.name, pod.ips});
        what += " (local)";
      }
      pods.push_back(std::move(pod));
      return what;
    }
    case 3:
      if (!pods.empty()) {
        const size_t i = static_cast<size_t>(uniform(0, static_cast<int>(pods.size()) - 1));
        model::Pod pod = pods[i];
        pods.erase(pods.begin() + static_cast<std::ptrdiff_t>(i));
        // Sometimes the endpoint outlives the pod object for a while (unknown pod).
        if (chance(0.7)) {
          std::erase_if(s.node.endpoints, [&](const LocalEndpoint& e) {
            return e.podNamespace == pod.namespace_ && e.podName == pod.name;
          });
        }
        return "remove pod " + pod.key();
      }
      break;
    case 4:
      if (!pods.empty()) {
        auto& pod = pods[static_cast<size_t>(uniform(0, static_cast<int>(pods.size()) - 1))];
        assignAddresses(pod);
        syncEndpoint(s, pod);
        return "re-address pod " + pod.key();
      }
      break;
    case 5:
      if (!pods.empty()) {
        auto& pod = pods[static_cast<size_t>(uniform(0, static_cast<int>(pods.size()) - 1))];
        model::Pod fresh = randomPod(pod.namespace_, pod.name);
        pod.ports = fresh.ports;
        return "ports of pod " + pod.key();
      }
      break;
    case 6:
      if (!s.cluster.namespaces.empty()) {
        auto& n = s.cluster.namespaces[static_cast<size_t>(
            uniform(0, static_cast<int>(s.cluster.namespaces.size()) - 1))];
        n.labels.erase("team");
        n.labels.erase("env");
        if (chance(0.6)) n.labels["team"] = pick<std::string>({"a", "b"});
        if (chance(0.5)) n.labels["env"] = pick<std::string>({"prod", "dev"});
        return "relabel namespace " + n.name;
      }
      break;
    case 7:
    case 8:
      pols.push_back(randomPolicy(ns, "pol" + std::to_string(nextPolicy_++)));
      return "add policy " + pols.back().key();
    case 9:
      if (!pols.empty()) {
        const size_t i = static_cast<size_t>(uniform(0, static_cast<int>(pols.size()) - 1));
        std::string what = "remove policy " + pols[i].key();
        pols.erase(pols.begin() + static_cast<std::ptrdiff_t>(i));
        return what;
      }
      break;
    case 10:
      if (!pols.empty()) {
        auto& p = pols[static_cast<size_t>(uniform(0, static_cast<int>(pols.size()) - 1))];
        p = randomPolicy(p.namespace_, p.name);
        return "replace policy " + p.key();
      }
      break;
    default:
      if (chance(0.5)) {
        std::swap(s.node.hostAddresses.front(), s.node.hostAddresses.back());
        return "swap host addresses";
      }
      // Register an endpoint for a pod that has none yet.
      for (const auto& pod : pods) {
        if (pod.hostNetwork || pod.ips.empty()) continue;
        const bool known = std::any_of(s.node.endpoints.begin(), s.node.endpoints.end(),
                                       [&](const LocalEndpoint& e) {
                                         return e.podNamespace == pod.namespace_ &&
                                                e.podName == pod.name;
                                       });
        if (known) continue;
        s.node.endpoints.push_back({kFirstEndpoint + 5000 + static_cast<EndpointId>(nextPod_++),
                                    pod.namespace_, pod.name, pod.ips});
        return "register endpoint " + pod.key();
      }
      break;
  }
  return "no-op";
}

std::vector<IpAddr> RandomCluster::probeAddresses(const Scenario& s) {
  std::vector<IpAddr> out;
  for (const auto& pod : s.cluster.pods) out.insert(out.end(), pod.ips.begin(), pod.ips.end());
  for (const auto& ep : s.node.endpoints) out.insert(out.end(), ep.ips.begin(), ep.ips.end());
  out.insert(out.end(), s.node.hostAddresses.begin(), s.node.hostAddresses.end());
  for (const auto& b : blockVocabulary()) {
    std::vector<Prefix> prefixes{cidr(b.cidr)};
    for (const char* e : b.except) prefixes.push_back(cidr(e));
    for (const Prefix& p : prefixes) {
      out.push_back(p.addr());
      // The last address of the prefix, and one just past it.
      auto bytes = p.addr().bytes();
      const int bits = p.addr().bits();
      for (int i = p.len(); i < bits; ++i) bytes[static_cast<size_t>(i / 8)] |= static_cast<uint8_t>(0x80 >> (i % 8));
      IpAddr last = p.addr().isV4()
                        ? IpAddr::v4((uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
                                     (uint32_t{bytes[2]} << 8) | bytes[3])
                        : IpAddr::v6(bytes);
      out.push_back(last);
      if (last.isV4() && last.v4HostOrder() != UINT32_MAX) out.push_back(IpAddr::v4(last.v4HostOrder() + 1));
    }
  }
  for (const char* w : {"8.8.8.8", "10.0.0.5", "10.0.1.17", "10.0.0.21", "192.168.0.2",
                        "2001:db8::1", "fd00::5", "fd00::1:0"}) {
    out.push_back(ip(w));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

ProbeFlow RandomCluster::randomFlow(const Scenario& s, const std::vector<IpAddr>& addresses) {
  // Pod addresses more often than the prefix edges, so that flows reach endpoints.
  std::vector<IpAddr> pods;
  for (const auto& pod : s.cluster.pods) pods.insert(pods.end(), pod.ips.begin(), pod.ips.end());
  auto end = [&] { return !pods.empty() && chance(0.6) ? pick(pods) : pick(addresses); };
  ProbeFlow f;
  f.src = end();
  f.dst = end();
  f.protocol = chance(0.5) ? Protocol::TCP : (chance(0.6) ? Protocol::UDP : Protocol::SCTP);
  // Container ports, their neighbours, range edges and strangers.
  f.port = static_cast<uint16_t>(
      pick<int>({53, 54, 80, 81, 85, 86, 150, 151, 5353, 8080, 8081, 8050, 8100, 8101, 9090, 443}));
  return f;
}

}  // namespace sluice::compiler::testing
