// Dropped packets as flow events, from the nflog group the lowering logs drops to (lowering.h:
// every drop is logged, under the shared `drop_log` rate limit, with the prefix
// "sluice:<reason>:<direction>:<endpoint>: "). The reader binds the group on an nfnetlink socket
// (libmnl, NFNL_SUBSYS_ULOG) in the network namespace of the thread that opens it, asks for the
// first kNflogCopyBytes of each packet, and decodes the addresses and ports from them.
//
// The parsing below is pure (no sockets), so unit tests feed it crafted prefixes, packets and
// netlink messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"
#include "policyd/datapath/flow_event.h"

namespace sluice::datapath::nft {

// Enough for an IPv6 header, a few extension headers and the ports.
inline constexpr uint32_t kNflogCopyBytes = 128;

// "sluice:policy:ingress:12: " -> {policy, Ingress, 12}. nullopt for anything else (another
// owner's log rule on the same group, a malformed prefix).
struct LogPrefix {
  std::string reason;
  compiler::Direction direction = compiler::Direction::Ingress;
  compiler::EndpointId endpoint = 0;
};
std::string formatLogPrefix(const std::string& reason, compiler::Direction d,
                            compiler::EndpointId endpoint);
std::optional<LogPrefix> parseLogPrefix(std::string_view prefix);

// Addresses, protocol and ports of an IP packet (network header first). Ports stay 0 for
// protocols without ports and for fragments that do not carry the transport header.
struct PacketTuple {
  IpAddr src, dst;
  uint8_t protocol = 0;
  uint16_t srcPort = 0, dstPort = 0;
};
std::optional<PacketTuple> parsePacket(std::span<const uint8_t> packet);

// One NFULNL_MSG_PACKET netlink message (header included) as a FlowEvent; nullopt when it is
// not one of ours. `nowWallNs` stands in when the message carries no timestamp.
std::optional<FlowEvent> parseNflogMessage(std::span<const uint8_t> message, int64_t nowWallNs);

// Binds nflog group `group` in the calling thread's network namespace. One binder per group and
// namespace (the kernel refuses a second): the daemon's.
Result<std::unique_ptr<FlowEventReader>> openNflogReader(uint16_t group);

}  // namespace sluice::datapath::nft
