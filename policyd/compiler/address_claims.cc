// Address claims: who owns an address (this node, a local endpoint, or a pod) decides its
// label group, and so its class. Claims are kept per address so a stale pod object sharing an
// address with a live one resolves the same way whatever the order of the model.
#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

void Compiler::Impl::addClaim(const IpAddr& ip, ClaimKey key, Group* g) {
  auto [it, inserted] = addrs.try_emplace(ip);
  if (inserted) addrIndex.insert(ip);
  it->second.claims[std::move(key)] = g;
  dirtyAddrs.insert(ip);
}

void Compiler::Impl::removeClaim(const IpAddr& ip, const ClaimKey& key) {
  auto it = addrs.find(ip);
  if (it == addrs.end()) return;
  it->second.claims.erase(key);
  dirtyAddrs.insert(ip);
}

// Pod claims: the pod's status addresses, unless the pod shares the node's network namespace
// ("hostNetwork pods are not policy endpoints"; their addresses are the node's).
void Compiler::Impl::claimPod(const Pod& pod) {
  if (pod.hostNetwork || pod.ips.empty()) return;
  Group* g = acquireGroup(pod);
  for (const auto& ip : pod.ips) addClaim(ip, {2, pod.key()}, g);
}

void Compiler::Impl::unclaimPod(const Pod& pod) {
  if (pod.hostNetwork || pod.ips.empty()) return;
  Group* g = groups.at(groupKeyOf(pod)).get();
  for (const auto& ip : pod.ips) removeClaim(ip, {2, pod.key()});
  releaseGroup(g);
}

}  // namespace sluice::compiler
