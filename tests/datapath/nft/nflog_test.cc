// nflog decoding: the log prefixes the lowering writes, IP packets of both families, and whole
// NFULNL_MSG_PACKET netlink messages built here as the kernel sends them.
#include "policyd/datapath/nft/nflog.h"

#include <arpa/inet.h>
#include <endian.h>
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

namespace sluice::datapath::nft {
namespace {

using compiler::Direction;

std::vector<uint8_t> ipv4Tcp(const char* src, const char* dst, uint16_t sport, uint16_t dport,
                             uint16_t fragField = 0) {
  std::vector<uint8_t> p(40, 0);
  p[0] = 0x45;
  p[3] = 40;
  p[6] = static_cast<uint8_t>(fragField >> 8);
  p[7] = static_cast<uint8_t>(fragField);
  p[8] = 64;
  p[9] = 6;
  inet_pton(AF_INET, src, &p[12]);
  inet_pton(AF_INET, dst, &p[16]);
  p[20] = static_cast<uint8_t>(sport >> 8);
  p[21] = static_cast<uint8_t>(sport);
  p[22] = static_cast<uint8_t>(dport >> 8);
  p[23] = static_cast<uint8_t>(dport);
  return p;
}

// IPv6 with a hop-by-hop options header before UDP.
std::vector<uint8_t> ipv6HopByHopUdp(const char* src, const char* dst, uint16_t sport,
                                     uint16_t dport) {
  std::vector<uint8_t> p(40 + 8 + 8, 0);
  p[0] = 0x60;
  p[6] = 0;  // next: hop-by-hop
  p[7] = 64;
  inet_pton(AF_INET6, src, &p[8]);
  inet_pton(AF_INET6, dst, &p[24]);
  p[40] = 17;  // next: UDP
  p[41] = 0;   // length: 8 bytes
  p[48] = static_cast<uint8_t>(sport >> 8);
  p[49] = static_cast<uint8_t>(sport);
  p[50] = static_cast<uint8_t>(dport >> 8);
  p[51] = static_cast<uint8_t>(dport);
  return p;
}

struct MessageSpec {
  std::string prefix;
  std::vector<uint8_t> payload;
  uint32_t indev = 0, outdev = 0;
  bool timestamp = false;
  uint16_t type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
};

std::vector<uint8_t> message(const MessageSpec& m) {
  std::vector<uint8_t> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = m.type;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_INET;
  nfg->res_id = htons(7);
  if (m.indev) mnl_attr_put_u32(nlh, NFULA_IFINDEX_INDEV, htonl(m.indev));
  if (m.outdev) mnl_attr_put_u32(nlh, NFULA_IFINDEX_OUTDEV, htonl(m.outdev));
  if (m.timestamp) {
    nfulnl_msg_packet_timestamp ts{htobe64(1700000000), htobe64(250000)};
    mnl_attr_put(nlh, NFULA_TIMESTAMP, sizeof(ts), &ts);
  }
  if (!m.prefix.empty()) mnl_attr_put_strz(nlh, NFULA_PREFIX, m.prefix.c_str());
  mnl_attr_put(nlh, NFULA_PAYLOAD, m.payload.size(), m.payload.data());
  buf.resize(nlh->nlmsg_len);
  return buf;
}

TEST(NflogPrefixTest, FormatAndParseRoundTrip) {
  const std::string p = formatLogPrefix("policy", Direction::Ingress, 12);
  EXPECT_EQ(p, "sluice:policy:ingress:12: ");
  auto parsed = parseLogPrefix(p);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->reason, "policy");
  EXPECT_EQ(parsed->direction, Direction::Ingress);
  EXPECT_EQ(parsed->endpoint, 12u);
  auto ne = parseLogPrefix(formatLogPrefix("no-endpoint", Direction::Egress, 0));
  ASSERT_TRUE(ne);
  EXPECT_EQ(ne->reason, "no-endpoint");
  EXPECT_EQ(ne->direction, Direction::Egress);
  EXPECT_EQ(ne->endpoint, 0u);
}

TEST(NflogPrefixTest, ForeignOrMalformedPrefixesAreNotOurs) {
  for (const char* p :
       {"", "DROP: ", "sluice:policy: ", "sluice:policy:sideways:1: ", "sluice:policy:ingress:x1: ",
        "sluice::ingress:1: ", "sluice:policy:ingress:99999999999999999999: ",
        "other:policy:ingress:1: "}) {
    EXPECT_FALSE(parseLogPrefix(p)) << p;
  }
}

TEST(NflogPacketTest, Ipv4TcpPorts) {
  auto t = parsePacket(ipv4Tcp("10.244.0.5", "10.244.1.7", 40000, 5432));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->src.toString(), "10.244.0.5");
  EXPECT_EQ(t->dst.toString(), "10.244.1.7");
  EXPECT_EQ(t->protocol, 6);
  EXPECT_EQ(t->srcPort, 40000);
  EXPECT_EQ(t->dstPort, 5432);
}

TEST(NflogPacketTest, LaterFragmentsHaveNoPorts) {
  auto t = parsePacket(ipv4Tcp("10.0.0.1", "10.0.0.2", 1, 2, /*offset 8 bytes*/ 1));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->protocol, 6);
  EXPECT_EQ(t->srcPort, 0);
  EXPECT_EQ(t->dstPort, 0);
}

TEST(NflogPacketTest, Ipv6SkipsExtensionHeaders) {
  auto t = parsePacket(ipv6HopByHopUdp("fd00::5", "fd00::6", 5353, 53));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->src.toString(), "fd00::5");
  EXPECT_EQ(t->dst.toString(), "fd00::6");
  EXPECT_EQ(t->protocol, 17);
  EXPECT_EQ(t->srcPort, 5353);
  EXPECT_EQ(t->dstPort, 53);
}

TEST(NflogPacketTest, TruncatedOrUnknownPacketsAreRefused) {
  auto v4 = ipv4Tcp("10.0.0.1", "10.0.0.2", 1, 2);
  EXPECT_FALSE(parsePacket(std::span(v4).first(19)));
  std::vector<uint8_t> junk(40, 0x20);  // version 2
  EXPECT_FALSE(parsePacket(junk));
  EXPECT_FALSE(parsePacket({}));
  // Headers present but the ports cut off: addresses yes, ports 0.
  auto t = parsePacket(std::span(v4).first(22));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->dstPort, 0);
}

TEST(NflogMessageTest, EgressDropNamesEndpointAndInputInterface) {
  MessageSpec m;
  m.prefix = formatLogPrefix("spoofed", Direction::Egress, 3);
  m.payload = ipv4Tcp("10.9.9.9", "10.244.1.7", 1234, 80);
  m.indev = 41;
  m.outdev = 42;
  m.timestamp = true;
  auto e = parseNflogMessage(message(m), 5);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->endpoint, 3u);
  EXPECT_EQ(e->direction, Direction::Egress);
  EXPECT_EQ(e->ifindex, 41);
  EXPECT_EQ(e->reason, "spoofed");
  EXPECT_EQ(e->verdict, FlowVerdict::Denied);
  EXPECT_EQ(e->src.toString(), "10.9.9.9");
  EXPECT_EQ(e->dstPort, 80);
  EXPECT_EQ(e->wallNs, int64_t{1700000000} * 1000000000 + 250000 * 1000);
}

TEST(NflogMessageTest, IngressDropUsesOutputInterfaceAndReceiptTime) {
  MessageSpec m;
  m.prefix = formatLogPrefix("policy", Direction::Ingress, 8);
  m.payload = ipv4Tcp("10.244.0.5", "10.244.0.9", 40000, 81);
  m.indev = 41;
  m.outdev = 42;
  auto e = parseNflogMessage(message(m), 777);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ifindex, 42);
  EXPECT_EQ(e->endpoint, 8u);
  EXPECT_EQ(e->wallNs, 777);
}

TEST(NflogMessageTest, OtherMessagesAreNotEvents) {
  MessageSpec foreign;
  foreign.prefix = "DROP: ";
  foreign.payload = ipv4Tcp("10.0.0.1", "10.0.0.2", 1, 2);
  EXPECT_FALSE(parseNflogMessage(message(foreign), 0));
  MessageSpec config = foreign;
  config.prefix = formatLogPrefix("policy", Direction::Ingress, 1);
  config.type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  EXPECT_FALSE(parseNflogMessage(message(config), 0));
  MessageSpec ours = config;
  ours.type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
  auto whole = message(ours);
  EXPECT_TRUE(parseNflogMessage(whole, 0));
  // A message cut short (length field beyond the buffer) is refused, not read past its end.
  EXPECT_FALSE(parseNflogMessage(std::span(whole).first(whole.size() - 4), 0));
  MessageSpec noPayload = ours;
  noPayload.payload.clear();
  EXPECT_FALSE(parseNflogMessage(message(noPayload), 0));
}

}  // namespace
}  // namespace sluice::datapath::nft
