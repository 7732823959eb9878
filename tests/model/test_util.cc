#include "tests/model/test_util.h"

#include <sstream>

namespace sluice::model::testing {

namespace {

void describeSelector(std::ostream& o, const LabelSelector& s) {
  o << "{";
  for (const auto& [k, v] : s.matchLabels) o << k << "=" << v << ",";
  for (const auto& r : s.matchExpressions) {
    o << r.key << " op" << static_cast<int>(r.op) << " (";
    for (const auto& v : r.values) o << v << ",";
    o << "),";
  }
  o << "}";
}

void describeRules(std::ostream& o, const char* dir, const std::vector<Rule>& rules) {
  for (size_t i = 0; i < rules.size(); ++i) {
    o << "  " << dir << "[" << i << "]\n";
    for (const auto& p : rules[i].peers) {
      o << "    peer";
      if (p.podSelector) {
        o << " pod=";
        describeSelector(o, *p.podSelector);
      }
      if (p.namespaceSelector) {
        o << " ns=";
        describeSelector(o, *p.namespaceSelector);
      }
      if (p.ipBlock) {
        o << " cidr=" << p.ipBlock->cidr.toString() << " except=";
        for (const auto& e : p.ipBlock->except) o << e.toString() << ",";
      }
      o << "\n";
    }
    for (const auto& p : rules[i].ports) {
      o << "    port " << protocolName(p.protocol) << " ";
      if (std::holds_alternative<uint16_t>(p.port)) o << std::get<uint16_t>(p.port);
      if (std::holds_alternative<std::string>(p.port)) o << std::get<std::string>(p.port);
      if (p.endPort) o << "-" << *p.endPort;
      o << "\n";
    }
  }
}

}  // namespace

std::string describe(const Cluster& c) {
  std::ostringstream o;
  for (const auto& n : c.namespaces) {
    o << "Namespace " << n.name << " ";
    for (const auto& [k, v] : n.labels) o << k << "=" << v << ",";
    o << "\n";
  }
  for (const auto& p : c.pods) {
    o << "Pod " << p.key() << " host=" << p.hostNetwork << " node=" << p.nodeName << " ";
    for (const auto& [k, v] : p.labels) o << k << "=" << v << ",";
    o << " ips=";
    for (const auto& ip : p.ips) o << ip.toString() << ",";
    o << " ports=";
    for (const auto& cp : p.ports)
      o << cp.name << ":" << cp.port << "/" << protocolName(cp.protocol) << ",";
    o << "\n";
  }
  for (const auto& p : c.policies) {
    o << "NetworkPolicy " << p.key() << " in=" << p.affectsIngress << " eg=" << p.affectsEgress
      << " sel=";
    describeSelector(o, p.podSelector);
    o << "\n";
    describeRules(o, "ingress", p.ingress);
    describeRules(o, "egress", p.egress);
  }
  return o.str();
}

std::string joinNotes(const Decoded& d) {
  std::string out;
  for (const auto& n : d.notes) out += n + "\n";
  return out;
}

std::string joinErrors(const Decoded& d) {
  std::string out;
  for (const auto& e : d.errors) out += e.message + "\n";
  return out;
}

std::string policyYaml(std::string_view specBody) {
  return "apiVersion: networking.k8s.io/v1\n"
         "kind: NetworkPolicy\n"
         "metadata:\n"
         "  name: allow-web\n"
         "  namespace: prod\n"
         "spec:\n" +
         std::string(specBody);
}

}  // namespace sluice::model::testing
