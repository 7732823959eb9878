// The reference semantics of networking.k8s.io/v1 NetworkPolicy (DESIGN.md §5). This evaluator
// is the specification: the compiler and both datapaths are tested for equivalence against it,
// and `sluicectl explain` prints its explanation, so the dry-run and the enforced answer agree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ip.h"
#include "common/result.h"
#include "policyd/engine/selection.h"
#include "policyd/model/types.h"

namespace sluice::engine {

// One side of a flow: a pod (with the address it uses), or a bare address.
struct FlowEnd {
  const model::Pod* pod = nullptr;
  std::optional<IpAddr> ip;  // a pod without status.podIPs has none
};

struct Flow {
  FlowEnd src;
  FlowEnd dst;
  model::Protocol protocol = model::Protocol::TCP;
  uint16_t port = 0;
};

// Which rule allowed a side: policy "ns/name", index into its ingress/egress list, and the
// index of the matching peer and port within the rule (-1 when the list was empty = all).
struct RuleRef {
  std::string policy;
  int rule = 0;
  int peer = -1;
  int port = -1;
};

// Which policies a verdict counts (docs/audit.md). A policy annotated sluice.io/enforcement:
// audit is not enforced: the verdict the datapath enforces is computed as if it did not exist.
// The audit verdict ("once enforced") counts audited policies as if they were enforced too.
enum class View : uint8_t { Enforced, OnceEnforced };

struct SideExplanation {
  bool applies = false;   // false when this end is not a pod (bare IP): no policy applies
  bool isolated = false;  // the pod is isolated for this direction
  bool allowed = false;
  // "ns/name" of the policies selecting the pod here that the view counts.
  std::vector<std::string> selectingPolicies;
  std::optional<RuleRef> allowedBy;
  // "ns/name" of the audited policies selecting the pod here, whatever the view.
  std::vector<std::string> auditedPolicies;
};

struct Verdict {
  bool allowed = false;
  SideExplanation egress;   // the source's egress
  SideExplanation ingress;  // the destination's ingress
};

class Evaluator {
 public:
  // The cluster must outlive the evaluator. Construction indexes pods and policies by
  // namespace and address so explain on large dumps stays fast.
  explicit Evaluator(const model::Cluster& cluster);

  // The enforced verdict by default: what the datapath does.
  Verdict evaluate(const Flow& flow, View view = View::Enforced) const;

  const model::Cluster& cluster() const { return cluster_; }
  const model::Pod* findPod(std::string_view ns, std::string_view name) const;
  // The non-hostNetwork pod owning an address, if any.
  const model::Pod* podByIp(const IpAddr& ip) const;
  const model::Namespace* findNamespace(std::string_view name) const;
  // Labels of a namespace; an unknown namespace has none (kubernetes.io/metadata.name is
  // always present, as the API server sets it).
  const model::Labels& namespaceLabels(std::string_view name) const;

  // Named port resolution (selection.h), kept here for callers that hold an Evaluator.
  static std::optional<uint16_t> resolveNamedPort(const model::Pod& pod, std::string_view name,
                                                  model::Protocol protocol) {
    return engine::resolveNamedPort(pod, name, protocol);
  }

  // Policies in a pod's namespace that select it and affect the direction, in name order: the
  // enforced ones, plus the audited ones in View::OnceEnforced.
  std::vector<const model::NetworkPolicy*> selectingPolicies(const model::Pod& pod, Direction dir,
                                                             View view = View::Enforced) const;
  // Only the audited policies that select the pod for the direction.
  std::vector<const model::NetworkPolicy*> auditedPolicies(const model::Pod& pod,
                                                           Direction dir) const;
  // Whether the cluster has any audited policy (callers skip the second verdict otherwise).
  bool hasAuditedPolicies() const { return !auditedByNs_.empty(); }

  // Does `peer` of policy `pol` match the other end of a flow?
  bool peerMatches(const model::NetworkPolicy& pol, const model::Peer& peer,
                   const FlowEnd& other) const;
  // Does a port spec match (protocol, port) towards destination `dst` (selection.h)?
  static bool portMatches(const model::PortSpec& spec, model::Protocol protocol, uint16_t port,
                          const model::Pod* dst) {
    return engine::portMatches(spec, protocol, port, dst);
  }

 private:
  SideExplanation evaluateSide(const model::Pod& pod, Direction dir, const Flow& flow,
                               View view) const;
  static void appendSelecting(
      const std::unordered_map<std::string, std::vector<const model::NetworkPolicy*>>& byNs,
      const model::Pod& pod, Direction dir, std::vector<const model::NetworkPolicy*>& out);

  const model::Cluster& cluster_;
  std::unordered_map<std::string, const model::Namespace*> namespaces_;
  std::unordered_map<std::string, const model::Pod*> podsByKey_;
  std::unordered_map<IpAddr, const model::Pod*> podsByIp_;
  std::unordered_map<std::string, std::vector<const model::NetworkPolicy*>> policiesByNs_;
  std::unordered_map<std::string, std::vector<const model::NetworkPolicy*>> auditedByNs_;
  model::Labels emptyLabels_;
  std::unordered_map<std::string, model::Labels> implicitNsLabels_;
};

}  // namespace sluice::engine
