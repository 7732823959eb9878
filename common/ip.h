// IPv4/IPv6 addresses and prefixes. IPv4 is stored in its own family (not v4-mapped) so that
// printing and CIDR containment follow what users wrote; `toMapped()` gives the 16-byte form
// the datapaths use as one key space.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sluice {

enum class Family : uint8_t { V4 = 4, V6 = 6 };

class IpAddr {
 public:
  IpAddr() = default;
  static IpAddr v4(uint32_t hostOrder);
  static IpAddr v6(const std::array<uint8_t, 16>& bytes);
  static Result<IpAddr> parse(std::string_view text);

  Family family() const { return family_; }
  bool isV4() const { return family_ == Family::V4; }
  int bits() const { return isV4() ? 32 : 128; }
  // Network-order bytes; for V4 only the first 4 are meaningful.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  uint32_t v4HostOrder() const;
  // ::ffff:a.b.c.d for IPv4, the address itself for IPv6.
  std::array<uint8_t, 16> toMapped() const;
  bool bit(int i) const { return (bytes_[i / 8] >> (7 - i % 8)) & 1; }
  std::string toString() const;

  auto operator<=>(const IpAddr&) const = default;

 private:
  Family family_ = Family::V4;
  std::array<uint8_t, 16> bytes_{};
};

// An address as one unsigned integer (IPv4 in the low 32 bits), for range arithmetic: IPAM
// ranges, interval sets.
using U128 = unsigned __int128;
U128 toU128(const IpAddr& a);
IpAddr fromU128(Family f, U128 v);

class Prefix {
 public:
  Prefix() = default;
  Prefix(IpAddr addr, int len);  // masks host bits
  // Strict parse as the API server does: "10.0.0.0/8"; host bits set is an error unless
  // allowHostBits (CNI configs such as "10.1.2.3/24" carry an address plus its subnet).
  static Result<Prefix> parse(std::string_view text, bool allowHostBits = false);
  static Prefix host(const IpAddr& a) { return Prefix(a, a.bits()); }

  const IpAddr& addr() const { return addr_; }
  int len() const { return len_; }
  Family family() const { return addr_.family(); }
  bool contains(const IpAddr& a) const;
  bool contains(const Prefix& p) const { return p.len_ >= len_ && contains(p.addr_); }
  bool overlaps(const Prefix& p) const { return contains(p) || p.contains(*this); }
  std::string toString() const;

  auto operator<=>(const Prefix&) const = default;

 private:
  IpAddr addr_;
  int len_ = 0;
};

}  // namespace sluice

template <>
struct std::hash<sluice::IpAddr> {
  size_t operator()(const sluice::IpAddr& a) const noexcept {
    uint64_t h = static_cast<uint64_t>(a.family());
    for (uint8_t b : a.bytes()) h = h * 1099511628211ULL ^ b;
    return static_cast<size_t>(h);
  }
};
