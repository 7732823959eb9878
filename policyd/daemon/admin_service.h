// What the admin socket answers (admin_server.h has the protocol): status, endpoints, the
// applied policy of one endpoint with the origin and counters of each entry, and flows from the
// ring of recent flow events. Reads only copies and thread-safe accessors, so any number of
// sluicectl clients never slow the sync path.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <vector>

#include "policyd/compiler/ir.h"
#include "policyd/daemon/admin_server.h"
#include "policyd/daemon/flow_log.h"
#include "policyd/daemon/registry.h"
#include "policyd/datapath/backend.h"

namespace sluice::daemon {

struct AdminSources {
  std::function<nlohmann::json()> status;
  std::function<std::vector<EndpointRecord>()> endpoints;
  std::function<std::optional<compiler::EndpointPolicy>(compiler::EndpointId)> appliedPolicy;
  std::function<std::vector<compiler::RuleOrigin>()> ruleOrigins;
  std::function<Result<std::vector<datapath::RuleCounter>>()> counters;
  FlowRing* flows = nullptr;                  // nullptr: the daemon runs without a flow log
  std::chrono::milliseconds heartbeat{2000};  // idle --follow streams: a keep-alive line
};

void handleAdminRequest(const AdminSources& sources, const nlohmann::json& request,
                        const AdminServer::Send& send, const std::atomic<bool>& stopping);

}  // namespace sluice::daemon
