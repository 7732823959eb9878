// Per-policy verdict counters, conntrack occupancy and flow-log counts for /metrics (the names
// and their meaning are listed in policyd/daemon/README.md).
//
// Allowed packets: the datapath counts per rule (RuleId -> RuleOrigin), summed here per policy
// and direction. Denied packets: the datapath counts policy drops per endpoint and direction
// (it cannot know which policy "denied": a drop means no rule of any isolating policy allowed);
// each scrape credits the packets dropped since the previous scrape to every policy that
// isolates that endpoint in that direction at scrape time, so one drop under two isolating
// policies counts once for each. Drops of an endpoint no policy isolates any more (or whose pod
// is unknown) go to sluice_policy_denied_unattributed_packets_total.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "policyd/compiler/ir.h"
#include "policyd/daemon/metrics.h"
#include "policyd/daemon/model_view.h"
#include "policyd/datapath/backend.h"

namespace sluice::engine {
class Evaluator;
}

namespace sluice::daemon {

struct FlowLogCounts {
  uint64_t writtenDenied = 0;
  uint64_t writtenAllowed = 0;
  uint64_t suppressedRate = 0;
  uint64_t suppressedOverflow = 0;
  uint64_t engineDisagreements = 0;
  uint64_t writtenAuditDenied = 0;
  // ("ns/name" of an audited policy, direction) -> flows it would deny once enforced.
  std::map<std::pair<std::string, compiler::Direction>, uint64_t> auditDenied;
};

class PolicyMetrics {
 public:
  struct Sources {
    std::function<std::string(compiler::EndpointId)> endpointName;   // "ns/pod", "" unknown
    std::function<std::vector<compiler::RuleOrigin>()> ruleOrigins;  // indexed by RuleId
    std::function<std::optional<FlowLogCounts>()> flowLog;           // nullopt: no flow log
  };
  PolicyMetrics(datapath::Backend& backend, const ModelView& model, Sources sources);
  ~PolicyMetrics();

  // Reads the counters, credits new drops, and appends the families to `w`.
  void write(MetricsWriter& w);

  // The attribution step alone (tests): credits `counts` (cumulative per endpoint and direction)
  // against the model.
  void credit(const std::vector<datapath::EndpointDropCount>& counts);
  // (namespace, policy, direction) -> packets credited so far.
  using PolicyKey = std::tuple<std::string, std::string, std::string>;
  std::map<PolicyKey, uint64_t> denied() const;
  uint64_t unattributed() const;

 private:
  datapath::Backend& backend_;
  const ModelView& model_;
  Sources sources_;
  mutable std::mutex mu_;
  std::map<std::pair<compiler::EndpointId, compiler::Direction>, uint64_t> seen_;
  std::map<PolicyKey, uint64_t> denied_;
  uint64_t unattributed_ = 0;
  std::unique_ptr<engine::Evaluator> evaluator_;
  std::optional<uint64_t> generation_;
};

}  // namespace sluice::daemon
