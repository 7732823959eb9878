// Class interning: each owned address and each partition prefix gets the class of its
// signature (what the rules can see of it); signatures are interned, so equal signatures share
// one ClassId, and the class map entries that changed go into the Diff.
#include <algorithm>
#include <set>

#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

void Compiler::Impl::updateClasses(PendingPrefixes& pendingPrefixes, Diff& diff) {
  // Host addresses are always re-signed (their kind depends on hostAddresses[0]).
  for (const auto& ip : node.hostAddresses) dirtyAddrs.insert(ip);
  const std::vector<RuleId>* primaryIp =
      node.hostAddresses.empty() ? nullptr : &lpmIpSet(node.hostAddresses.front());

  struct PendingAddr {
    IpAddr ip;
    std::optional<Signature> sig;
  };
  std::vector<PendingAddr> pendingAddrs;
  pendingAddrs.reserve(dirtyAddrs.size());
  for (const auto& ip : dirtyAddrs) {
    auto it = addrs.find(ip);
    if (it == addrs.end()) continue;
    AddrEntry& e = it->second;
    Group* owner = nullptr;
    bool host = false, owned = !e.claims.empty();
    if (owned) {
      host = e.claims.begin()->first.first == 0;
      owner = e.claims.begin()->second;
    }
    if (e.owner != owner) {
      if (e.owner) e.owner->owned.erase(ip);
      if (owner) owner->owned.insert(ip);
      e.owner = owner;
    }
    e.host = host;
    std::optional<Signature> sig;
    if (owned) {
      sig.emplace();
      sig->ip = lpmIpSet(ip);
      if (host) {
        sig->kind = (primaryIp && sig->ip == *primaryIp) ? Kind::HostPrimary : Kind::Host;
      } else if (owner) {
        sig->sel = owner->sel;
        sig->res = owner->res;
      }
    }
    pendingAddrs.push_back({ip, std::move(sig)});
  }
  // A full-length partition prefix (an ipBlock of one address) is shadowed by the address's own
  // entry while something claims the address; it only needs a class of its own when nothing
  // does, so no class exists that no address maps to.
  auto shadowCheck = [&](const Prefix& p) {
    if (p.len() != p.addr().bits()) return;
    auto part = partition.find(p);
    auto a = addrs.find(p.addr());
    if (part == partition.end() || (a != addrs.end() && !a->second.claims.empty())) {
      pendingPrefixes[p] = std::nullopt;
    } else {
      pendingPrefixes[p] = Signature{Kind::Address, {}, part->second, {}};
    }
  };
  for (const auto& entry : pendingPrefixes) shadowCheck(entry.first);
  for (const auto& p : pendingAddrs) {
    if (partition.contains(Prefix::host(p.ip))) shadowCheck(Prefix::host(p.ip));
  }
  stats.classesRecomputed = pendingAddrs.size() + pendingPrefixes.size();

  // Two phases, so a class whose members all move keeps its id when another member takes the
  // same signature in this update.
  std::vector<ClassId> released;
  auto release = [&](ClassId id) {
    const Signature* s = classSig.at(id);
    sigs.at(*s).refs--;
    released.push_back(id);
  };
  std::vector<std::pair<ClassId, Signature>> destroyed;
  std::vector<ClassId> created;
  auto destroy = [&](ClassId id) {
    const Signature* s = classSig.at(id);
    destroyed.emplace_back(id, *s);
    classSig.erase(id);
    sigs.erase(*s);
    if (id >= kFirstDynamicClass) classIdAlloc.release(id);
  };
  auto acquire = [&](const Signature& s) -> ClassId {
    auto it = sigs.find(s);
    if (it != sigs.end()) {
      it->second.refs++;
      return it->second.id;
    }
    ClassId id;
    if (s.kind == Kind::HostPrimary) {
      // Only one signature holds kHostClass: the previous one has no members left, since every
      // host address was released above.
      if (classSig.contains(kHostClass)) destroy(kHostClass);
      id = kHostClass;
    } else if (s.kind == Kind::Address && s.sel.empty() && s.ip.empty() && s.res.empty()) {
      id = kWorldClass;
    } else {
      id = classIdAlloc.allocate();
    }
    it = sigs.emplace(s, ClassInfo{id, 1}).first;
    classSig[id] = &it->first;
    created.push_back(id);
    return id;
  };

  for (const auto& p : pendingAddrs) {
    const AddrEntry& e = addrs.at(p.ip);
    if (e.cls != 0) release(e.cls);
  }
  for (const auto& [prefix, sig] : pendingPrefixes) {
    auto it = partitionClass.find(prefix);
    if (it != partitionClass.end()) release(it->second);
  }
  std::set<Prefix> touchedKeys;
  for (auto& p : pendingAddrs) {
    AddrEntry& e = addrs.at(p.ip);
    e.cls = p.sig ? acquire(*p.sig) : 0;
    e.owned = p.sig.has_value();
    touchedKeys.insert(Prefix::host(p.ip));
  }
  for (auto& [prefix, sig] : pendingPrefixes) {
    if (sig) {
      partitionClass[prefix] = acquire(*sig);
    } else {
      partitionClass.erase(prefix);
    }
    touchedKeys.insert(prefix);
  }
  for (ClassId id : released) {
    if (!classSig.contains(id)) continue;  // already destroyed (kHostClass handover)
    if (sigs.at(*classSig.at(id)).refs == 0) destroy(id);
  }
  // Addresses nobody claims any more.
  for (const auto& p : pendingAddrs) {
    auto it = addrs.find(p.ip);
    if (it != addrs.end() && it->second.claims.empty()) {
      addrIndex.erase(p.ip);
      addrs.erase(it);
    }
  }

  // The class map: an address's own entry beats a partition prefix of the same length.
  for (const Prefix& key : touchedKeys) {
    std::optional<ClassId> want;
    if (key.len() == key.addr().bits()) {
      auto it = addrs.find(key.addr());
      if (it != addrs.end() && it->second.owned) want = it->second.cls;
    }
    if (!want) {
      auto it = partitionClass.find(key);
      if (it != partitionClass.end()) want = it->second;
    }
    auto cur = state.classes.find(key);
    if (want) {
      if (cur == state.classes.end() || cur->second != *want) {
        state.classes[key] = *want;
        diff.classesUpsert[key] = *want;
      }
    } else if (cur != state.classes.end()) {
      state.classes.erase(cur);
      diff.classesRemove.push_back(key);
    }
  }

  // Classes that appeared or disappeared change the allow sets of the endpoints whose rules
  // name them.
  auto markRules = [&](const Signature& s) {
    for (const auto* v : {&s.sel, &s.ip}) {
      for (RuleId r : *v) {
        auto it = rules.find(r);
        if (it == rules.end()) continue;  // freed: its endpoints are dirty already
        const auto& eps =
            policySel[it->second.origin.policy][dirIndex(it->second.origin.direction)];
        dirtyEndpoints.insert(eps.begin(), eps.end());
      }
    }
    if (s.kind == Kind::Host) {
      for (const auto& [id, ev] : endpoints) dirtyEndpoints.insert(id);
    }
  };
  for (const auto& [id, s] : destroyed) {
    for (const auto* v : {&s.sel, &s.ip}) {
      for (RuleId r : *v) {
        auto it = ruleClasses.find(r);
        if (it == ruleClasses.end()) continue;
        it->second.erase(id);
        if (it->second.empty()) ruleClasses.erase(it);
      }
    }
    if (s.kind == Kind::Host) hostClasses.erase(id);
    markRules(s);
  }
  for (ClassId id : created) {
    if (!classSig.contains(id)) continue;  // created and destroyed again (kHostClass)
    const Signature& s = *classSig.at(id);
    for (const auto* v : {&s.sel, &s.ip}) {
      for (RuleId r : *v) ruleClasses[r].insert(id);
    }
    if (s.kind == Kind::Host) hostClasses.insert(id);
    markRules(s);
  }
}

}  // namespace sluice::compiler
