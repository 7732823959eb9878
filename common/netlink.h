// A small rtnetlink client (libmnl) for links, addresses, routes and neighbours. A Socket acts
// on the network namespace it was opened in, whatever namespace the thread is in later, so the
// CNI plugin opens one socket per namespace and never has to stay inside the pod's namespace.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"
#include "common/result.h"

struct mnl_socket;

namespace sluice::netlink {

using Mac = std::array<uint8_t, 6>;
std::string macToString(const Mac& m);
Result<Mac> parseMac(std::string_view text);

struct LinkInfo {
  int index = 0;
  std::string name;
  std::string kind;   // "veth", "dummy", ... (empty when the kernel reports none)
  std::string alias;  // IFLA_IFALIAS
  Mac mac{};
  int mtu = 0;
  bool up = false;
  int peerIndex = 0;  // IFLA_LINK: for a veth, the peer's ifindex (in its own namespace)
};

struct AddrInfo {
  int index = 0;
  Prefix prefix;  // address with its prefix length (host bits kept in addr via `address`)
  IpAddr address;
};

struct RouteInfo {
  Prefix dst;
  std::optional<IpAddr> gateway;
  int oif = 0;
  uint8_t table = 0;
  uint8_t protocol = 0;  // RTPROT_*: who installed it
};

struct NeighInfo {
  int index = 0;
  IpAddr address;
  std::optional<Mac> mac;
  uint16_t state = 0;  // NUD_*
};

struct VethSpec {
  std::string name;      // this namespace's end
  std::string peerName;  // created directly in peerNetnsFd (avoids a rename race in the pod)
  int peerNetnsFd = -1;
  int mtu = 0;  // 0 = kernel default
  std::optional<Mac> mac;
  std::optional<Mac> peerMac;
};

struct RouteSpec {
  Prefix dst;
  std::optional<IpAddr> gateway;
  int oif = 0;
  bool onlink = false;  // gateway is reachable on `oif` without a covering route
  bool scopeLink = false;
  // RTPROT_*; 0 means RTPROT_STATIC. A daemon tags its routes with a protocol of its own so it can
  // tell them from an administrator's after a restart.
  uint8_t protocol = 0;
};

class Socket {
 public:
  // Opens a NETLINK_ROUTE socket in the calling thread's current network namespace.
  static Result<Socket> open();
  Socket(Socket&&) noexcept;
  Socket& operator=(Socket&&) noexcept;
  ~Socket();

  // Errors from the kernel carry errno in Error::code (ENODEV, EEXIST, ...).
  Result<LinkInfo> link(const std::string& name);
  Result<LinkInfo> link(int index);
  Result<std::vector<LinkInfo>> links();
  Status createVeth(const VethSpec& spec);
  Status setLinkUp(int index, bool up);
  Status setLinkAlias(int index, const std::string& alias);
  Status setLinkMtu(int index, int mtu);
  Status deleteLink(int index);

  Status addAddress(int index, const Prefix& withAddr, const IpAddr& address, bool noDad);
  Result<std::vector<AddrInfo>> addresses(int index);  // index 0 = all

  Status addRoute(const RouteSpec& r);  // replaces an existing route to the same dst
  Status deleteRoute(const RouteSpec& r);
  Result<std::vector<RouteInfo>> routes(Family f);  // main table only

  Status setNeighbour(int index, const IpAddr& addr, const Mac& mac, uint16_t state);
  Result<std::vector<NeighInfo>> neighbours(int index, Family f);

 private:
  explicit Socket(mnl_socket* s);
  struct Deleter {
    void operator()(mnl_socket* s) const;
  };
  // Sends one request and waits for its ACK, or collects a dump into `cb`.
  Status request(void* msgBuf, void (*cb)(const void* nlh, void* data), void* data);
  std::unique_ptr<mnl_socket, Deleter> sock_;
  uint32_t seq_ = 0;
  uint32_t portId_ = 0;
};

}  // namespace sluice::netlink
