#include "e2e/datapath/packet_builder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace sluice::e2e {

namespace {

void put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}

void ethernet(std::vector<uint8_t>& b, uint16_t ethertype) {
  const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01}, src[6] = {0x02, 0, 0, 0, 0, 0x02};
  b.insert(b.end(), dst, dst + 6);
  b.insert(b.end(), src, src + 6);
  put16(b, ethertype);
}

std::vector<uint8_t> l4(const PacketSpec& s) {
  std::vector<uint8_t> b;
  switch (s.protocol) {
    case kTcp:
      put16(b, s.srcPort);
      put16(b, s.dstPort);
      put32(b, 1);          // seq
      put32(b, 0);          // ack
      b.push_back(5 << 4);  // data offset
      b.push_back(s.tcpFlags);
      put16(b, 65535);
      put32(b, 0);  // checksum, urgent
      break;
    case kUdp:
      put16(b, s.srcPort);
      put16(b, s.dstPort);
      put16(b, static_cast<uint16_t>(8 + s.payload));
      put16(b, 0);
      break;
    case kSctp:
      put16(b, s.srcPort);
      put16(b, s.dstPort);
      put32(b, 0);  // verification tag
      put32(b, 0);  // checksum
      break;
    case kIcmp:
    case kIcmpv6:
      b.push_back(s.icmpType);
      b.push_back(s.icmpCode);
      put16(b, 0);
      if (!s.icmpQuoted.empty()) {
        put16(b, 0);
        put16(b, s.icmpId);  // e.g. the next-hop MTU of a fragmentation-needed error
        b.insert(b.end(), s.icmpQuoted.begin(), s.icmpQuoted.end());
        break;
      }
      put16(b, s.icmpId);
      put16(b, 1);
      break;
    default:
      break;
  }
  return b;
}

}  // namespace

std::vector<uint8_t> buildPacket(const PacketSpec& s) {
  const bool v6 = s.src.find(':') != std::string::npos;
  uint8_t src[16], dst[16];
  if (inet_pton(v6 ? AF_INET6 : AF_INET, s.src.c_str(), src) != 1 ||
      inet_pton(v6 ? AF_INET6 : AF_INET, s.dst.c_str(), dst) != 1) {
    throw std::invalid_argument("bad address " + s.src + " / " + s.dst);
  }
  std::vector<uint8_t> payload;
  if (!s.fragment || s.fragOffset == 0) payload = l4(s);
  payload.resize(payload.size() + s.payload, 0xab);

  std::vector<uint8_t> b;
  if (!v6) {
    ethernet(b, 0x0800);
    const size_t start = b.size();
    b.push_back(0x45);
    b.push_back(0);
    put16(b, static_cast<uint16_t>(20 + payload.size()));
    put16(b, static_cast<uint16_t>(s.fragId));
    put16(b, static_cast<uint16_t>((s.moreFragments ? 0x2000 : 0) | (s.fragOffset & 0x1fff)));
    b.push_back(s.hopLimit);
    b.push_back(s.protocol);
    put16(b, 0);
    b.insert(b.end(), src, src + 4);
    b.insert(b.end(), dst, dst + 4);
    uint32_t sum = 0;
    for (size_t i = start; i < start + 20; i += 2) sum += (uint32_t{b[i]} << 8) | b[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    const uint16_t csum = static_cast<uint16_t>(~sum);
    b[start + 10] = static_cast<uint8_t>(csum >> 8);
    b[start + 11] = static_cast<uint8_t>(csum);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
  }

  // IPv6: extension headers in order, then the fragment header, then L4.
  std::vector<uint8_t> ext;
  std::vector<uint8_t> chain = s.ipv6ExtHeaders;
  if (s.fragment) chain.push_back(44);
  for (size_t i = 0; i < chain.size(); ++i) {
    const uint8_t next = i + 1 < chain.size() ? chain[i + 1] : s.protocol;
    if (chain[i] == 44) {
      ext.push_back(next);
      ext.push_back(0);
      put16(ext, static_cast<uint16_t>((s.fragOffset << 3) | (s.moreFragments ? 1 : 0)));
      put32(ext, s.fragId);
    } else {
      ext.push_back(next);
      ext.push_back(0);  // 8 bytes: next, length 0, 6 bytes of PadN
      ext.push_back(1);
      ext.push_back(4);
      put32(ext, 0);
    }
  }
  ethernet(b, 0x86dd);
  put32(b, 6u << 28);
  put16(b, static_cast<uint16_t>(ext.size() + payload.size()));
  b.push_back(chain.empty() ? s.protocol : chain[0]);
  b.push_back(s.hopLimit);
  b.insert(b.end(), src, src + 16);
  b.insert(b.end(), dst, dst + 16);
  b.insert(b.end(), ext.begin(), ext.end());
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

std::vector<uint8_t> quote(const PacketSpec& spec) {
  PacketSpec s = spec;
  s.payload = 0;
  const std::vector<uint8_t> frame = buildPacket(s);
  const bool v6 = s.src.find(':') != std::string::npos;
  const size_t ext = v6 ? 8 * (s.ipv6ExtHeaders.size() + (s.fragment ? 1 : 0)) : 0;
  const size_t end = std::min(frame.size(), 14 + (v6 ? 40 : 20) + ext + 8);
  return std::vector<uint8_t>(frame.begin() + 14, frame.begin() + static_cast<long>(end));
}

std::vector<uint8_t> buildArpRequest() {
  std::vector<uint8_t> b;
  ethernet(b, 0x0806);
  put16(b, 1);       // Ethernet
  put16(b, 0x0800);  // IPv4
  b.push_back(6);
  b.push_back(4);
  put16(b, 1);  // request
  b.resize(b.size() + 20, 0);
  return b;
}

std::vector<uint8_t> buildEthertype(uint16_t ethertype, size_t payload) {
  std::vector<uint8_t> b;
  ethernet(b, ethertype);
  b.resize(b.size() + payload, 0);
  return b;
}

}  // namespace sluice::e2e
