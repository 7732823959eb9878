// Builders for model fixtures, shared by the engine, compiler and datapath tests: each test
// states only what differs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "policyd/model/types.h"

namespace sluice::model::testing {

inline IpAddr ip(const char* s) { return *IpAddr::parse(s); }
inline Prefix cidr(const char* s) { return *Prefix::parse(s); }

inline LabelSelector sel(Labels l) { return LabelSelector{std::move(l), {}}; }
inline Peer podPeer(Labels l) { return {sel(std::move(l)), std::nullopt, std::nullopt}; }
inline Peer nsPeer(Labels l) { return {std::nullopt, sel(std::move(l)), std::nullopt}; }
inline Peer bothPeer(Labels pod, Labels ns) {
  return {sel(std::move(pod)), sel(std::move(ns)), std::nullopt};
}
inline Peer blockPeer(const char* c, std::vector<const char*> except = {}) {
  IPBlock b{cidr(c), {}};
  for (auto* e : except) b.except.push_back(cidr(e));
  return {std::nullopt, std::nullopt, b};
}
inline PortSpec tcp(uint16_t p, std::optional<uint16_t> end = std::nullopt) {
  return {Protocol::TCP, p, end};
}
inline PortSpec udp(uint16_t p) { return {Protocol::UDP, p, std::nullopt}; }
inline PortSpec named(const char* n, Protocol pr = Protocol::TCP) {
  return {pr, std::string(n), std::nullopt};
}

inline Pod pod(const char* ns, const char* name, Labels labels, std::vector<const char*> ips,
               std::vector<ContainerPort> ports = {}) {
  Pod p;
  p.namespace_ = ns;
  p.name = name;
  p.labels = std::move(labels);
  for (auto* a : ips) p.ips.push_back(ip(a));
  p.ports = std::move(ports);
  return p;
}

inline NetworkPolicy policy(const char* ns, const char* name, LabelSelector selector,
                            std::vector<Rule> ingress, std::vector<Rule> egress,
                            bool ingressType = true, bool egressType = false) {
  NetworkPolicy p;
  p.namespace_ = ns;
  p.name = name;
  p.podSelector = std::move(selector);
  p.ingress = std::move(ingress);
  p.egress = std::move(egress);
  p.affectsIngress = ingressType;
  p.affectsEgress = egressType;
  return p;
}

inline Namespace ns(const char* name, Labels labels = {}) {
  labels["kubernetes.io/metadata.name"] = name;
  return {name, std::move(labels), {}};
}

}  // namespace sluice::model::testing
