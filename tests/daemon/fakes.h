// Fakes for the node agent's collaborators: a compiler with trivial semantics (one entry per
// local endpoint, so tests can see what the agent fed it), a host network and helpers.
#pragma once

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "policyd/daemon/host_network.h"
#include "policyd/daemon/policy_compiler.h"
#include "policyd/source/cluster_store.h"

namespace sluice::daemon::testing {

class FakeCompiler final : public PolicyCompiler {
 public:
  // Change sets are folded into the model the fake holds, then compiled like a whole model.
  compiler::Diff update(const compiler::ChangeSet& changes) override {
    source::Changes c;
    c.namespaceUpserts = changes.namespaceUpserts;
    c.namespaceDeletes = changes.namespaceDeletes;
    c.podUpserts = changes.podUpserts;
    c.podDeletes = changes.podDeletes;
    c.policyUpserts = changes.policyUpserts;
    c.policyDeletes = changes.policyDeletes;
    model::Cluster cluster;
    compiler::NodeContext node;
    {
      std::lock_guard lock(mu_);
      ++changeSets_;
      held_.apply(std::move(c));
      held_.discardChanges();
      cluster = held_.cluster();
      node = changes.node ? *changes.node : lastNode_;
    }
    return compile(cluster, node);
  }
  compiler::Diff update(const model::Cluster& cluster, const compiler::NodeContext& node) override {
    {
      std::lock_guard lock(mu_);
      held_.clear();
      source::Changes c;
      c.namespaceUpserts = cluster.namespaces;
      c.podUpserts = cluster.pods;
      c.policyUpserts = cluster.policies;
      held_.apply(std::move(c));
      held_.discardChanges();
    }
    return compile(cluster, node);
  }
  // Change-set updates so far (the agent's steady-state path).
  int changeSets() const {
    std::lock_guard lock(mu_);
    return changeSets_;
  }

 private:
  compiler::Diff compile(const model::Cluster& cluster, const compiler::NodeContext& node) {
    std::lock_guard lock(mu_);
    ++updates_;
    lastCluster_ = cluster;
    lastNode_ = node;
    compiler::State next;
    next.rules = {compiler::RuleOrigin{"default/allow-web", compiler::Direction::Ingress, 0}};
    for (const auto& ep : node.endpoints) {
      compiler::EndpointPolicy pol;
      // "Isolated" when the pod object is known and carries role=db: enough to see labels used.
      for (const auto& p : cluster.pods) {
        if (p.namespace_ == ep.podNamespace && p.name == ep.podName && p.labels.contains("role")) {
          pol.ingressIsolated = p.labels.at("role") == "db";
        }
      }
      next.endpoints[ep.id] = pol;
      for (const auto& ip : ep.ips)
        next.classes[Prefix::host(ip)] = compiler::kFirstDynamicClass + ep.id;
    }
    for (const auto& a : node.hostAddresses) next.classes[Prefix::host(a)] = compiler::kHostClass;
    compiler::Diff d;
    if (next.endpoints != state_.endpoints || next.classes != state_.classes ||
        state_.rules.empty()) {
      next.revision = state_.revision + 1;
      for (const auto& [id, pol] : next.endpoints) {
        auto old = state_.endpoints.find(id);
        if (old != state_.endpoints.end() && old->second == pol) continue;
        d.endpoints.push_back({id, false, pol.ingressIsolated, pol.egressIsolated, {}, {}});
      }
      for (const auto& [id, pol] : state_.endpoints) {
        if (!next.endpoints.contains(id)) d.endpoints.push_back({id, true, false, false, {}, {}});
      }
      for (const auto& [p, c] : next.classes) d.classesUpsert[p] = c;
      if (state_.rules.empty()) d.rulesUpsert.push_back({0, next.rules[0]});
    } else {
      next.revision = state_.revision;
    }
    d.revision = next.revision;
    state_ = std::move(next);
    return d;
  }

 public:
  const compiler::State& state() const override { return state_; }

  compiler::NodeContext lastNode() const {
    std::lock_guard lock(mu_);
    return lastNode_;
  }
  model::Cluster lastCluster() const {
    std::lock_guard lock(mu_);
    return lastCluster_;
  }
  int updates() const {
    std::lock_guard lock(mu_);
    return updates_;
  }

 private:
  mutable std::mutex mu_;
  compiler::State state_;
  compiler::NodeContext lastNode_;
  model::Cluster lastCluster_;
  source::ClusterStore held_;
  int updates_ = 0;
  int changeSets_ = 0;
};

class FakeHostNetwork final : public HostNetwork {
 public:
  Result<std::vector<IpAddr>> addresses() override {
    std::lock_guard lock(mu_);
    return addresses_;
  }
  bool linkExists(const std::string& ifname, int) override {
    std::lock_guard lock(mu_);
    return links_.contains(ifname);
  }
  // A link added with addLink is a host veth whose peer is in whatever netns a request names,
  // unless setPeerNetns pinned it to one; addNonVeth adds a link that is no veth at all.
  Status checkPodVeth(const std::string& hostVeth, int, const std::string& netnsPath,
                      const std::string&) override {
    std::lock_guard lock(mu_);
    if (nonVeth_.contains(hostVeth)) return makeError("interface " + hostVeth + ": not a veth");
    if (!links_.contains(hostVeth)) return makeError("interface " + hostVeth + ": no such link");
    auto it = peerNetns_.find(hostVeth);
    if (it != peerNetns_.end() && it->second != netnsPath) {
      return makeError("interface " + hostVeth + ": its veth peer is not in pod netns " +
                       netnsPath);
    }
    return Status::Ok();
  }
  Result<HostLink> link(int ifindex) override {
    std::lock_guard lock(mu_);
    auto it = details_.find(ifindex);
    if (it == details_.end())
      return makeError("link #" + std::to_string(ifindex) + ": no such link");
    return it->second;
  }
  void setAddresses(std::vector<IpAddr> a) {
    std::lock_guard lock(mu_);
    addresses_ = std::move(a);
  }
  void addLink(const std::string& n) {
    std::lock_guard lock(mu_);
    links_.insert(n);
  }
  void addNonVeth(const std::string& n) {
    std::lock_guard lock(mu_);
    links_.insert(n);
    nonVeth_.insert(n);
  }
  void setPeerNetns(const std::string& n, const std::string& netns) {
    std::lock_guard lock(mu_);
    peerNetns_[n] = netns;
  }
  // What link(ifindex) reports (registry recovery).
  void setLinkDetails(HostLink l) {
    std::lock_guard lock(mu_);
    details_[l.index] = std::move(l);
  }
  void removeLink(const std::string& n) {
    std::lock_guard lock(mu_);
    links_.erase(n);
  }

 private:
  std::mutex mu_;
  std::vector<IpAddr> addresses_{IpAddr::parse("192.168.1.10").value()};
  std::set<std::string> links_;
  std::set<std::string> nonVeth_;
  std::map<std::string, std::string> peerNetns_;
  std::map<int, HostLink> details_;
};

}  // namespace sluice::daemon::testing
