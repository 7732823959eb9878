#include "policyd/datapath/bpf/realized.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>

#include "bpf/sluice_abi.h"
#include "common/unique_fd.h"

namespace sluice::datapath::bpf {

namespace {

static_assert(kRealizedRuleNotIsolated == SLUICE_RULE_NOT_ISOLATED);
static_assert(kRealizedRuleHost == SLUICE_RULE_HOST);

Result<UniqueFd> openMap(const std::string& pinDir, const char* name) {
  const std::string path = pinDir + "/" + name;
  LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = BPF_F_RDONLY);
  UniqueFd fd(bpf_obj_get_opts(path.c_str(), &opts));
  if (!fd) return makeError("open pinned map " + path + ": " + std::strerror(errno), errno);
  return fd;
}

bool owns(const sluice_endpoint& ep, const IpAddr& ip) {
  if (ip.isV4()) return ep.has_ipv4 && std::memcmp(ep.ipv4, ip.bytes().data(), 4) == 0;
  return ep.has_ipv6 && std::memcmp(ep.ipv6, ip.bytes().data(), 16) == 0;
}

// As classify() in sluice_tc.bpf.c.
uint32_t classify(int classes, const IpAddr& addr) {
  sluice_class_key key{};
  key.family = addr.isV4() ? 4 : 6;
  key.prefixlen = SLUICE_CLASS_PREFIX_FAMILY + (addr.isV4() ? 32 : 128);
  std::memcpy(key.addr, addr.bytes().data(), addr.isV4() ? 4 : 16);
  uint32_t cls = 0;
  if (bpf_map_lookup_elem(classes, &key, &cls) != 0) return SLUICE_CLASS_WORLD;
  return cls;
}

bool hasPorts(uint8_t p) { return p == 6 || p == 17 || p == 132; }

// As policy_allows() in sluice_tc.bpf.c.
void evaluate(RealizedSide& side, const sluice_endpoint& ep, uint8_t direction, int classes,
              int policy, const IpAddr& peer, uint8_t protocol, uint16_t port) {
  side.local = true;
  side.endpoint = ep.id;
  side.ready = (ep.flags & SLUICE_EP_POLICY_READY) != 0;
  const uint32_t isoFlag =
      direction == SLUICE_DIR_INGRESS ? SLUICE_EP_INGRESS_ISOLATED : SLUICE_EP_EGRESS_ISOLATED;
  side.isolated = (ep.flags & isoFlag) != 0;
  side.peerClass = classify(classes, peer);
  if (!side.ready) return;
  if (direction == SLUICE_DIR_INGRESS && side.peerClass == SLUICE_CLASS_HOST) {
    side.allowed = true;
    side.rule = SLUICE_RULE_HOST;
    return;
  }
  if (!side.isolated) {
    side.allowed = true;
    side.rule = SLUICE_RULE_NOT_ISOLATED;
    return;
  }
  sluice_policy_key key{};
  key.prefixlen = SLUICE_POLICY_FULL_PREFIX;
  key.endpoint = htonl(ep.id);
  key.direction = direction;
  key.peer_class = htonl(side.peerClass);
  key.protocol = protocol;
  key.port = htons(hasPorts(protocol) ? port : 0);
  sluice_policy_value v{};
  if (bpf_map_lookup_elem(policy, &key, &v) != 0) {
    key.peer_class = htonl(SLUICE_CLASS_ANY);
    if (bpf_map_lookup_elem(policy, &key, &v) != 0) return;
  }
  side.allowed = true;
  side.rule = v.rule;
}

}  // namespace

Result<RealizedVerdict> queryRealized(const std::string& pinDir, const IpAddr& src,
                                      const IpAddr& dst, uint8_t protocol, uint16_t port) {
  SLUICE_ASSIGN_OR_RETURN(UniqueFd endpoints, openMap(pinDir, SLUICE_MAP_ENDPOINTS));
  SLUICE_ASSIGN_OR_RETURN(UniqueFd classes, openMap(pinDir, SLUICE_MAP_CLASSES));
  SLUICE_ASSIGN_OR_RETURN(UniqueFd policy, openMap(pinDir, SLUICE_MAP_POLICY));
  RealizedVerdict out;
  uint32_t key = 0, next = 0;
  const uint32_t* prev = nullptr;
  while (bpf_map_get_next_key(endpoints.get(), prev, &next) == 0) {
    key = next;
    prev = &key;
    sluice_endpoint ep{};
    if (bpf_map_lookup_elem(endpoints.get(), &key, &ep) != 0) continue;
    if (!out.egress.local && owns(ep, src)) {
      evaluate(out.egress, ep, SLUICE_DIR_EGRESS, classes.get(), policy.get(), dst, protocol, port);
    }
    if (!out.ingress.local && owns(ep, dst)) {
      evaluate(out.ingress, ep, SLUICE_DIR_INGRESS, classes.get(), policy.get(), src, protocol,
               port);
    }
  }
  return out;
}

}  // namespace sluice::datapath::bpf
