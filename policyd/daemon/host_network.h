// What the daemon needs to know about its own network namespace (the "node"): its addresses
// (traffic from them to local pods is always allowed: kubelet probes), whether an endpoint's
// host veth still exists, whether an interface an ADD names really is a pod's host veth, and
// what a host veth says about its pod (registry recovery). An interface so tests run without
// touching the kernel.
#pragma once

#include <string>
#include <vector>

#include "common/ip.h"
#include "common/result.h"

namespace sluice::daemon {

// A link in the node namespace, as registry recovery reads it.
struct HostLink {
  int index = 0;
  std::string name;
  std::string alias;  // the CNI plugin's "sluice:<network>:<ifname>:<containerId>"
  std::vector<IpAddr> routedAddresses;  // host routes (/32, /128) through this link: the pod's
};

class HostNetwork {
 public:
  virtual ~HostNetwork() = default;
  // Every address of every interface in this network namespace, sorted, without duplicates.
  virtual Result<std::vector<IpAddr>> addresses() = 0;
  // True when a link named `ifname` exists (and, when ifindex > 0, has that index: a veth of the
  // same name with another index is a different, newer link).
  virtual bool linkExists(const std::string& ifname, int ifindex) = 0;
  // Ok only when `hostVeth` (with index `hostIfindex` when > 0) is a veth whose peer lives in
  // the network namespace at `netnsPath` (and is named `podIfname` there, when given). The
  // error names the interface and what is wrong with it.
  virtual Status checkPodVeth(const std::string& hostVeth, int hostIfindex,
                              const std::string& netnsPath, const std::string& podIfname) = 0;
  // The link with index `ifindex`.
  virtual Result<HostLink> link(int ifindex) = 0;
};

// getifaddrs(3), if_nametoindex(3) and rtnetlink in the calling thread's network namespace.
class SystemHostNetwork final : public HostNetwork {
 public:
  Result<std::vector<IpAddr>> addresses() override;
  bool linkExists(const std::string& ifname, int ifindex) override;
  Status checkPodVeth(const std::string& hostVeth, int hostIfindex, const std::string& netnsPath,
                      const std::string& podIfname) override;
  Result<HostLink> link(int ifindex) override;
};

// Splits a host veth alias written by the CNI plugin ("sluice:<network>:<ifname>:<containerId>")
// into ifname and container id; false when it is not one.
bool parseHostVethAlias(const std::string& alias, std::string& ifname, std::string& containerId);

}  // namespace sluice::daemon
