// The one narrow interface between the policy pipeline and a kernel datapath. Backends lower
// the IR (compiler/ir.h) with pure functions and write the result with a thin kernel writer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/compiler/ir.h"

namespace sluice::datapath {

struct EndpointAttachment {
  compiler::EndpointId id = 0;
  std::string ifname;  // host-side veth
  int ifindex = 0;
};

struct RuleCounter {
  compiler::RuleId rule = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

enum class EstablishedMode { Recheck, Keep };

class Backend {
 public:
  virtual ~Backend() = default;

  // Attaches enforcement to the endpoint's host veth. From this moment until the endpoint's
  // policy is applied, everything to and from the pod is dropped (fail closed), so a pod is
  // never reachable before its policy is enforced. Idempotent.
  virtual Status attach(const EndpointAttachment& ep) = 0;
  // Removes enforcement and the endpoint's state. Succeeds when the link is already gone.
  virtual Status detach(const EndpointAttachment& ep) = 0;
  // True when the programs are attached and the endpoint is known to the datapath.
  virtual Result<bool> attached(const EndpointAttachment& ep) = 0;

  // Applies an incremental change.
  virtual Status apply(const compiler::Diff& diff) = 0;
  // Makes the kernel hold exactly `desired`, reading back what is already there (used at start
  // and after a restart, so a restart rewrites nothing that is already right).
  virtual Status sync(const compiler::State& desired) = 0;

  virtual Result<std::vector<RuleCounter>> counters() = 0;
};

}  // namespace sluice::datapath
