#include "policyd/source/kube/node_routes.h"

#include <cerrno>

#include "common/netlink.h"

namespace sluice::source::kube {

namespace {

class NetlinkRouteTable final : public RouteTable {
 public:
  explicit NetlinkRouteTable(netlink::Socket s) : sock_(std::move(s)) {}
  Status replace(const Prefix& dst, const IpAddr& via) override {
    netlink::RouteSpec r;
    r.dst = dst;
    r.gateway = via;
    r.protocol = kSluiceRouteProtocol;
    return sock_.addRoute(r);
  }
  Status remove(const Prefix& dst, const IpAddr& via) override {
    netlink::RouteSpec r;
    r.dst = dst;
    r.gateway = via;
    r.protocol = kSluiceRouteProtocol;
    auto st = sock_.deleteRoute(r);
    if (!st.ok() && st.error().code == ESRCH) return Status::Ok();  // already gone
    return st;
  }
  Result<std::map<Prefix, IpAddr>> owned() override {
    std::map<Prefix, IpAddr> out;
    for (Family f : {Family::V4, Family::V6}) {
      auto rs = sock_.routes(f);
      if (!rs.ok()) return rs.error().wrap("list routes");
      for (const auto& r : *rs) {
        if (r.protocol == kSluiceRouteProtocol && r.gateway) out.emplace(r.dst, *r.gateway);
      }
    }
    return out;
  }

 private:
  netlink::Socket sock_;
};

}  // namespace

Result<std::unique_ptr<RouteTable>> makeNetlinkRouteTable() {
  auto s = netlink::Socket::open();
  if (!s.ok()) return s.error().wrap("route table");
  return std::unique_ptr<RouteTable>(new NetlinkRouteTable(std::move(*s)));
}

std::vector<Error> NodeRouter::sync(const std::map<std::string, Node>& nodes) {
  std::vector<Error> errors;
  if (!adopted_) {
    // What an earlier daemon installed counts as installed: the diff below keeps what is still
    // wanted and removes the routes of Nodes that went away while no daemon ran.
    if (auto owned = routes_->owned(); owned.ok()) {
      for (const auto& [dst, via] : *owned) installed_.emplace(dst, via);
      adopted_ = true;
    } else {
      errors.push_back(owned.error().wrap("routes of an earlier daemon"));
    }
  }
  std::map<Prefix, IpAddr> want;
  std::map<Prefix, std::string> owner;
  for (const auto& [name, node] : nodes) {
    if (name == localNode_) {
      std::vector<std::string> cidrs;
      for (const auto& c : node.podCidrs) cidrs.push_back(c.toString());
      if (!localCidrs_ || *localCidrs_ != cidrs) {
        if (auto st = onLocalPodCidrs_ ? onLocalPodCidrs_(cidrs) : Status::Ok(); st.ok()) {
          localCidrs_ = cidrs;
        } else {
          errors.push_back(st.error().wrap("Node " + name + ": pod CIDRs"));
        }
      }
      continue;
    }
    for (const auto& cidr : node.podCidrs) {
      const IpAddr* via = nullptr;
      for (const auto& ip : node.internalIps)
        if (ip.family() == cidr.family()) via = &ip;
      if (!via) {
        errors.push_back(makeError("Node " + name + ": no InternalIP of the family of podCIDR " +
                                   cidr.toString() + "; no route"));
        continue;
      }
      auto [it, inserted] = owner.emplace(cidr, name);
      if (!inserted) {
        errors.push_back(makeError("Node " + name + ": podCIDR " + cidr.toString() +
                                   " is also Node " + it->second + "'s; keeping that route"));
        continue;
      }
      want.emplace(cidr, *via);
    }
  }
  for (auto it = installed_.begin(); it != installed_.end();) {
    auto w = want.find(it->first);
    if (w != want.end() && w->second == it->second) {
      ++it;
      continue;
    }
    if (w != want.end()) {
      ++it;  // changed: replaced below
      continue;
    }
    if (auto st = routes_->remove(it->first, it->second); !st.ok()) {
      errors.push_back(st.error());
      ++it;
      continue;
    }
    it = installed_.erase(it);
  }
  for (const auto& [dst, via] : want) {
    auto cur = installed_.find(dst);
    if (cur != installed_.end() && cur->second == via) continue;
    if (auto st = routes_->replace(dst, via); !st.ok()) {
      errors.push_back(st.error().wrap("route " + dst.toString() + " via " + via.toString()));
      continue;
    }
    installed_[dst] = via;
  }
  return errors;
}

}  // namespace sluice::source::kube
