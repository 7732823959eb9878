// The one direction type: the engine, the compiler's IR, both datapaths and sluicectl use it.
#pragma once

#include <cstdint>

namespace sluice::model {

// Always relative to the pod: Ingress is traffic into it, Egress traffic out of it. The values
// are the IR's (compiler/ir.h), which the datapaths lower as they are.
enum class Direction : uint8_t { Ingress = 0, Egress = 1 };

inline constexpr Direction kDirections[] = {Direction::Ingress, Direction::Egress};

inline const char* directionName(Direction d) {
  return d == Direction::Ingress ? "ingress" : "egress";
}

}  // namespace sluice::model
