// The eBPF datapath: tc programs on each endpoint's host veth, maps pinned under a bpffs
// directory, written from the lowered IR (lowering.h). libbpf stays behind this header.
//
// Lifetime: the programs stay attached and the maps stay pinned when this object is destroyed
// or the process exits, so enforcement never lapses while the daemon is down. A new instance on
// the same pin directory reuses the pinned maps, reads their contents back, and attach()
// replaces the programs atomically (tc filter replace) where they are already there.
//
// Threads: counters(), dropCounts(), endpoints() and sweepConntrack() only read or run through
// map and program fds (plus one atomic), so they are safe on any thread at any time. The other
// methods are called from one thread. A sweeper thread of this object (ConntrackOptions::
// sweepInterval) runs the conntrack sweep program; the destructor stops and joins it.
//
// After opening on reused maps, sync() comes first (backend.h); apply() before it is an error.
// On maps this instance created, the first apply() may be the compiler's first diff (a diff
// from empty).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/datapath/backend.h"
#include "policyd/datapath/bpf/drop_event.h"

namespace sluice::datapath::bpf {

// Conntrack limits (see the header comment of bpf/sluice_tc.bpf.c): idle timeouts by TCP state
// and protocol, and how many flows one endpoint may hold in the shared, non-evicting table.
struct ConntrackOptions {
  std::chrono::seconds tcpSyn{60};
  std::chrono::seconds tcpEstablished{6 * 3600};
  std::chrono::seconds tcpClosing{60};  // after a FIN
  std::chrono::seconds tcpClosed{10};   // after a RST
  std::chrono::seconds other{60};       // UDP, SCTP, ICMP echo, other protocols
  uint32_t perEndpointQuota = 16384;    // 0: only the table size (262144) limits
  // How often a thread of the backend deletes expired flows nobody looks up; 0: never (tests
  // call sweepConntrack() themselves).
  std::chrono::milliseconds sweepInterval{10000};
};

struct BpfOptions {
  std::string pinDir = "/sys/fs/bpf/sluice";  // --bpf-pin-dir; created if missing, on a bpffs
  EstablishedMode established = EstablishedMode::Recheck;  // --established
  ConntrackOptions conntrack;
  // Report the first packet of every new flow as an allowed flow event (--flow-log-allowed new);
  // endpoints under an audit-mode policy report theirs regardless.
  bool reportAllowedFlows = false;
};

struct DropCounter {
  DropReason reason = DropReason::None;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// What the last attach(), apply() or sync() wrote; sync() on an unchanged kernel writes nothing.
struct WriteStats {
  size_t classWrites = 0;   // upserts + deletes
  size_t policyWrites = 0;  // upserts + deletes
  size_t endpointWrites = 0;
  bool revisionBumped = false;
};

class BpfBackend final : public Backend {
 public:
  static Result<std::unique_ptr<BpfBackend>> open(const BpfOptions& options);
  ~BpfBackend() override;
  BpfBackend(const BpfBackend&) = delete;
  BpfBackend& operator=(const BpfBackend&) = delete;

  Status attach(const EndpointAttachment& ep) override;
  Status detach(const EndpointAttachment& ep) override;
  Result<bool> attached(const EndpointAttachment& ep) override;
  Status apply(const compiler::Diff& diff) override;
  Status sync(const compiler::State& desired) override;
  // One counter per RuleId of the applied State (packets and bytes of the flows each rule
  // admitted, replies included).
  Result<std::vector<RuleCounter>> counters() override;
  Result<std::vector<EndpointAttachment>> endpoints() override;
  Result<std::vector<DropCount>> dropCounts() override;
  Result<std::vector<EndpointDropCount>> endpointDropCounts() override;
  Result<ConntrackStats> conntrackStats() override;
  // Reads the pinned drop-event ring buffer (drop_event_reader.h).
  Result<std::unique_ptr<FlowEventReader>> openFlowEvents() override;

  Result<std::vector<DropCounter>> dropCounters();
  const WriteStats& lastWrite() const;
  // True when the maps were already pinned (a restart) rather than created.
  bool reusedPinnedMaps() const;
  // The revision established flows are re-checked against (bumped on every change).
  uint64_t revision() const;
  const std::string& pinDir() const;
  // Deletes the conntrack entries whose idle timeout has passed; returns how many. Thread-safe
  // (the sweeper thread calls it too).
  Result<uint32_t> sweepConntrack();
  // Program fds (owned by this object), for BPF_PROG_TEST_RUN in tests and benchmarks.
  int fromPodProgramFd() const;
  int toPodProgramFd() const;

 private:
  struct Impl;
  explicit BpfBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Detaches the programs from every endpoint the pinned maps list and removes the pin directory
// (`sluice-policyd --uninstall`). Succeeds when the directory does not exist.
Status uninstall(const BpfOptions& options);

// The daemon's entry point (--datapath=bpf).
Result<std::unique_ptr<Backend>> makeBpfBackend(const BpfOptions& options);

}  // namespace sluice::datapath::bpf
