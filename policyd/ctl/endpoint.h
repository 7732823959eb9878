// Turning the user's --from/--to into flow ends, and choosing the addresses a connection between
// two ends would use.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"
#include "common/result.h"
#include "policyd/ctl/args.h"
#include "policyd/engine/evaluator.h"

namespace sluice::ctl {

// One end as the user named it: a pod (by NS/POD, or by one of its addresses), or a bare
// address outside the cluster's pods.
struct EndpointRef {
  const model::Pod* pod = nullptr;
  std::optional<IpAddr> ip;  // set when the user gave an address

  std::string describe() const;  // "ns/pod" or "203.0.113.7"
};

// "ns/pod" must name a known pod; an IP that belongs to a (non-hostNetwork) pod is that pod;
// any other IP is a bare address. Errors name the argument ("--from").
Result<EndpointRef> resolveEndpoint(const engine::Evaluator& ev, const std::string& text,
                                    const std::string& flag);

// The addresses a connection from `src` to `dst` uses. An end the user gave as an address keeps
// it. Otherwise both ends use IPv4 when both have an IPv4 address, else IPv6 when both have one
// (so the source uses its address of the destination's family, preferring IPv4); when the
// families do not meet, each end uses its first address. A pod without addresses has none, and
// then no ipBlock can match it.
std::pair<std::optional<IpAddr>, std::optional<IpAddr>> pairAddresses(const EndpointRef& src,
                                                                      const EndpointRef& dst);

// The same choice over precomputed per-pod candidates (used by the matrix, per pair).
struct AddressSet {
  std::optional<IpAddr> v4;
  std::optional<IpAddr> v6;
  std::optional<IpAddr> first;

  static AddressSet of(const std::vector<IpAddr>& ips);
};
std::pair<std::optional<IpAddr>, std::optional<IpAddr>> pairAddresses(const AddressSet& src,
                                                                      const AddressSet& dst);

// The port number a query asks about towards `dst`: the number itself, or the named port
// resolved against the destination pod's container ports. nullopt when the name does not
// resolve (or the destination is not a pod).
std::optional<uint16_t> resolveQueryPort(const PortQuery& q, const model::Pod* dst);

}  // namespace sluice::ctl
