// The rule table: the relevant rules (rules of policies that select some local endpoint), each
// with a RuleId that lives as long as the rule is relevant.
#include <algorithm>

#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

void Compiler::Impl::updateRules(const OldPolicies& oldPolicies) {
  std::set<std::string> touched;
  for (const auto& [key, old] : oldPolicies) touched.insert(key);
  for (const auto& [key, d] : touchedSel) touched.insert(key);

  for (const auto& key : touched) {
    auto pit = policies.find(key);
    const NetworkPolicy* now = pit == policies.end() ? nullptr : &pit->second;
    auto oit = oldPolicies.find(key);
    const bool changed = oit != oldPolicies.end();
    const NetworkPolicy* before = changed ? (oit->second ? &*oit->second : nullptr) : now;
    auto& rel = relevant[key];
    for (int d = 0; d < kDirs; ++d) {
      const Direction dir = static_cast<Direction>(d);
      const bool oldRel = rel[d];
      auto sit = policySel.find(key);
      const bool newRel = now && sit != policySel.end() && !sit->second[d].empty();
      rel[d] = newRel;
      if (!oldRel && !newRel) continue;
      const size_t oldN = oldRel && before ? rulesOf(*before, dir).size() : 0;
      const size_t newN = newRel ? rulesOf(*now, dir).size() : 0;
      for (size_t i = 0; i < std::max(oldN, newN); ++i) {
        const bool oldHas = i < oldN, newHas = i < newN;
        RuleOrigin origin{key, dir, static_cast<int>(i)};
        if (oldHas && newHas && !changed) continue;
        if (oldHas && hasIpBlock(rulesOf(*before, dir)[i])) partitionDirty = true;
        if (newHas) {
          auto [it, inserted] = ruleIds.try_emplace(origin, 0);
          if (inserted) {
            it->second = ruleIdAlloc.allocate();
            ruleIdsTouched.insert(it->second);
          }
          rules[it->second] = RuleInfo{origin, now, &rulesOf(*now, dir)[i]};
          changedRules.insert(it->second);
          if (hasIpBlock(rulesOf(*now, dir)[i])) partitionDirty = true;
        } else {
          auto it = ruleIds.find(origin);
          RuleId id = it->second;
          ruleIds.erase(it);
          rules.erase(id);
          ruleIdAlloc.release(id);
          ruleIdsTouched.insert(id);
          changedRules.insert(id);
        }
      }
      if (newRel) {
        // The policy object may have been replaced: refresh pointers of unchanged rules too.
        for (size_t i = 0; i < newN; ++i) {
          RuleId id = ruleIds.at(RuleOrigin{key, dir, static_cast<int>(i)});
          rules[id].policy = now;
          rules[id].rule = &rulesOf(*now, dir)[i];
        }
        // New or changed rules change these endpoints' allow sets.
        if (changed || !oldRel) {
          const auto& eps = policySel[key][d];
          dirtyEndpoints.insert(eps.begin(), eps.end());
        }
      }
    }
    if (!now && pit == policies.end()) {
      policySel.erase(key);
      relevant.erase(key);
    }
  }
}

}  // namespace sluice::compiler
