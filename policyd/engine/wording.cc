#include "policyd/engine/wording.h"

namespace sluice::engine {

std::string ruleFieldText(Direction dir, int rule) {
  return std::string("spec.") + directionName(dir) + "[" + std::to_string(rule) + "]";
}

std::string sideText(Direction dir, const SideExplanation& side) {
  const char* dname = directionName(dir);
  if (!side.applies) return "not a pod: no policy applies";
  if (!side.isolated) {
    return std::string("not isolated for ") + dname + ": no " + dname + " policy selects it";
  }
  if (side.allowed && side.allowedBy) {
    return "allowed by " + side.allowedBy->policy + " " + ruleFieldText(dir, side.allowedBy->rule);
  }
  std::string list;
  for (const auto& p : side.selectingPolicies) list += (list.empty() ? "" : ", ") + p;
  return std::string("isolated for ") + dname + " by " + list +
         (side.selectingPolicies.size() == 1 ? ", whose rules do not match"
                                             : ", none of whose rules match");
}

std::string verdictText(const Verdict& v) {
  if (!v.egress.allowed) return "denied: " + sideText(Direction::Egress, v.egress);
  if (!v.ingress.allowed) return "denied: " + sideText(Direction::Ingress, v.ingress);
  return sideText(Direction::Egress, v.egress) + "; " + sideText(Direction::Ingress, v.ingress);
}

}  // namespace sluice::engine
