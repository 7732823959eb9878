#include "cni/ipam/allocator.h"

#include <algorithm>

namespace sluice::cni::ipam {

namespace {
// Bounds the probe loop in huge IPv6 ranges; a set this full is exhausted in practice.
constexpr U128 kMaxProbes = U128{1} << 20;
}  // namespace

Allocation Allocator::describe(const IpAddr& ip) const {
  for (const auto& set : config_.rangeSets) {
    for (const auto& r : set.ranges) {
      if (r.subnet.contains(ip)) return Allocation{ip, r.subnet, r.gateway};
    }
  }
  // The address predates a config change; report it as a host address.
  return Allocation{ip, Prefix::host(ip), std::nullopt};
}

Result<IpAddr> Allocator::nextFree(size_t setIndex, const std::vector<IpAddr>& taken) {
  const RangeSet& set = config_.rangeSets[setIndex];
  SLUICE_ASSIGN_OR_RETURN(auto last, store_.lastReserved(setIndex));
  // Position: range index and address within it. Start just after the cursor, or at the
  // first address when the cursor is missing or no longer inside the set.
  size_t ri = 0;
  U128 cur = toU128(set.ranges[0].start);
  bool first = true;
  if (last) {
    for (size_t i = 0; i < set.ranges.size(); ++i) {
      if (set.ranges[i].contains(*last)) {
        ri = i;
        cur = toU128(*last);
        first = false;
        break;
      }
    }
  }
  auto advance = [&]() {
    if (cur < toU128(set.ranges[ri].end)) {
      ++cur;
    } else {
      ri = (ri + 1) % set.ranges.size();
      cur = toU128(set.ranges[ri].start);
    }
  };
  if (!first) advance();
  U128 total = 0;
  for (const auto& r : set.ranges) total += r.size();
  U128 probes = std::min(total, kMaxProbes);
  Family fam = set.family();
  for (U128 i = 0; i < probes; ++i, advance()) {
    IpAddr cand = fromU128(fam, cur);
    const Range& r = set.ranges[ri];
    if (r.gateway && *r.gateway == cand) continue;
    if (std::find(taken.begin(), taken.end(), cand) != taken.end()) continue;
    SLUICE_ASSIGN_OR_RETURN(bool reserved, store_.isReserved(cand));
    if (!reserved) return cand;
  }
  return makeError("no free addresses left in range set " + std::to_string(setIndex) + " (" +
                       set.describe() + ")",
                   kErrAddressesExhausted);
}

Result<std::vector<Allocation>> Allocator::allocate(const Attachment& a,
                                                    const std::vector<IpAddr>& requested) {
  SLUICE_ASSIGN_OR_RETURN(auto existing, store_.addressesOf(a));
  if (!existing.empty()) {
    std::vector<Allocation> out;
    for (const auto& ip : existing) out.push_back(describe(ip));
    return out;
  }
  std::vector<bool> used(requested.size(), false);
  std::vector<IpAddr> picked;
  for (size_t s = 0; s < config_.rangeSets.size(); ++s) {
    const RangeSet& set = config_.rangeSets[s];
    std::optional<IpAddr> choice;
    for (size_t i = 0; i < requested.size(); ++i) {
      if (used[i] || !set.contains(requested[i])) continue;
      used[i] = true;
      const IpAddr& want = requested[i];
      for (const auto& r : set.ranges) {
        if (r.gateway && *r.gateway == want) {
          return makeError("runtimeConfig.ips: " + want.toString() + " is the range's gateway",
                           kErrInvalidConfig);
        }
      }
      SLUICE_ASSIGN_OR_RETURN(auto owner, store_.ownerOf(want));
      if (owner && *owner != a) {
        return makeError("runtimeConfig.ips: " + want.toString() + " is already reserved by " +
                             owner->containerId + "/" + owner->ifname,
                         kErrInvalidConfig);
      }
      choice = want;
      break;
    }
    if (!choice) {
      SLUICE_ASSIGN_OR_RETURN(IpAddr ip, nextFree(s, picked));
      choice = ip;
    }
    picked.push_back(*choice);
  }
  for (size_t i = 0; i < requested.size(); ++i) {
    if (!used[i]) {
      return makeError("runtimeConfig.ips: " + requested[i].toString() +
                           " is not inside any configured range",
                       kErrInvalidConfig);
    }
  }
  auto st = store_.reserve(a, picked);
  if (!st.ok()) return withCode(st.error(), kErrInternal);
  for (size_t s = 0; s < picked.size(); ++s) {
    auto cur = store_.setLastReserved(s, picked[s]);
    if (!cur.ok()) {
      (void)store_.release(a);  // the caller sees a failed ADD; keep nothing
      return withCode(cur.error(), kErrInternal);
    }
  }
  std::vector<Allocation> out;
  for (const auto& ip : picked) out.push_back(describe(ip));
  return out;
}

}  // namespace sluice::cni::ipam
