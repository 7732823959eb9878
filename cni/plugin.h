// The CNI commands. main.cc only decodes the environment and stdin, calls one of these and
// prints what it returns; every error here already carries a CNI spec code.
#pragma once

#include <optional>
#include <string>

#include "cni/spec.h"
#include "cni/wiring.h"

namespace sluice::cni {

struct Hooks {
  // Failure injection for the privileged tests; a no-op in production.
  StepHook step = [](std::string_view) { return Status::Ok(); };
};

// ADD: IPAM, wiring, registration with the policy daemon; rolls all of it back on failure.
Result<json> cmdAdd(const Env& env, const NetConf& conf, const Hooks& hooks);
// DEL: idempotent; tolerates a missing netns, link or reservation and an unreachable daemon.
Status cmdDel(const Env& env, const NetConf& conf);
Status cmdCheck(const Env& env, const NetConf& conf);
Status cmdGc(const Env& env, const NetConf& conf);
Status cmdStatus(const Env& env, const NetConf& conf);
json cmdVersion(const std::string& requested);

}  // namespace sluice::cni
