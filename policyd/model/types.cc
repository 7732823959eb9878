#include "policyd/model/types.h"

namespace sluice::model {

const char* protocolName(Protocol p) {
  switch (p) {
    case Protocol::TCP: return "TCP";
    case Protocol::UDP: return "UDP";
    case Protocol::SCTP: return "SCTP";
  }
  return "?";
}

std::optional<Protocol> parseProtocol(std::string_view s) {
  if (s == "TCP") return Protocol::TCP;
  if (s == "UDP") return Protocol::UDP;
  if (s == "SCTP") return Protocol::SCTP;
  return std::nullopt;
}

const char* enforcementName(Enforcement e) { return e == Enforcement::Audit ? "audit" : "enforce"; }

bool IPBlock::contains(const IpAddr& a) const { return contains(Prefix::host(a)); }

bool IPBlock::contains(const Prefix& p) const {
  if (!cidr.contains(p)) return false;
  for (const auto& e : except) {
    if (e.contains(p)) return false;
  }
  return true;
}

}  // namespace sluice::model
