// Reads the drop-event ring buffer (the flow log) from its pin, so it works in the daemon and
// in any other process that can open the pin directory. A BPF ring buffer has one consumer
// position shared by every reader: run one reader per pin directory (the daemon's), and let
// other tools ask the daemon.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "policyd/datapath/bpf/drop_event.h"
#include "policyd/datapath/flow_event.h"

struct ring_buffer;

namespace sluice::datapath::bpf {

class DropEventReader {
 public:
  using Callback = std::function<void(const DropEvent&)>;

  // Opens <pinDir>/sluice_drops. The callback runs on the thread that calls poll().
  static Result<std::unique_ptr<DropEventReader>> open(const std::string& pinDir, Callback cb);
  ~DropEventReader();
  DropEventReader(const DropEventReader&) = delete;
  DropEventReader& operator=(const DropEventReader&) = delete;

  // Waits up to timeoutMs (0: do not wait) and hands every waiting event to the callback.
  // Returns the number of events handled.
  Result<int> poll(int timeoutMs);
  // An epoll fd that becomes readable when events wait, for the caller's own event loop.
  int fd() const;

 private:
  DropEventReader(UniqueFd map, Callback cb) : map_(std::move(map)), cb_(std::move(cb)) {}
  static int onSample(void* ctx, void* data, size_t size);

  UniqueFd map_;
  Callback cb_;
  ring_buffer* rb_ = nullptr;
};

// The backend-neutral view: drop events as FlowEvents (reason names, wall-clock times).
Result<std::unique_ptr<FlowEventReader>> openFlowEventReader(const std::string& pinDir);

// A drop event as a FlowEvent; `wallNs` is its time on the wall clock.
FlowEvent toFlowEvent(const DropEvent& e, int64_t wallNs);

// Converts a CLOCK_MONOTONIC timestamp (bpf_ktime_get_ns) to wall-clock ns since the epoch.
int64_t monotonicToWallNs(uint64_t monotonicNs);

}  // namespace sluice::datapath::bpf
