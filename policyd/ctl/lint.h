// `sluicectl lint`: the NetworkPolicy mistakes operators actually make, found against the pods
// and namespaces in the given manifests. Each check is its own function so it can be tested
// alone; lint() runs them all.
#pragma once

#include <functional>
#include <ostream>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "policyd/engine/evaluator.h"

namespace sluice::ctl {

// Finding kinds (the first word after WARN).
inline constexpr const char* kPolicySelectsNothing = "policy-selects-nothing";
inline constexpr const char* kPeerSelectsNothing = "peer-selects-nothing";
inline constexpr const char* kEgressWithoutDns = "egress-without-dns";
inline constexpr const char* kUnknownNamedPort = "unknown-named-port";
inline constexpr const char* kIpBlockCoversPods = "ipblock-covers-pods";
inline constexpr const char* kShadowedRule = "shadowed-rule";
inline constexpr const char* kIgnoredRules = "ignored-rules";
inline constexpr const char* kOrPeers = "or-peers";
inline constexpr const char* kIpBlockHostBits = "ipblock-host-bits";
inline constexpr const char* kIpBlockIpv4Mapped = "ipblock-ipv4-mapped";
inline constexpr const char* kDuplicateKey = "duplicate-key";
inline constexpr const char* kUnknownEnforcement = "unknown-enforcement";

struct Finding {
  std::string kind;
  std::string object;  // the policy, "ns/name"
  std::string field;   // "spec.ingress[0].from[1].namespaceSelector"
  std::string message;
  std::string hint;
};

// Precomputed views of the cluster the checks share.
class LintContext {
 public:
  explicit LintContext(const engine::Evaluator& ev);

  const engine::Evaluator& ev() const { return ev_; }
  const model::Cluster& cluster() const { return ev_.cluster(); }
  // Non-hostNetwork pods of a namespace, sorted by name.
  const std::vector<const model::Pod*>& podsIn(const std::string& ns) const;
  // Pods a policy's podSelector selects (whatever its policyTypes), in pod order.
  const std::vector<const model::Pod*>& selected(const model::NetworkPolicy& pol) const;
  // Every namespace known from Namespace objects or from pods, sorted.
  const std::vector<std::string>& namespaces() const { return namespaces_; }
  // Namespaces whose labels a selector matches (memoized per selector).
  const std::vector<std::string>& namespacesMatching(const model::LabelSelector& sel) const;
  // Pods (non-hostNetwork) a selector peer of `pol` matches.
  std::vector<const model::Pod*> peerPods(const model::NetworkPolicy& pol,
                                          const model::Peer& peer) const;
  // Whether `pred` holds for some pod a selector peer of `pol` matches; stops at the first.
  bool anyPeerPod(const model::NetworkPolicy& pol, const model::Peer& peer,
                  const std::function<bool(const model::Pod&)>& pred) const;
  // Whether some pod defines container port `name` as port 53 of `protocol`.
  bool namedPortIsDns(const std::string& name, model::Protocol protocol) const;
  // Pod addresses, sorted, for range queries against ipBlocks.
  const std::vector<std::pair<IpAddr, const model::Pod*>>& addresses() const { return addrs_; }

 private:
  const engine::Evaluator& ev_;
  std::vector<std::string> namespaces_;
  std::unordered_map<std::string, std::vector<const model::Pod*>> podsByNs_;
  std::unordered_map<const model::NetworkPolicy*, std::vector<const model::Pod*>> selected_;
  std::vector<std::pair<IpAddr, const model::Pod*>> addrs_;
  std::vector<const model::Pod*> none_;
  std::set<std::pair<std::string, model::Protocol>> dnsNames_;
  mutable std::unordered_map<std::string, std::vector<std::string>> nsBySelector_;
};

void checkPolicySelectsNothing(const LintContext& ctx, std::vector<Finding>& out);
void checkPeerSelectsNothing(const LintContext& ctx, std::vector<Finding>& out);
void checkEgressWithoutDns(const LintContext& ctx, std::vector<Finding>& out);
void checkUnknownNamedPorts(const LintContext& ctx, std::vector<Finding>& out);
void checkIpBlockCoversPods(const LintContext& ctx, std::vector<Finding>& out);
void checkShadowedRules(const LintContext& ctx, std::vector<Finding>& out);
void checkIgnoredRules(const LintContext& ctx, std::vector<Finding>& out);
void checkOrPeers(const LintContext& ctx, std::vector<Finding>& out);
// ipBlock CIDRs written with host bits set ("10.0.0.5/24"): accepted, and they mean the
// network, which is rarely what the author meant.
void checkIpBlockHostBits(const LintContext& ctx, std::vector<Finding>& out);
// IPv4-mapped IPv6 ipBlocks ("::ffff:10.0.0.0/120"): IPv6 prefixes, never IPv4 traffic.
void checkIpBlockIpv4Mapped(const LintContext& ctx, std::vector<Finding>& out);
// Keys the manifest gives twice: the last value is used.
void checkDuplicateKeys(const LintContext& ctx, std::vector<Finding>& out);

// sluice.io/enforcement with a value other than "audit" or "enforce": accepted and enforced,
// but probably meant as audit ("Audit", "dry-run").
void checkEnforcementAnnotation(const LintContext& ctx, std::vector<Finding>& out);

// All checks; findings sorted by object, then field, then kind.
std::vector<Finding> lint(const engine::Evaluator& ev);

// One line per finding: "WARN <kind> <ns/name> <field>: <message> (hint: <hint>)".
void renderLintText(std::ostream& out, const std::vector<Finding>& findings);
// {"findings":[{"kind":..,"object":..,"field":..,"message":..,"hint":..}]}
void renderLintJson(std::ostream& out, const std::vector<Finding>& findings);

// Exposed for tests: does a rule allow DNS (UDP or TCP 53) to some destination?
bool ruleAllowsDns(const LintContext& ctx, const model::Rule& rule);
// Does rule `a` allow everything rule `b` allows (same direction, same selected pods)? Exact
// structural cases only: no false positives, some misses.
bool ruleCovers(const model::Rule& a, const model::Rule& b);

}  // namespace sluice::ctl
