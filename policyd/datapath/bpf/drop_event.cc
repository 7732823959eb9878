#include "policyd/datapath/bpf/drop_event.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>

namespace sluice::datapath::bpf {

std::string_view dropReasonName(DropReason reason) {
  switch (reason) {
    case DropReason::None:
      return "none";
    case DropReason::NoEndpoint:
      return "no-endpoint";
    case DropReason::NotReady:
      return "not-ready";
    case DropReason::Policy:
      return "policy";
    case DropReason::PolicyRevoked:
      return "policy-revoked";
    case DropReason::FragmentWithoutFirst:
      return "fragment-without-first";
    case DropReason::FragmentDenied:
      return "fragment-denied";
    case DropReason::Malformed:
      return "malformed";
    case DropReason::UnsupportedL3:
      return "unsupported-l3";
    case DropReason::EventsLost:
      return "events-lost";
    case DropReason::Spoofed:
      return "spoofed";
    case DropReason::IcmpUnrelated:
      return "icmp-unrelated";
    case DropReason::NdInvalid:
      return "nd-invalid";
    case DropReason::ConntrackFull:
      return "ct-full";
  }
  return "unknown";
}

namespace {
IpAddr decodeAddr(const uint8_t (&bytes)[16], bool v4) {
  if (v4) {
    return IpAddr::v4((uint32_t{bytes[12]} << 24) | (uint32_t{bytes[13]} << 16) |
                      (uint32_t{bytes[14]} << 8) | bytes[15]);
  }
  std::array<uint8_t, 16> a;
  std::memcpy(a.data(), bytes, 16);
  return IpAddr::v6(a);
}
}  // namespace

DropEvent decodeDropEvent(const sluice_drop_event& raw) {
  DropEvent e;
  e.timestampNs = raw.timestamp_ns;
  e.endpoint = raw.endpoint;
  e.ifindex = static_cast<int>(raw.ifindex);
  e.direction = raw.direction == SLUICE_DIR_EGRESS ? compiler::Direction::Egress
                                                   : compiler::Direction::Ingress;
  const bool v4 = raw.family == 4;
  e.src = decodeAddr(raw.src, v4);
  e.dst = decodeAddr(raw.dst, v4);
  e.srcPort = ntohs(raw.sport);
  e.dstPort = ntohs(raw.dport);
  e.protocol = raw.protocol;
  e.peerClass = raw.peer_class;
  e.reason = raw.reason < kDropReasonCount ? static_cast<DropReason>(raw.reason) : DropReason::None;
  e.allowed = raw.verdict == SLUICE_VERDICT_ALLOWED;
  e.rule = raw.rule;
  return e;
}

std::string toString(const DropEvent& e) {
  auto hostPort = [](const IpAddr& a, uint16_t port) {
    std::string s = a.isV4() ? a.toString() : "[" + a.toString() + "]";
    return s + ":" + std::to_string(port);
  };
  return std::string(e.allowed ? "allow" : "drop") + " endpoint=" + std::to_string(e.endpoint) +
         " ifindex=" + std::to_string(e.ifindex) +
         " direction=" + (e.direction == compiler::Direction::Egress ? "egress" : "ingress") + " " +
         hostPort(e.src, e.srcPort) + " -> " + hostPort(e.dst, e.dstPort) +
         " proto=" + std::to_string(e.protocol) + " class=" + std::to_string(e.peerClass) +
         " reason=" + std::string(dropReasonName(e.reason));
}

}  // namespace sluice::datapath::bpf
