#include "common/ip.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace sluice {

IpAddr IpAddr::v4(uint32_t hostOrder) {
  IpAddr a;
  a.family_ = Family::V4;
  a.bytes_[0] = static_cast<uint8_t>(hostOrder >> 24);
  a.bytes_[1] = static_cast<uint8_t>(hostOrder >> 16);
  a.bytes_[2] = static_cast<uint8_t>(hostOrder >> 8);
  a.bytes_[3] = static_cast<uint8_t>(hostOrder);
  return a;
}

IpAddr IpAddr::v6(const std::array<uint8_t, 16>& bytes) {
  IpAddr a;
  a.family_ = Family::V6;
  a.bytes_ = bytes;
  return a;
}

Result<IpAddr> IpAddr::parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) {
    return makeError("invalid IP address \"" + std::string(text) + "\"");
  }
  std::string s(text);
  IpAddr a;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), a.bytes_.data()) != 1) {
      return makeError("invalid IP address \"" + s + "\"");
    }
    a.family_ = Family::V4;
  } else {
    if (inet_pton(AF_INET6, s.c_str(), a.bytes_.data()) != 1) {
      return makeError("invalid IP address \"" + s + "\"");
    }
    a.family_ = Family::V6;
  }
  return a;
}

uint32_t IpAddr::v4HostOrder() const {
  return (uint32_t{bytes_[0]} << 24) | (uint32_t{bytes_[1]} << 16) | (uint32_t{bytes_[2]} << 8) |
         uint32_t{bytes_[3]};
}

std::array<uint8_t, 16> IpAddr::toMapped() const {
  if (!isV4()) return bytes_;
  std::array<uint8_t, 16> m{};
  m[10] = 0xff;
  m[11] = 0xff;
  std::memcpy(m.data() + 12, bytes_.data(), 4);
  return m;
}

std::string IpAddr::toString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(isV4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof(buf));
  return buf;
}

namespace {
IpAddr masked(IpAddr a, int len) {
  auto bytes = a.bytes();
  for (int i = 0; i < 16; ++i) {
    int keep = len - i * 8;
    if (keep >= 8) continue;
    bytes[i] = keep <= 0 ? 0 : static_cast<uint8_t>(bytes[i] & (0xff << (8 - keep)));
  }
  if (a.isV4()) return IpAddr::v4((uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
                                  (uint32_t{bytes[2]} << 8) | bytes[3]);
  return IpAddr::v6(bytes);
}
}  // namespace

Prefix::Prefix(IpAddr addr, int len) : addr_(masked(addr, len)), len_(len) {}

Result<Prefix> Prefix::parse(std::string_view text, bool allowHostBits) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return makeError("invalid CIDR \"" + std::string(text) + "\": missing /prefix-length");
  }
  auto addr = IpAddr::parse(text.substr(0, slash));
  if (!addr.ok()) return makeError("invalid CIDR \"" + std::string(text) + "\"");
  auto lenText = text.substr(slash + 1);
  int len = -1;
  auto [ptr, ec] = std::from_chars(lenText.data(), lenText.data() + lenText.size(), len);
  if (lenText.empty() || ec != std::errc() || ptr != lenText.data() + lenText.size() || len < 0 ||
      len > addr->bits()) {
    return makeError("invalid CIDR \"" + std::string(text) + "\": bad prefix length");
  }
  Prefix p(*addr, len);
  if (!allowHostBits && p.addr_ != *addr) {
    return makeError("invalid CIDR \"" + std::string(text) + "\": host bits set (did you mean " +
                     p.toString() + "?)");
  }
  return p;
}

bool Prefix::contains(const IpAddr& a) const {
  if (a.family() != addr_.family()) return false;
  int full = len_ / 8;
  if (std::memcmp(a.bytes().data(), addr_.bytes().data(), full) != 0) return false;
  int rest = len_ % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a.bytes()[full] & mask) == addr_.bytes()[full];
}

std::string Prefix::toString() const { return addr_.toString() + "/" + std::to_string(len_); }

U128 toU128(const IpAddr& a) {
  U128 v = 0;
  const int n = a.isV4() ? 4 : 16;
  for (int i = 0; i < n; ++i) v = (v << 8) | a.bytes()[i];
  return v;
}

IpAddr fromU128(Family f, U128 v) {
  if (f == Family::V4) return IpAddr::v4(static_cast<uint32_t>(v));
  std::array<uint8_t, 16> b{};
  for (int i = 15; i >= 0; --i) {
    b[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return IpAddr::v6(b);
}

}  // namespace sluice
