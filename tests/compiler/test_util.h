// Builders for compiler tests: the shared model builders plus IR helpers.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "policyd/compiler/compiler.h"
#include "policyd/model/types.h"
#include "tests/support/model_builders.h"

namespace sluice::compiler::testing {

using model::testing::blockPeer;
using model::testing::cidr;
using model::testing::ip;
using model::testing::named;
using model::testing::ns;
using model::testing::nsPeer;
using model::testing::pod;
using model::testing::podPeer;
using model::testing::policy;
using model::testing::sel;
using model::testing::tcp;
using model::testing::udp;

inline LocalEndpoint endpointFor(EndpointId id, const model::Pod& p) {
  return {id, p.namespace_, p.name, p.ips};
}

inline bool allows(const State& s, EndpointId ep, Direction d, const char* peer, uint8_t proto,
                   uint16_t port) {
  return lookup(s, ep, d, ip(peer), proto, port).has_value();
}

}  // namespace sluice::compiler::testing
