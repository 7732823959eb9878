#include "policyd/datapath/nft/nflog.h"

#include <arpa/inet.h>
#include <endian.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>

#include <array>
#include <charconv>
#include <cstring>

namespace sluice::datapath::nft {

namespace {

constexpr std::string_view kPrefixHead = "sluice:";
constexpr uint8_t kTcp = 6, kUdp = 17, kSctp = 132;

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

bool hasPorts(uint8_t proto) { return proto == kTcp || proto == kUdp || proto == kSctp; }

struct Attrs {
  std::array<const nlattr*, NFULA_MAX + 1> tb{};
};

int collectAttr(const nlattr* attr, void* data) {
  auto* a = static_cast<Attrs*>(data);
  const int type = mnl_attr_get_type(attr);
  if (mnl_attr_type_valid(attr, NFULA_MAX) < 0) return MNL_CB_OK;  // newer kernel: ignore
  a->tb[type] = attr;
  return MNL_CB_OK;
}

}  // namespace

std::string formatLogPrefix(const std::string& reason, compiler::Direction d,
                            compiler::EndpointId endpoint) {
  return std::string(kPrefixHead) + reason + ":" +
         (d == compiler::Direction::Ingress ? "ingress" : "egress") + ":" +
         std::to_string(endpoint) + ": ";
}

std::optional<LogPrefix> parseLogPrefix(std::string_view p) {
  if (!p.starts_with(kPrefixHead)) return std::nullopt;
  p.remove_prefix(kPrefixHead.size());
  while (!p.empty() && (p.back() == ' ' || p.back() == '\0')) p.remove_suffix(1);
  if (!p.ends_with(':')) return std::nullopt;
  p.remove_suffix(1);
  // reason:direction:endpoint
  const size_t a = p.find(':');
  if (a == std::string_view::npos || a == 0) return std::nullopt;
  const size_t b = p.find(':', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  LogPrefix out;
  out.reason = std::string(p.substr(0, a));
  const std::string_view dir = p.substr(a + 1, b - a - 1);
  if (dir == "ingress") {
    out.direction = compiler::Direction::Ingress;
  } else if (dir == "egress") {
    out.direction = compiler::Direction::Egress;
  } else {
    return std::nullopt;
  }
  const std::string_view id = p.substr(b + 1);
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), out.endpoint);
  if (id.empty() || ec != std::errc() || end != id.data() + id.size()) return std::nullopt;
  return out;
}

std::optional<PacketTuple> parsePacket(std::span<const uint8_t> pkt) {
  if (pkt.empty()) return std::nullopt;
  PacketTuple t;
  size_t l4 = 0;
  bool firstFragment = true;
  const uint8_t version = pkt[0] >> 4;
  if (version == 4) {
    if (pkt.size() < 20) return std::nullopt;
    const size_t ihl = static_cast<size_t>(pkt[0] & 0x0f) * 4;
    if (ihl < 20 || pkt.size() < ihl) return std::nullopt;
    t.protocol = pkt[9];
    uint32_t s = 0, d = 0;
    std::memcpy(&s, &pkt[12], 4);
    std::memcpy(&d, &pkt[16], 4);
    t.src = IpAddr::v4(ntohl(s));
    t.dst = IpAddr::v4(ntohl(d));
    firstFragment = (be16(&pkt[6]) & 0x1fff) == 0;  // fragment offset 0
    l4 = ihl;
  } else if (version == 6) {
    if (pkt.size() < 40) return std::nullopt;
    std::array<uint8_t, 16> s{}, d{};
    std::memcpy(s.data(), &pkt[8], 16);
    std::memcpy(d.data(), &pkt[24], 16);
    t.src = IpAddr::v6(s);
    t.dst = IpAddr::v6(d);
    uint8_t next = pkt[6];
    size_t off = 40;
    // Extension headers before the transport header (bounded: each one advances `off`).
    for (int i = 0; i < 8; ++i) {
      if (next == 0 || next == 43 || next == 60) {  // hop-by-hop, routing, destination options
        if (pkt.size() < off + 8) break;
        next = pkt[off];
        off += (static_cast<size_t>(pkt[off + 1]) + 1) * 8;
      } else if (next == 44) {  // fragment
        if (pkt.size() < off + 8) break;
        firstFragment = (be16(&pkt[off + 2]) & 0xfff8) == 0;
        next = pkt[off];
        off += 8;
      } else {
        break;
      }
    }
    t.protocol = next;
    l4 = off;
  } else {
    return std::nullopt;
  }
  if (hasPorts(t.protocol) && firstFragment && pkt.size() >= l4 + 4) {
    t.srcPort = be16(&pkt[l4]);
    t.dstPort = be16(&pkt[l4 + 2]);
  }
  return t;
}

std::optional<FlowEvent> parseNflogMessage(std::span<const uint8_t> message, int64_t nowWallNs) {
  if (message.size() < sizeof(nlmsghdr) + sizeof(nfgenmsg)) return std::nullopt;
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(message.data());
  if (nlh->nlmsg_len > message.size() || nlh->nlmsg_len < sizeof(nlmsghdr) + sizeof(nfgenmsg)) {
    return std::nullopt;
  }
  if (nlh->nlmsg_type != ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) return std::nullopt;
  Attrs a;
  if (mnl_attr_parse(nlh, sizeof(nfgenmsg), collectAttr, &a) != MNL_CB_OK) return std::nullopt;
  if (!a.tb[NFULA_PREFIX] || !a.tb[NFULA_PAYLOAD]) return std::nullopt;
  const auto* prefixData = static_cast<const char*>(mnl_attr_get_payload(a.tb[NFULA_PREFIX]));
  const std::string_view prefix(prefixData,
                                strnlen(prefixData, mnl_attr_get_payload_len(a.tb[NFULA_PREFIX])));
  auto tag = parseLogPrefix(prefix);
  if (!tag) return std::nullopt;
  const auto* payload = static_cast<const uint8_t*>(mnl_attr_get_payload(a.tb[NFULA_PAYLOAD]));
  auto tuple = parsePacket({payload, mnl_attr_get_payload_len(a.tb[NFULA_PAYLOAD])});
  if (!tuple) return std::nullopt;

  FlowEvent e;
  e.wallNs = nowWallNs;
  if (const nlattr* ts = a.tb[NFULA_TIMESTAMP];
      ts && mnl_attr_get_payload_len(ts) >= sizeof(nfulnl_msg_packet_timestamp)) {
    nfulnl_msg_packet_timestamp t{};
    std::memcpy(&t, mnl_attr_get_payload(ts), sizeof(t));
    e.wallNs = static_cast<int64_t>(be64toh(t.sec)) * 1000000000 +
               static_cast<int64_t>(be64toh(t.usec)) * 1000;
  }
  e.endpoint = tag->endpoint;
  e.direction = tag->direction;
  // The pod's own interface: packets it sends come in on it (egress), packets to it go out.
  const int attr =
      tag->direction == compiler::Direction::Egress ? NFULA_IFINDEX_INDEV : NFULA_IFINDEX_OUTDEV;
  if (const nlattr* ifx = a.tb[attr]; ifx && mnl_attr_get_payload_len(ifx) >= 4) {
    e.ifindex = static_cast<int>(ntohl(mnl_attr_get_u32(ifx)));
  }
  e.src = tuple->src;
  e.dst = tuple->dst;
  e.protocol = tuple->protocol;
  e.srcPort = tuple->srcPort;
  e.dstPort = tuple->dstPort;
  e.verdict = FlowVerdict::Denied;
  e.reason = tag->reason;
  return e;
}

}  // namespace sluice::datapath::nft
