#include "policyd/engine/audit.h"

#include <algorithm>

namespace sluice::engine {

const char* auditOutcomeName(AuditOutcome o) {
  switch (o) {
    case AuditOutcome::None:
      return "none";
    case AuditOutcome::AuditDeny:
      return "audit-deny";
    case AuditOutcome::AuditAllow:
      return "audit-allow";
  }
  return "?";
}

AuditVerdict evaluateAudit(const Evaluator& ev, const Flow& flow) {
  AuditVerdict v;
  v.now = ev.evaluate(flow, View::Enforced);
  v.audited = !v.now.egress.auditedPolicies.empty() || !v.now.ingress.auditedPolicies.empty();
  if (!v.audited) {
    v.onceEnforced = v.now;
    return v;
  }
  v.onceEnforced = ev.evaluate(flow, View::OnceEnforced);
  if (v.now.allowed == v.onceEnforced.allowed) return v;
  v.outcome = v.now.allowed ? AuditOutcome::AuditDeny : AuditOutcome::AuditAllow;
  for (auto side : {&Verdict::egress, &Verdict::ingress}) {
    const SideExplanation& now = v.now.*side;
    const SideExplanation& once = v.onceEnforced.*side;
    if (v.outcome == AuditOutcome::AuditDeny && now.allowed && !once.allowed) {
      // The side was allowed now, so no enforced policy isolated it (an enforced allow would
      // still be in the union): every policy isolating it once enforced is an audited one.
      v.policies.insert(v.policies.end(), once.selectingPolicies.begin(),
                        once.selectingPolicies.end());
    } else if (v.outcome == AuditOutcome::AuditAllow && !now.allowed && once.allowed &&
               once.allowedBy) {
      v.policies.push_back(once.allowedBy->policy);
    }
  }
  std::sort(v.policies.begin(), v.policies.end());
  v.policies.erase(std::unique(v.policies.begin(), v.policies.end()), v.policies.end());
  return v;
}

std::string describeAudit(const AuditVerdict& v) {
  std::string words;
  switch (v.outcome) {
    case AuditOutcome::None:
      return words;
    case AuditOutcome::AuditDeny:
      words = "allowed now, denied once enforced";
      break;
    case AuditOutcome::AuditAllow:
      words = "denied now, allowed once enforced";
      break;
  }
  words += " (audit: ";
  for (size_t i = 0; i < v.policies.size(); ++i) words += (i ? ", " : "") + v.policies[i];
  return words + ")";
}

}  // namespace sluice::engine
