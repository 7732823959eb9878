// Audit mode: a NetworkPolicy annotated `sluice.io/enforcement: audit` is evaluated on real
// traffic but not enforced (docs/audit.md has the semantics in full). This is the one place that
// decides what an audited policy means for a flow; the daemon's flow log, `sluicectl explain`
// and `sluicectl matrix` all ask it.
//
//  - The enforced verdict is computed as if audited policies did not exist: an audited policy
//    isolates nobody and allows nothing.
//  - The audit verdict ("once enforced") is computed as if audited policies were enforced too.
//    Each side's allowed set is still the union over every policy selecting it, so:
//      * an audited policy can only turn a side from allowed to denied when no enforced policy
//        isolates that side: where an enforced policy isolates the pod and allows the flow, the
//        union keeps allowing it whatever the audited policy says;
//      * an audited policy's allow rules matter only where the side is already isolated (by an
//        enforced policy, or by audited ones): they can turn "denied now" into "allowed once
//        enforced", never the reverse.
#pragma once

#include <string>
#include <vector>

#include "policyd/engine/evaluator.h"

namespace sluice::engine {

enum class AuditOutcome : uint8_t {
  None,        // enforcing the audited policies would not change the verdict
  AuditDeny,   // allowed now, denied once enforced
  AuditAllow,  // denied now, allowed once enforced
};
const char* auditOutcomeName(AuditOutcome o);  // "none", "audit-deny", "audit-allow"

struct AuditVerdict {
  Verdict now;           // enforced policies only: what the datapath does
  Verdict onceEnforced;  // audited policies enforced too; equals `now` when none selects an end
  // An audited policy selects the source for egress or the destination for ingress.
  bool audited = false;
  AuditOutcome outcome = AuditOutcome::None;
  // The audited policies responsible ("ns/name", sorted, unique): for AuditDeny those that
  // would isolate the side(s) that deny once enforced, none of whose rules match; for
  // AuditAllow those whose rule would allow the side(s) that deny now.
  std::vector<std::string> policies;
};

AuditVerdict evaluateAudit(const Evaluator& ev, const Flow& flow);

// In explain's words: "allowed now, denied once enforced (audit: ns/a, ns/b)", "denied now,
// allowed once enforced (audit: ns/a)"; empty for AuditOutcome::None.
std::string describeAudit(const AuditVerdict& v);

}  // namespace sluice::engine
