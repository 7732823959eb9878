// A small SHA-256 (FIPS 180-4). Used for host veth names and IPAM attachment file names, which
// must stay stable across plugin versions: a node upgraded mid-life must still find the veths
// and reservations an older binary made, so never swap this for std::hash or a seeded hash.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::cni {

std::array<uint8_t, 32> sha256(std::string_view data);
std::string sha256Hex(std::string_view data);

}  // namespace sluice::cni
