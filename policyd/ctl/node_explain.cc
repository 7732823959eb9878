#include "policyd/ctl/node_explain.h"

namespace sluice::ctl {

namespace {

std::string ruleText(uint32_t rule, const RuleNames& names) {
  if (rule == kNodeRuleNotIsolated) return "not isolated";
  if (rule == kNodeRuleHost) return "from the node itself (always allowed)";
  auto it = names.find(rule);
  return "rule " + std::to_string(rule) + (it == names.end() ? "" : " = " + it->second);
}

std::string sideVerdict(const NodeSide& s, const RuleNames& names) {
  if (!s.local) return "not an endpoint of this node";
  if (!s.ready) return "denied: policy not applied yet (fail closed)";
  if (s.allowed) return "allowed: " + ruleText(s.rule, names);
  return "denied: isolated, no allow entry matches (peer class " + std::to_string(s.peerClass) +
         ")";
}

}  // namespace

NodeComparison compareWithNode(const ExplainReport& r, const NodeVerdict& v) {
  NodeComparison c;
  c.node = v;
  auto check = [&](const char* dir, const NodeSide& s, const SideReport& engine) {
    if (!s.local) return;
    bool expected = engine.explanation.allowed;
    if (std::string(dir) == "ingress" && s.peerClass == kNodeClassHost) expected = true;
    if (s.ready && s.allowed == expected) return;
    c.agree = false;
    c.mismatches.push_back(
        std::string(dir) + ": datapath " +
        (s.ready ? (s.allowed ? "allows" : "denies") : "denies (policy not applied yet)") +
        ", engine " + (expected ? "allows" : "denies"));
  };
  check("egress", v.egress, r.egress);
  check("ingress", v.ingress, r.ingress);
  return c;
}

void renderNodeText(std::ostream& out, const ExplainReport& r, const NodeComparison& c,
                    const RuleNames& names, const std::string& pinDir) {
  out << "this node's datapath (" << pinDir << "):\n";
  out << "  egress of " << r.src.describe() << ": " << sideVerdict(c.node.egress, names) << "\n";
  out << "  ingress of " << r.dst.describe() << ": " << sideVerdict(c.node.ingress, names) << "\n";
  if (!c.node.egress.local && !c.node.ingress.local) {
    out << "  neither end is an endpoint of this node: nothing to compare\n";
  }
  if (c.agree) {
    out << "datapath and engine agree\n";
    return;
  }
  for (const auto& m : c.mismatches) {
    out << "MISMATCH " << m << " -- the datapath does not enforce what the engine specifies\n";
  }
}

nlohmann::ordered_json nodeJson(const NodeComparison& c, const RuleNames& names) {
  auto side = [&](const NodeSide& s) {
    nlohmann::ordered_json j;
    j["local"] = s.local;
    if (!s.local) return j;
    j["endpoint"] = s.endpoint;
    j["ready"] = s.ready;
    j["isolated"] = s.isolated;
    j["peerClass"] = s.peerClass;
    j["allowed"] = s.ready && s.allowed;
    if (s.allowed) j["rule"] = ruleText(s.rule, names);
    return j;
  };
  nlohmann::ordered_json j;
  j["egress"] = side(c.node.egress);
  j["ingress"] = side(c.node.ingress);
  j["agree"] = c.agree;
  j["mismatches"] = c.mismatches;
  return j;
}

}  // namespace sluice::ctl
