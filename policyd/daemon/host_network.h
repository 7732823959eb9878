// What the daemon needs to know about its own network namespace (the "node"): its addresses
// (traffic from them to local pods is always allowed: kubelet probes) and whether an endpoint's
// host veth still exists. An interface so tests run without touching the kernel.
#pragma once

#include <string>
#include <vector>

#include "common/ip.h"
#include "common/result.h"

namespace sluice::daemon {

class HostNetwork {
 public:
  virtual ~HostNetwork() = default;
  // Every address of every interface in this network namespace, sorted, without duplicates.
  virtual Result<std::vector<IpAddr>> addresses() = 0;
  // True when a link named `ifname` exists (and, when ifindex > 0, has that index: a veth of the
  // same name with another index is a different, newer link).
  virtual bool linkExists(const std::string& ifname, int ifindex) = 0;
};

// getifaddrs(3) and if_nametoindex(3) in the calling thread's network namespace.
class SystemHostNetwork final : public HostNetwork {
 public:
  Result<std::vector<IpAddr>> addresses() override;
  bool linkExists(const std::string& ifname, int ifindex) override;
};

}  // namespace sluice::daemon
