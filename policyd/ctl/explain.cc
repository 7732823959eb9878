#include "policyd/ctl/explain.h"

#include <nlohmann/json.hpp>
#include <tuple>

#include "policyd/ctl/describe.h"
#include "policyd/engine/wording.h"

namespace sluice::ctl {

using engine::Direction;
using engine::Evaluator;
using engine::FlowEnd;
using model::NetworkPolicy;

namespace {

std::optional<int> matchingPort(const model::Rule& rule, const engine::Flow& flow, Direction dir,
                                bool viaIpBlock) {
  return engine::matchingPort(rule, dir, viaIpBlock, flow.protocol, flow.port, flow.dst.pod);
}

std::string portMissDetail(const model::Rule& rule, const engine::Flow& flow, Direction dir,
                           bool viaIpBlock) {
  std::string s = std::string(model::protocolName(flow.protocol)) + "/" +
                  std::to_string(flow.port) + " is not among its ports (" +
                  describePorts(rule.ports) + ")";
  for (const auto& spec : rule.ports) {
    const auto* name = std::get_if<std::string>(&spec.port);
    if (!name || spec.protocol != flow.protocol) continue;
    if (dir == Direction::Egress && viaIpBlock) {
      s += "; named port " + *name + " never matches an ipBlock peer";
    } else if (flow.dst.pod) {
      auto resolved = engine::resolveNamedPort(*flow.dst.pod, *name, spec.protocol);
      s += "; named port " + *name +
           (resolved ? " is " + std::to_string(*resolved) : " is not defined") + " on " +
           flow.dst.pod->key();
    }
  }
  return s;
}

// The nearest miss of one policy for a denied side: the first rule where the peer matches but
// the port does not, else the first where the port matches but the peer does not.
std::string nearestMiss(const Evaluator& ev, const NetworkPolicy& pol, Direction dir,
                        const engine::Flow& flow) {
  const auto& rules = engine::rulesOf(pol, dir);
  const char* dname = engine::directionName(dir);
  if (rules.empty()) {
    return std::string("selects the pod for ") + dname + " and has no " + dname +
           " rules: it allows nothing by itself";
  }
  const FlowEnd& other = dir == Direction::Ingress ? flow.src : flow.dst;
  std::optional<std::string> peerOnly, portOnly;
  for (size_t r = 0; r < rules.size(); ++r) {
    const auto& rule = rules[r];
    const std::string where = "nearest miss " + ruleField(dir, r) + ": ";
    // Peer matched, port did not.
    if (!peerOnly) {
      if (rule.peers.empty()) {
        peerOnly = where + "allows every peer, but " + portMissDetail(rule, flow, dir, false);
      } else {
        for (size_t i = 0; i < rule.peers.size(); ++i) {
          if (!ev.peerMatches(pol, rule.peers[i], other)) continue;
          peerOnly = where + (dir == Direction::Ingress ? "from[" : "to[") + std::to_string(i) +
                     "] " + describePeer(rule.peers[i]) + " matches, but " +
                     portMissDetail(rule, flow, dir, rule.peers[i].ipBlock.has_value());
          break;
        }
      }
    }
    // Port matched (for a selector peer), peer did not.
    if (!portOnly && !rule.peers.empty()) {
      bool portOk = matchingPort(rule, flow, dir, false).has_value() ||
                    matchingPort(rule, flow, dir, true).has_value();
      if (portOk) {
        std::string reasons;
        for (size_t i = 0; i < rule.peers.size(); ++i) {
          reasons += (i ? "; " : "") + explainPeerMiss(ev, pol, rule.peers[i], other);
        }
        portOnly = where + "the port matches (" + describePorts(rule.ports) +
                   "), but no peer does: " + reasons;
      }
    }
  }
  if (peerOnly) return *peerOnly;
  if (portOnly) return *portOnly;
  return "none of its " + std::to_string(rules.size()) + " " + dname +
         " rule(s) matches either the peer or the port";
}

SideReport buildSide(const Evaluator& ev, Direction dir, const model::Pod* pod,
                     const engine::SideExplanation& exp, const engine::Flow& flow) {
  SideReport side;
  side.direction = dir;
  side.pod = pod;
  side.explanation = exp;
  if (!exp.applies) return side;
  if (exp.allowedBy) {
    const auto& ref = *exp.allowedBy;
    std::string detail;
    if (ref.peer >= 0) {
      detail =
          std::string(dir == Direction::Ingress ? "from[" : "to[") + std::to_string(ref.peer) + "]";
      for (const auto* pol : ev.selectingPolicies(*pod, dir)) {
        if (pol->key() != ref.policy) continue;
        const auto& rules = engine::rulesOf(*pol, dir);
        detail += " " + describePeer(rules.at(ref.rule).peers.at(ref.peer));
        if (ref.port >= 0) {
          detail += ", ports[" + std::to_string(ref.port) + "] " +
                    describePort(rules.at(ref.rule).ports.at(ref.port));
        }
      }
    } else {
      detail = "every peer";
    }
    if (ref.port < 0) detail += ", all ports";
    side.allowedByDetail = detail;
  } else if (!exp.allowed) {
    for (const auto* pol : ev.selectingPolicies(*pod, dir)) {
      side.misses.push_back({pol->key(), nearestMiss(ev, *pol, dir, flow)});
    }
  }
  return side;
}

std::string endWithAddress(const EndpointRef& e, const std::optional<IpAddr>& ip) {
  std::string s = e.describe();
  if (e.pod && ip) s += " (" + ip->toString() + ")";
  if (e.pod && e.pod->hostNetwork) s += " [hostNetwork]";
  return s;
}

void renderSideText(std::ostream& out, const SideReport& s, const std::string& name) {
  const char* dname = engine::directionName(s.direction);
  const auto& e = s.explanation;
  out << "  " << dname << " of " << name << ": ";
  if (!e.applies) {
    out << (s.pod ? "allowed (a hostNetwork pod is not a policy endpoint)\n"
                  : "allowed (not a pod: no policy applies to this side)\n");
    return;
  }
  if (!e.isolated) {
    out << "allowed (not isolated for " << dname << ": no " << dname << " policy selects it)\n";
    return;
  }
  // The verdict's words come from engine/wording.h, shared with the daemon's flow log.
  if (e.allowed && e.allowedBy) {
    std::string list;
    for (const auto& p : e.selectingPolicies) list += (list.empty() ? "" : ", ") + p;
    out << engine::sideText(s.direction, e) << " (" << s.allowedByDetail << ")\n";
    out << "    isolated for " << dname << " by " << list << "\n";
    return;
  }
  out << "DENIED: " << engine::sideText(s.direction, e) << "\n";
  for (const auto& m : s.misses) out << "    " << m.policy << ": " << m.reason << "\n";
}

nlohmann::ordered_json sideJson(const SideReport& s) {
  nlohmann::ordered_json j;
  const auto& e = s.explanation;
  j["pod"] = s.pod ? nlohmann::ordered_json(s.pod->key()) : nlohmann::ordered_json(nullptr);
  j["isolated"] = e.isolated;
  j["policies"] = e.selectingPolicies;
  if (e.allowedBy) {
    j["allowedBy"] = {{"policy", e.allowedBy->policy}, {"rule", e.allowedBy->rule}};
  } else {
    j["allowedBy"] = nullptr;
  }
  j["allowed"] = e.allowed;
  return j;
}

}  // namespace

Result<ExplainReport> explain(const Evaluator& ev, const std::string& from, const std::string& to,
                              const PortQuery& query) {
  ExplainReport r;
  SLUICE_ASSIGN_OR_RETURN(r.src, resolveEndpoint(ev, from, "--from"));
  SLUICE_ASSIGN_OR_RETURN(r.dst, resolveEndpoint(ev, to, "--to"));
  r.query = query;
  auto port = resolveQueryPort(query, r.dst.pod);
  if (!port) {
    const auto& name = std::get<std::string>(query.port);
    if (!r.dst.pod) {
      return makeError("--port " + name + ": a named port needs a destination pod, and " +
                       r.dst.describe() + " is not a pod");
    }
    return makeError("--port " + name + ": destination " + r.dst.pod->key() + " has no " +
                     model::protocolName(query.protocol) + " container port named " + name);
  }
  r.port = *port;
  std::tie(r.srcIp, r.dstIp) = pairAddresses(r.src, r.dst);

  engine::Flow flow;
  flow.src = FlowEnd{r.src.pod, r.srcIp};
  flow.dst = FlowEnd{r.dst.pod, r.dstIp};
  flow.protocol = query.protocol;
  flow.port = r.port;
  r.audit = engine::evaluateAudit(ev, flow);
  const engine::Verdict& v = r.audit.now;
  r.allowed = v.allowed;
  if (r.audit.outcome == engine::AuditOutcome::AuditDeny) {
    for (auto [dir, pod, now, once] :
         {std::tuple(Direction::Egress, r.src.pod, v.egress, r.audit.onceEnforced.egress),
          std::tuple(Direction::Ingress, r.dst.pod, v.ingress, r.audit.onceEnforced.ingress)}) {
      if (!pod || !now.allowed || once.allowed) continue;
      for (const auto* pol : ev.auditedPolicies(*pod, dir)) {
        r.auditMisses.push_back({pol->key(), nearestMiss(ev, *pol, dir, flow)});
      }
    }
  }
  r.egress = buildSide(ev, Direction::Egress, r.src.pod, v.egress, flow);
  r.ingress = buildSide(ev, Direction::Ingress, r.dst.pod, v.ingress, flow);
  return r;
}

void renderExplainText(std::ostream& out, const ExplainReport& r) {
  out << endWithAddress(r.src, r.srcIp) << " -> " << endWithAddress(r.dst, r.dstIp) << " "
      << model::protocolName(r.query.protocol) << "/" << r.port;
  if (r.query.isNamed()) out << " (" << r.query.portText() << ")";
  out << ": " << (r.allowed ? "ALLOWED" : "DENIED") << "\n";
  renderSideText(out, r.egress, r.src.describe());
  renderSideText(out, r.ingress, r.dst.describe());
  if (!r.audit.audited) return;
  if (r.audit.outcome == engine::AuditOutcome::None) {
    out << "  audit: the same once enforced (audited policies selecting an end:";
    for (const auto* side : {&r.audit.now.egress, &r.audit.now.ingress}) {
      for (const auto& p : side->auditedPolicies) out << " " << p;
    }
    out << ")\n";
    return;
  }
  out << "  " << engine::describeAudit(r.audit) << "\n";
  for (const auto& m : r.auditMisses) out << "    " << m.policy << ": " << m.reason << "\n";
}

void renderExplainJson(std::ostream& out, const ExplainReport& r) {
  nlohmann::ordered_json j;
  j["allowed"] = r.allowed;
  j["egress"] = sideJson(r.egress);
  j["ingress"] = sideJson(r.ingress);
  if (r.audit.audited) {
    j["audit"] = {{"outcome", engine::auditOutcomeName(r.audit.outcome)},
                  {"allowedOnceEnforced", r.audit.onceEnforced.allowed},
                  {"policies", r.audit.policies}};
  }
  out << j.dump() << "\n";
}

}  // namespace sluice::ctl
