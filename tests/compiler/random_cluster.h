// Seeded random clusters, policies, changes and probe flows, for differential tests: the
// compiler's IR (and later each datapath) against the reference evaluator. Small vocabularies
// (a few labels, ports and prefixes) so that random selectors, named ports and ipBlocks actually
// collide with the pods they are generated next to.
//
// One node ("node-a") is local: some pods are its endpoints (LocalEndpoint ids from 100), its
// host addresses are 192.168.0.1 and fd00:ffff::1, and hostNetwork pods on it use those.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/ip.h"
#include "policyd/compiler/compiler.h"
#include "policyd/model/types.h"

namespace sluice::compiler::testing {

struct RandomClusterOptions {
  int namespaces = 3;
  int minPods = 4;
  int maxPods = 16;
  int maxPolicies = 6;
  double localFraction = 0.4;    // of pods with addresses, that are endpoints of this node
  double dualStackFraction = 0.5;
  double hostNetworkFraction = 0.1;
  double noAddressFraction = 0.05;
};

struct Scenario {
  model::Cluster cluster;
  NodeContext node;
};

struct ProbeFlow {
  IpAddr src;
  IpAddr dst;
  model::Protocol protocol = model::Protocol::TCP;
  uint16_t port = 0;
};

class RandomCluster {
 public:
  explicit RandomCluster(uint64_t seed, RandomClusterOptions options = {});

  Scenario generate();
  // One random change: pod relabel/add/remove/re-address/ports, namespace relabel, policy
  // add/remove/replace, endpoint add/remove, host address change. Keeps endpoint addresses equal
  // to their pods' (as the CNI registers them) and every address owned by one pod at most.
  // Returns a short description for failure messages.
  std::string mutate(Scenario& s);
  // Addresses worth probing: every pod and host address, the edges of every ipBlock prefix of
  // the vocabulary, and a few world addresses.
  std::vector<IpAddr> probeAddresses(const Scenario& s);
  ProbeFlow randomFlow(const Scenario& s, const std::vector<IpAddr>& addresses);

  model::NetworkPolicy randomPolicy(const std::string& ns, const std::string& name);
  model::Pod randomPod(const std::string& ns, const std::string& name);
  std::mt19937_64& rng() { return rng_; }

 private:
  bool chance(double p);
  int uniform(int lo, int hi);  // inclusive
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(uniform(0, static_cast<int>(v.size()) - 1))];
  }
  model::Labels randomPodLabels();
  model::LabelSelector randomSelector(bool namespaces);
  model::Rule randomRule();
  model::Peer randomPeer();
  model::PortSpec randomPort();
  void assignAddresses(model::Pod& pod);
  void syncEndpoint(Scenario& s, const model::Pod& pod);

  std::mt19937_64 rng_;
  RandomClusterOptions options_;
  int nextPod_ = 0;
  int nextPolicy_ = 0;
  int nextAddress_ = 1;
};

}  // namespace sluice::compiler::testing
