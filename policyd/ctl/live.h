// Live sluicectl: status, endpoints, policy and flows ask the local daemon over its admin socket
// (policyd/daemon/admin_server.h has the protocol: one JSON request line, JSON reply lines).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "common/result.h"
#include "policyd/ctl/args.h"

namespace sluice::ctl {

inline constexpr int kExitDaemon = 4;  // the daemon could not be asked or refused

// Sends `request` and hands every reply line to `onLine` until the daemon closes the stream or
// `onLine` returns false. Errors name the socket.
Status adminRequest(const std::string& socketPath, const nlohmann::json& request,
                    const std::function<bool(const nlohmann::json&)>& onLine);

// status, endpoints, policy, flows.
int runLive(const Options& opt, std::ostream& out, std::ostream& err);

// One flow (a flow-log object) as one line of text.
std::string renderFlowText(const nlohmann::json& flow);

}  // namespace sluice::ctl
