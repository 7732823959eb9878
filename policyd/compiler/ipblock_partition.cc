// The ipBlock partition: every cidr and except of a relevant rule, plus 0.0.0.0/0 and ::/0,
// each with the rules whose block contains it. For an address whose longest matching prefix
// in the set is P, block B contains the address iff B contains P, so the longest match gives
// every address its exact ipBlock membership.
#include <algorithm>
#include <array>
#include <set>

#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

const std::vector<RuleId>& Compiler::Impl::lpmIpSet(const IpAddr& a) {
  for (int len : partitionLens[a.isV4() ? 0 : 1]) {
    auto it = partition.find(Prefix(a, len));
    if (it != partition.end()) return it->second;
  }
  static const std::vector<RuleId> kNone;
  return kNone;  // unreachable: 0.0.0.0/0 and ::/0 are always in the partition
}

void Compiler::Impl::updatePartition(PendingPrefixes& pendingPrefixes) {
  if (!partitionDirty) return;
  std::map<Prefix, std::vector<RuleId>> next;
  next.emplace(Prefix(IpAddr::v4(0), 0), std::vector<RuleId>{});
  next.emplace(Prefix(IpAddr::v6({}), 0), std::vector<RuleId>{});
  std::vector<std::pair<RuleId, const model::IPBlock*>> blocks;
  for (const auto& [id, info] : rules) {
    for (const auto& peer : info.rule->peers) {
      if (!peer.ipBlock) continue;
      blocks.emplace_back(id, &*peer.ipBlock);
      next.try_emplace(peer.ipBlock->cidr);
      for (const auto& e : peer.ipBlock->except) next.try_emplace(e);
    }
  }
  std::array<std::set<int, std::greater<>>, 2> lens;
  for (auto& [prefix, ip] : next) {
    lens[prefix.family() == Family::V4 ? 0 : 1].insert(prefix.len());
    for (const auto& [id, block] : blocks) {
      // Exact: every except of the block is itself a prefix of the partition.
      if (block->contains(prefix)) ip.push_back(id);
    }
    std::sort(ip.begin(), ip.end());
    ip.erase(std::unique(ip.begin(), ip.end()), ip.end());
  }
  for (const auto& [prefix, ip] : partition) {
    if (!next.contains(prefix)) pendingPrefixes[prefix] = std::nullopt;
  }
  for (const auto& [prefix, ip] : next) {
    auto it = partition.find(prefix);
    if (it == partition.end() || it->second != ip) {
      pendingPrefixes[prefix] = Signature{Kind::Address, {}, ip, {}};
    }
  }
  partition = std::move(next);
  for (int f = 0; f < 2; ++f) partitionLens[f].assign(lens[f].begin(), lens[f].end());
  // An address's ipBlock membership is that of its longest matching prefix, so it can change
  // only for addresses inside a prefix that appeared, disappeared or changed its rules: a
  // policy change that leaves every block's rules as they were re-signs no address at all.
  for (const auto& [prefix, sig] : pendingPrefixes) {
    for (auto it = addrIndex.lower_bound(prefix.addr());
         it != addrIndex.end() && prefix.contains(*it); ++it) {
      dirtyAddrs.insert(*it);
    }
  }
}

}  // namespace sluice::compiler
