// Built-in IPAM configuration: host-local's keys (`ranges` as a list of range sets, each range
// with subnet/rangeStart/rangeEnd/gateway; `dataDir`) plus `usePodCidr`/`podCidrFile`, where
// the node's podCIDRs come from a file the policy daemon writes.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ip.h"
#include "common/result.h"

namespace sluice::cni::ipam {


// One allocatable span inside a subnet. `start`..`end` are inclusive and already exclude the
// network address, the IPv4 broadcast address and (where one is set) the gateway is skipped
// during allocation.
struct Range {
  Prefix subnet;
  IpAddr start;
  IpAddr end;
  std::optional<IpAddr> gateway;
  bool contains(const IpAddr& a) const;
  U128 size() const { return toU128(end) - toU128(start) + 1; }
};

// A pod gets one address from each range set; ranges inside a set are alternatives (for
// example two disjoint /24s of one family).
struct RangeSet {
  std::vector<Range> ranges;
  Family family() const { return ranges.front().subnet.family(); }
  bool contains(const IpAddr& a) const;
  std::string describe() const;
};

struct IpamConfig {
  std::vector<RangeSet> rangeSets;
  std::string dataDir = "/var/lib/cni/networks";
};

using ReadFile = std::function<Result<std::string>(const std::string& path)>;

// Decodes the "ipam" object. Errors carry kErrInvalidConfig and name the field, e.g.
// "ipam.ranges[0][1].rangeStart: 10.9.0.1 is outside subnet 10.1.0.0/24".
Result<IpamConfig> parseIpamConfig(const nlohmann::json& ipam, const ReadFile& readFile);
// Reads a whole file (for usePodCidr); errors carry errno.
Result<std::string> readWholeFile(const std::string& path);

}  // namespace sluice::cni::ipam
