// The flow log (--flow-log PATH|-): one JSON object per line per dropped packet, e.g.
//   {"time":"2026-11-23T12:00:00.123456789Z","endpoint":3,"pod":"default/web","ifindex":12,
//    "direction":"ingress","src":"10.1.0.9","dst":"10.1.0.5","srcPort":40000,"dstPort":80,
//    "protocol":6,"peerClass":17,"reason":"policy"}
// `direction` is relative to the pod, as everywhere in Sluice.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/result.h"
#include "policyd/datapath/flow_event.h"

namespace sluice::daemon {

class FlowLog {
 public:
  // "-" is stdout; anything else is appended to (created 0640).
  static Result<std::unique_ptr<FlowLog>> open(const std::string& path);
  ~FlowLog();
  FlowLog(const FlowLog&) = delete;
  FlowLog& operator=(const FlowLog&) = delete;

  void write(std::string_view line);  // adds the newline; thread-safe

 private:
  FlowLog(std::FILE* f, bool owned) : file_(f), owned_(owned) {}
  std::mutex mu_;
  std::FILE* file_;
  bool owned_;
};

// One flow-log line (any backend's event); `pod` may be empty.
std::string flowLogLine(const datapath::FlowEvent& e, const std::string& pod);

}  // namespace sluice::daemon
