// Drop events (the flow log) as the daemon and sluicectl see them, decoded from the ring buffer
// records the tc programs write (struct sluice_drop_event in bpf/sluice_abi.h). Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "bpf/sluice_abi.h"
#include "common/ip.h"
#include "policyd/compiler/ir.h"

namespace sluice::datapath::bpf {

enum class DropReason : uint8_t {
  None = SLUICE_DROP_NONE,
  NoEndpoint = SLUICE_DROP_NO_ENDPOINT,
  NotReady = SLUICE_DROP_NOT_READY,
  Policy = SLUICE_DROP_POLICY,
  PolicyRevoked = SLUICE_DROP_POLICY_REVOKED,
  FragmentWithoutFirst = SLUICE_DROP_FRAG_NO_FIRST,
  FragmentDenied = SLUICE_DROP_FRAG_DENIED,
  Malformed = SLUICE_DROP_MALFORMED,
  UnsupportedL3 = SLUICE_DROP_UNSUPPORTED_L3,
  EventsLost = SLUICE_DROP_EVENTS_LOST,
  Spoofed = SLUICE_DROP_SPOOFED,
  IcmpUnrelated = SLUICE_DROP_ICMP_UNRELATED,
  NdInvalid = SLUICE_DROP_ND_INVALID,
  ConntrackFull = SLUICE_DROP_CT_FULL,
};
inline constexpr int kDropReasonCount = SLUICE_DROP_REASON_MAX;

// Stable names for logs and metrics labels ("policy", "not-ready", "spoofed", ...).
std::string_view dropReasonName(DropReason reason);

struct DropEvent {
  uint64_t timestampNs = 0;           // CLOCK_MONOTONIC (bpf_ktime_get_ns)
  compiler::EndpointId endpoint = 0;  // 0 when the interface is not an endpoint
  int ifindex = 0;
  compiler::Direction direction = compiler::Direction::Ingress;
  IpAddr src;
  IpAddr dst;
  uint16_t srcPort = 0;  // host order; 0 for protocols without ports
  uint16_t dstPort = 0;
  uint8_t protocol = 0;
  compiler::ClassId peerClass = 0;       // set for policy drops
  DropReason reason = DropReason::None;  // None for an allowed flow
  bool allowed = false;                  // the first packet of a new flow, not a drop
  compiler::RuleId rule = 0;             // allowed flows: the admitting rule
};

DropEvent decodeDropEvent(const sluice_drop_event& raw);

// One line, object first: "drop endpoint=3 direction=egress 10.0.0.2:4000 -> 10.0.0.9:80
// proto=6 class=17 reason=policy".
std::string toString(const DropEvent& e);

}  // namespace sluice::datapath::bpf
