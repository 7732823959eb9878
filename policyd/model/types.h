// The policy model: Kubernetes Namespace, Pod and networking.k8s.io/v1 NetworkPolicy, decoded,
// validated and defaulted. Nothing here knows about the kernel.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/ip.h"
#include "policyd/model/label_selector.h"

namespace sluice::model {

enum class Protocol : uint8_t { TCP = 6, UDP = 17, SCTP = 132 };
const char* protocolName(Protocol p);
std::optional<Protocol> parseProtocol(std::string_view s);  // "TCP", "UDP", "SCTP"

// Where an object came from, for error messages and explanations.
struct Origin {
  std::string file;
  int document = 0;  // index within a multi-document file / List
};

struct Namespace {
  std::string name;
  Labels labels;
  Origin origin;
};

struct ContainerPort {
  std::string name;  // may be empty
  uint16_t port = 0;
  Protocol protocol = Protocol::TCP;
};

struct Pod {
  std::string namespace_;
  std::string name;
  Labels labels;
  std::vector<IpAddr> ips;  // status.podIPs (or podIP)
  std::vector<ContainerPort> ports;
  bool hostNetwork = false;
  std::string nodeName;
  Origin origin;

  std::string key() const { return namespace_ + "/" + name; }
};

struct IPBlock {
  Prefix cidr;
  std::vector<Prefix> except;
  // The API server accepts a CIDR with host bits set ("10.0.0.5/24") and means its network;
  // so does the decoder. What was written, for lint: ("cidr" or "except[i]", text as written).
  std::vector<std::pair<std::string, std::string>> hostBitsSet;
  // "cidr minus except": the one definition of ipBlock membership.
  bool contains(const IpAddr& a) const;
  // Every address of `p`: `p` lies inside the cidr and inside no except. Exact when no except
  // lies strictly inside `p`, as for a host prefix or an atom of the compiler's partition.
  bool contains(const Prefix& p) const;
};

// One element of `from` / `to`. Exactly one of: ipBlock, or at least one selector.
struct Peer {
  std::optional<LabelSelector> podSelector;
  std::optional<LabelSelector> namespaceSelector;
  std::optional<IPBlock> ipBlock;
};

// A port of a rule. `port` absent = all ports of `protocol`.
struct PortSpec {
  Protocol protocol = Protocol::TCP;
  std::variant<std::monostate, uint16_t, std::string> port;
  std::optional<uint16_t> endPort;  // only with a numeric port

  bool hasPort() const { return !std::holds_alternative<std::monostate>(port); }
  bool isNamed() const { return std::holds_alternative<std::string>(port); }
};

struct Rule {
  // Empty = all peers (absent and [] mean the same in the API).
  std::vector<Peer> peers;
  // Empty = all ports and protocols.
  std::vector<PortSpec> ports;
};

// Annotation sluice.io/enforcement (docs/audit.md). `audit`: the policy is evaluated on real
// traffic but not enforced: it isolates nobody and allows nothing until the annotation goes.
inline constexpr const char* kEnforcementAnnotation = "sluice.io/enforcement";
enum class Enforcement : uint8_t { Enforce, Audit };
const char* enforcementName(Enforcement e);  // "enforce", "audit"

struct NetworkPolicy {
  std::string namespace_;
  std::string name;
  LabelSelector podSelector;
  bool affectsIngress = false;  // policyTypes, defaulted
  bool affectsEgress = false;
  std::vector<Rule> ingress;
  std::vector<Rule> egress;
  Origin origin;
  // Fields given more than once in the manifest ("spec.podSelector"); the last value is used,
  // as the API server's JSON decoding does. For lint.
  std::vector<std::string> duplicateKeys;
  Enforcement enforcement = Enforcement::Enforce;
  // The annotation as written (empty when absent). The API server accepts any value; one that
  // is neither "audit" nor "enforce" is enforced, and lint warns about it.
  std::string enforcementText;

  bool audited() const { return enforcement == Enforcement::Audit; }
  std::string key() const { return namespace_ + "/" + name; }
};

// A consistent snapshot of everything the engine needs.
struct Cluster {
  std::vector<Namespace> namespaces;
  std::vector<Pod> pods;
  std::vector<NetworkPolicy> policies;
};

}  // namespace sluice::model
