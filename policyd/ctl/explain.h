// `sluicectl explain`: the reference evaluator's verdict for one connection, plus, for a side
// that denies, why: which policies isolate the pod and each one's nearest miss.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/ctl/args.h"
#include "policyd/ctl/endpoint.h"
#include "policyd/engine/evaluator.h"

namespace sluice::ctl {

// Why one selecting policy did not allow a denied side.
struct PolicyMiss {
  std::string policy;  // "ns/name"
  std::string reason;  // "has no ingress rules ..." / "nearest miss spec.ingress[0]: ..."
};

struct SideReport {
  engine::Direction direction = engine::Direction::Egress;
  const model::Pod* pod = nullptr;  // the pod this side is about; null for a bare address
  engine::SideExplanation explanation;
  std::string allowedByDetail;    // "from[1] namespaceSelector team=a, ports[0] TCP/8080"
  std::vector<PolicyMiss> misses;  // filled when the side denies
};

struct ExplainReport {
  EndpointRef src;
  EndpointRef dst;
  std::optional<IpAddr> srcIp;
  std::optional<IpAddr> dstIp;
  PortQuery query;
  uint16_t port = 0;  // the query's port, named ports resolved against the destination
  bool allowed = false;
  SideReport egress;   // the source's egress
  SideReport ingress;  // the destination's ingress
};

// Errors (exit 2): an unknown pod, a malformed endpoint, a named port the destination lacks.
Result<ExplainReport> explain(const engine::Evaluator& ev, const std::string& from,
                              const std::string& to, const PortQuery& query);

void renderExplainText(std::ostream& out, const ExplainReport& r);
// {"allowed":bool,"egress":{side},"ingress":{side}}, side = {"pod":"ns/name"|null,
// "isolated":bool,"policies":[...],"allowedBy":{"policy":..,"rule":N}|null,"allowed":bool}.
void renderExplainJson(std::ostream& out, const ExplainReport& r);

}  // namespace sluice::ctl
