// Builds Ethernet frames for BPF_PROG_TEST_RUN: IPv4/IPv6 with TCP, UDP, SCTP or ICMP/ICMPv6,
// IPv6 extension headers and fragments. Only what the datapath reads is meaningful; L4
// checksums are left zero (nothing on the BPF_PROG_TEST_RUN path checks them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::e2e {

inline constexpr uint8_t kTcp = 6;
inline constexpr uint8_t kUdp = 17;
inline constexpr uint8_t kSctp = 132;
inline constexpr uint8_t kIcmp = 1;
inline constexpr uint8_t kIcmpv6 = 58;

struct PacketSpec {
  std::string src = "10.1.0.20";
  std::string dst = "10.1.0.10";
  uint8_t protocol = kTcp;
  uint16_t srcPort = 40000;
  uint16_t dstPort = 80;
  uint8_t icmpType = 8;  // echo request
  uint8_t icmpCode = 0;
  uint16_t icmpId = 7;
  // An ICMP error: the quoted bytes follow the 8-byte ICMP header (see quote()); icmpId is then
  // the low half of the "unused"/MTU word.
  std::vector<uint8_t> icmpQuoted;
  uint8_t tcpFlags = 0x02;  // SYN
  uint8_t hopLimit = 64;
  std::vector<uint8_t> ipv6ExtHeaders;  // 0 hop-by-hop, 60 destination options, 43 routing
  // Fragments: `fragment` marks the packet as part of a fragmented datagram; offset in 8-byte
  // units (0 = first fragment, which carries the L4 header).
  bool fragment = false;
  uint16_t fragOffset = 0;
  bool moreFragments = false;
  uint32_t fragId = 1;
  size_t payload = 32;
};

std::vector<uint8_t> buildPacket(const PacketSpec& spec);
// What an ICMP error quotes of the packet `spec` describes: its IP header (IPv6: with its
// extension and fragment headers) and the first 8 bytes of its L4 header.
std::vector<uint8_t> quote(const PacketSpec& spec);
std::vector<uint8_t> buildArpRequest();
std::vector<uint8_t> buildEthertype(uint16_t ethertype, size_t payload);

}  // namespace sluice::e2e
