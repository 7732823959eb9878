// The words a verdict is explained in, written once: `sluicectl explain` prints them and the
// daemon's flow log writes them, so an operator reads the same sentence in both places.
#pragma once

#include <string>

#include "policyd/engine/evaluator.h"

namespace sluice::engine {

// "spec.ingress[2]": the rule's field in the policy.
std::string ruleFieldText(Direction dir, int rule);

// One side of a verdict, without a leading verdict word:
//   allowed by a rule:  "allowed by NS/POLICY spec.ingress[i]"
//   not isolated:       "not isolated for ingress: no ingress policy selects it"
//   not a policy end:   "not a pod: no policy applies"
//   denied:             "isolated for ingress by NS/A, NS/B, none of whose rules match"
//                       (one policy: "isolated for ingress by NS/A, whose rules do not match")
std::string sideText(Direction dir, const SideExplanation& side);

// The whole flow in one line, naming the side that decided it: "denied: <egress side>" when the
// source's egress denies (checked first, as the packet meets it first), else "denied: <ingress
// side>"; an allowed flow lists both sides' reasons joined by "; ".
std::string verdictText(const Verdict& v);

}  // namespace sluice::engine
