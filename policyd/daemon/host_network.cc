#include "policyd/daemon/host_network.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "common/netlink.h"
#include "common/netns.h"

namespace sluice::daemon {

Result<std::vector<IpAddr>> SystemHostNetwork::addresses() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return makeError(std::string("getifaddrs: ") + std::strerror(errno), errno);
  }
  std::vector<IpAddr> out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    if (a->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      out.push_back(IpAddr::v4(ntohl(sin->sin_addr.s_addr)));
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);
      std::array<uint8_t, 16> bytes{};
      std::memcpy(bytes.data(), sin6->sin6_addr.s6_addr, 16);
      out.push_back(IpAddr::v6(bytes));
    }
  }
  ::freeifaddrs(list);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool SystemHostNetwork::linkExists(const std::string& ifname, int ifindex) {
  if (ifname.empty()) return false;
  unsigned idx = ::if_nametoindex(ifname.c_str());
  if (idx == 0) return false;
  return ifindex <= 0 || static_cast<int>(idx) == ifindex;
}

Status SystemHostNetwork::checkPodVeth(const std::string& hostVeth, int hostIfindex,
                                       const std::string& netnsPath, const std::string& podIfname) {
  const std::string what =
      "interface " + (hostVeth.empty() ? "#" + std::to_string(hostIfindex) : hostVeth);
  SLUICE_ASSIGN_OR_RETURN(auto hostNl, netlink::Socket::open());
  auto host = hostVeth.empty() ? hostNl.link(hostIfindex) : hostNl.link(hostVeth);
  if (!host.ok()) return host.error().wrap(what);
  if (hostIfindex > 0 && host->index != hostIfindex) {
    return makeError(what + ": has index " + std::to_string(host->index) + ", the request says " +
                     std::to_string(hostIfindex));
  }
  if (host->kind != "veth") {
    return makeError(what + ": not a veth (kind \"" + host->kind +
                     "\"); only a pod's host veth "
                     "is accepted");
  }
  if (host->peerIndex <= 0) return makeError(what + ": veth without a peer");
  if (netnsPath.empty()) return makeError(what + ": the request names no pod netns");
  // A veth pair with both ends in the node is no pod's: naming the node's own namespace as the
  // "pod" netns would otherwise pass the peer check below.
  struct stat own {};
  struct stat pod {};
  if (::stat("/proc/thread-self/ns/net", &own) == 0 && ::stat(netnsPath.c_str(), &pod) == 0 &&
      own.st_dev == pod.st_dev && own.st_ino == pod.st_ino) {
    return makeError(what + ": netns " + netnsPath + " is the node's own network namespace");
  }
  // The peer index is only meaningful inside the peer's namespace: look it up there, and require
  // that the link found is a veth pointing back at our end (an unrelated link that happens to
  // have the same index there does not).
  Result<netlink::Socket> podNl = makeError("unset");
  {
    auto guard = NetnsGuard::enter(netnsPath);
    if (!guard.ok()) return guard.error().wrap(what + ": pod netns " + netnsPath);
    podNl = netlink::Socket::open();
  }
  if (!podNl.ok()) return podNl.error().wrap(what + ": pod netns " + netnsPath);
  auto peer = podNl->link(host->peerIndex);
  if (!peer.ok() || peer->kind != "veth" || peer->peerIndex != host->index) {
    return makeError(what + ": its veth peer is not in pod netns " + netnsPath);
  }
  if (!podIfname.empty() && peer->name != podIfname) {
    return makeError(what + ": its peer in pod netns " + netnsPath + " is " + peer->name +
                     ", the request says " + podIfname);
  }
  return Status::Ok();
}

Result<HostLink> SystemHostNetwork::link(int ifindex) {
  SLUICE_ASSIGN_OR_RETURN(auto nl, netlink::Socket::open());
  auto l = nl.link(ifindex);
  if (!l.ok()) return l.error().wrap("link #" + std::to_string(ifindex));
  HostLink out;
  out.index = l->index;
  out.name = l->name;
  out.alias = l->alias;
  for (Family f : {Family::V4, Family::V6}) {
    auto routes = nl.routes(f);
    if (!routes.ok()) return routes.error().wrap("routes of " + l->name);
    for (const auto& r : *routes) {
      if (r.oif != ifindex || r.gateway || r.dst.len() != r.dst.addr().bits()) continue;
      out.routedAddresses.push_back(r.dst.addr());
    }
  }
  std::sort(out.routedAddresses.begin(), out.routedAddresses.end());
  return out;
}

bool parseHostVethAlias(const std::string& alias, std::string& ifname, std::string& containerId) {
  // Interface names and container ids never contain ':' (the kernel and the CNI spec forbid
  // it); a network name may, so split from the right.
  constexpr std::string_view kPrefix = "sluice:";
  if (!alias.starts_with(kPrefix)) return false;
  auto last = alias.rfind(':');
  if (last == std::string::npos || last + 1 >= alias.size()) return false;
  auto before = alias.rfind(':', last - 1);
  if (before == std::string::npos || before < kPrefix.size() || before + 1 >= last) return false;
  ifname = alias.substr(before + 1, last - before - 1);
  containerId = alias.substr(last + 1);
  return true;
}

}  // namespace sluice::daemon
