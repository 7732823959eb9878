// Small builders for compiler tests.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "policyd/compiler/compiler.h"
#include "policyd/model/types.h"

namespace sluice::compiler::testing {

inline IpAddr ip(const char* s) { return *IpAddr::parse(s); }
inline Prefix cidr(const char* s) { return *Prefix::parse(s); }

inline model::LabelSelector sel(model::Labels l) { return model::LabelSelector{std::move(l), {}}; }
inline model::Peer podPeer(model::Labels l) { return {sel(std::move(l)), std::nullopt, std::nullopt}; }
inline model::Peer nsPeer(model::Labels l) { return {std::nullopt, sel(std::move(l)), std::nullopt}; }
inline model::Peer blockPeer(const char* c, std::vector<const char*> except = {}) {
  model::IPBlock b{cidr(c), {}};
  for (auto* e : except) b.except.push_back(cidr(e));
  return {std::nullopt, std::nullopt, b};
}
inline model::PortSpec tcp(uint16_t p, std::optional<uint16_t> end = std::nullopt) {
  return {model::Protocol::TCP, p, end};
}
inline model::PortSpec udp(uint16_t p) { return {model::Protocol::UDP, p, std::nullopt}; }
inline model::PortSpec named(const char* n, model::Protocol pr = model::Protocol::TCP) {
  return {pr, std::string(n), std::nullopt};
}

inline model::Pod pod(const char* ns, const char* name, model::Labels labels,
                      std::vector<const char*> ips, std::vector<model::ContainerPort> ports = {}) {
  model::Pod p;
  p.namespace_ = ns;
  p.name = name;
  p.labels = std::move(labels);
  for (auto* a : ips) p.ips.push_back(ip(a));
  p.ports = std::move(ports);
  return p;
}

inline model::NetworkPolicy policy(const char* ns, const char* name, model::LabelSelector selector,
                                   std::vector<model::Rule> ingress, std::vector<model::Rule> egress,
                                   bool ingressType = true, bool egressType = false) {
  model::NetworkPolicy p;
  p.namespace_ = ns;
  p.name = name;
  p.podSelector = std::move(selector);
  p.ingress = std::move(ingress);
  p.egress = std::move(egress);
  p.affectsIngress = ingressType;
  p.affectsEgress = egressType;
  return p;
}

inline model::Namespace ns(const char* name, model::Labels labels = {}) {
  labels["kubernetes.io/metadata.name"] = name;
  return {name, std::move(labels), {}};
}

inline LocalEndpoint endpointFor(EndpointId id, const model::Pod& p) {
  return {id, p.namespace_, p.name, p.ips};
}

inline bool allows(const State& s, EndpointId ep, Direction d, const char* peer, uint8_t proto,
                   uint16_t port) {
  return lookup(s, ep, d, ip(peer), proto, port).has_value();
}

}  // namespace sluice::compiler::testing
