// This node's pod CIDRs and the routes to every other node's pods (direct routing: each remote
// podCIDR via that node's InternalIP of the same family), kept in step with the Node objects.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/ip.h"
#include "common/result.h"
#include "policyd/source/kube/objects.h"

namespace sluice::source::kube {

// The routing protocol number the daemon tags its routes with (`ip route show proto 172`), so a
// restarted daemon finds the routes an earlier one installed, including those of Nodes deleted
// while it was down, and never touches anyone else's.
inline constexpr uint8_t kSluiceRouteProtocol = 172;

// Where routes go. The real one is netlink in the daemon's network namespace; tests use a fake.
class RouteTable {
 public:
  virtual ~RouteTable() = default;
  virtual Status replace(const Prefix& dst, const IpAddr& via) = 0;
  virtual Status remove(const Prefix& dst, const IpAddr& via) = 0;
  // The routes this table's owner installed (an earlier daemon's included): dst -> via.
  virtual Result<std::map<Prefix, IpAddr>> owned() = 0;
};

// Netlink (libmnl) on a socket opened in the calling thread's network namespace.
Result<std::unique_ptr<RouteTable>> makeNetlinkRouteTable();

class NodeRouter {
 public:
  using PodCidrsSink = std::function<Status(const std::vector<std::string>& cidrs)>;

  NodeRouter(std::string localNode, RouteTable* routes, PodCidrsSink onLocalPodCidrs)
      : localNode_(std::move(localNode)),
        routes_(routes),
        onLocalPodCidrs_(std::move(onLocalPodCidrs)) {}

  // Brings routes and the local pod CIDRs in line with `nodes` (every Node: call it only once the
  // Nodes are listed). The first sync adopts the routes an earlier daemon left (RouteTable::owned)
  // and removes those no Node wants any more. Errors are returned (each names the node and route)
  // and retried on the next sync.
  std::vector<Error> sync(const std::map<std::string, Node>& nodes);

  // dst -> via, as installed.
  const std::map<Prefix, IpAddr>& installed() const { return installed_; }

 private:
  std::string localNode_;
  RouteTable* routes_;
  PodCidrsSink onLocalPodCidrs_;
  std::map<Prefix, IpAddr> installed_;
  std::optional<std::vector<std::string>> localCidrs_;
  bool adopted_ = false;
};

}  // namespace sluice::source::kube
