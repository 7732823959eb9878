// Diffs: the allow sets of the endpoints marked dirty are rebuilt and compared with the state,
// and only their differences (and the rule origins that changed) go into the Diff.
#include <algorithm>
#include <iterator>

#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

void Compiler::Impl::emitEndpointChanges(Diff& diff) {
  static const EndpointPolicy kEmpty;
  for (EndpointId id : dirtyEndpoints) {
    auto eit = endpoints.find(id);
    auto sit = state.endpoints.find(id);
    if (eit == endpoints.end()) {
      if (sit == state.endpoints.end()) continue;
      Diff::EndpointChange c;
      c.endpoint = id;
      c.removed = true;
      c.remove.assign(sit->second.entries.begin(), sit->second.entries.end());
      diff.endpoints.push_back(std::move(c));
      state.endpoints.erase(sit);
      continue;
    }
    EndpointPolicy next = buildEndpoint(eit->second);
    const bool existed = sit != state.endpoints.end();
    const EndpointPolicy& old = existed ? sit->second : kEmpty;
    if (existed && old == next) continue;
    Diff::EndpointChange c;
    c.endpoint = id;
    c.ingressIsolated = next.ingressIsolated;
    c.egressIsolated = next.egressIsolated;
    c.audited = next.audited;
    std::set_difference(next.entries.begin(), next.entries.end(), old.entries.begin(),
                        old.entries.end(), std::back_inserter(c.add));
    std::set_difference(old.entries.begin(), old.entries.end(), next.entries.begin(),
                        next.entries.end(), std::back_inserter(c.remove));
    diff.endpoints.push_back(std::move(c));
    state.endpoints[id] = std::move(next);
  }
}

void Compiler::Impl::emitRuleChanges(Diff& diff) {
  for (RuleId id : ruleIdsTouched) {
    if (id >= state.rules.size()) state.rules.resize(id + 1);
    auto it = rules.find(id);
    RuleOrigin origin = it == rules.end() ? RuleOrigin{} : it->second.origin;
    if (state.rules[id] != origin) {
      state.rules[id] = origin;
      diff.rulesUpsert.emplace_back(id, origin);
    }
  }
}

}  // namespace sluice::compiler
