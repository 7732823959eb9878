// Address allocation policy: one address per range set, round-robin from each set's cursor so
// freed addresses are not reused at once (a stale conntrack entry or peer cache would otherwise
// hit the new pod). An ADD normally probes one candidate; only a nearly full set probes more.
#pragma once

#include <vector>

#include "cni/ipam/config.h"
#include "cni/ipam/store.h"

namespace sluice::cni::ipam {

struct Allocation {
  IpAddr address;
  Prefix subnet;                  // of the range it came from
  std::optional<IpAddr> gateway;  // the range's configured gateway, if any
};

class Allocator {
 public:
  Allocator(const IpamConfig& config, Store& store) : config_(config), store_(store) {}

  // Caller holds the store lock. Returns the attachment's existing addresses if it has any
  // (ADD is idempotent), else reserves one per range set; `requested` (runtimeConfig.ips) pins
  // the address of the set containing it. Exhaustion: kErrAddressesExhausted naming the set.
  Result<std::vector<Allocation>> allocate(const Attachment& a, const std::vector<IpAddr>& requested);

 private:
  Allocation describe(const IpAddr& ip) const;
  Result<IpAddr> nextFree(size_t setIndex, const std::vector<IpAddr>& taken);

  const IpamConfig& config_;
  Store& store_;
};

}  // namespace sluice::cni::ipam
