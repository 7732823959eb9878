// The IPAM step of the plugin: built in (`ipam.type: sluice`, allocator + on-disk store) or
// delegated to the IPAM plugin named by `ipam.type` in CNI_PATH, as runtimes expect.
#pragma once

#include <memory>
#include <vector>

#include "cni/spec.h"

namespace sluice::cni::ipam {

struct Address {
  IpAddr ip;
  int subnetLen = 0;  // of the range (informational; the pod gets a /32 or /128)
};

class Ipam {
 public:
  virtual ~Ipam() = default;
  // Idempotent for the same attachment.
  virtual Result<std::vector<Address>> add() = 0;
  // Idempotent; succeeds when nothing is reserved.
  virtual Status del() = 0;
  // Fails (kErrCheckFailed) unless the attachment holds exactly `ips`.
  virtual Status check(const std::vector<IpAddr>& ips) = 0;
  virtual Status gc() = 0;
  virtual Status status() = 0;
};

std::unique_ptr<Ipam> makeIpam(const NetConf& conf, const Env& env);

}  // namespace sluice::cni::ipam
