#include "policyd/daemon/host_network.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

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

}  // namespace sluice::daemon
