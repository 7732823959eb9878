// Flow events as every backend reports them (the flow log and the per-policy metrics read these,
// whichever datapath runs). A backend turns its own records (bpf ring buffer, nflog) into this
// type; nothing above the datapath sees a backend's record layout.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/ip.h"
#include "common/result.h"
#include "policyd/compiler/ir.h"

namespace sluice::datapath {

enum class FlowVerdict : uint8_t {
  Denied,   // dropped; `reason` says why ("policy", "spoofed", ...)
  Allowed,  // admitted (first packet of a flow, when the backend reports allowed flows)
};

struct FlowEvent {
  int64_t wallNs = 0;                 // event time, wall clock, ns since the epoch
  compiler::EndpointId endpoint = 0;  // 0 when the interface is not an endpoint
  int ifindex = 0;
  compiler::Direction direction = compiler::Direction::Ingress;  // relative to the pod
  IpAddr src;
  IpAddr dst;
  uint16_t srcPort = 0;  // host order; 0 for protocols without ports
  uint16_t dstPort = 0;
  uint8_t protocol = 0;
  FlowVerdict verdict = FlowVerdict::Denied;
  // Stable drop-reason name ("policy", "not-ready", "spoofed", ...: the metrics label); empty for
  // allowed flows.
  std::string reason;
  compiler::ClassId peerClass = 0;  // when the backend knows it (policy drops)
  compiler::RuleId rule = 0;        // allowed flows: the rule that admitted it, when known
};

// Reads a backend's flow events. One reader per node: a bpf ring buffer has one consumer
// position, so other processes ask the daemon instead of opening their own.
class FlowEventReader {
 public:
  using Callback = std::function<void(const FlowEvent&)>;
  virtual ~FlowEventReader() = default;
  // Waits up to timeoutMs (0: do not wait) and hands every waiting event to `cb` on the calling
  // thread. Returns how many were handled.
  virtual Result<int> poll(int timeoutMs, const Callback& cb) = 0;
};

}  // namespace sluice::datapath
