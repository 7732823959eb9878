#include "policyd/datapath/bpf/drop_event_reader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>

#include <cerrno>
#include <cstring>

namespace sluice::datapath::bpf {

Result<std::unique_ptr<DropEventReader>> DropEventReader::open(const std::string& pinDir,
                                                               Callback cb) {
  const std::string path = pinDir + "/" + SLUICE_MAP_DROP_EVENTS;
  UniqueFd map(bpf_obj_get(path.c_str()));
  if (!map) return makeError("open drop events " + path + ": " + std::strerror(errno), errno);
  std::unique_ptr<DropEventReader> reader(new DropEventReader(std::move(map), std::move(cb)));
  reader->rb_ =
      ring_buffer__new(reader->map_.get(), &DropEventReader::onSample, reader.get(), nullptr);
  if (!reader->rb_) {
    return makeError("ring buffer on " + path + ": " + std::strerror(errno), errno);
  }
  return reader;
}

DropEventReader::~DropEventReader() { ring_buffer__free(rb_); }

int DropEventReader::onSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<DropEventReader*>(ctx);
  if (size < sizeof(sluice_drop_event)) return 0;  // not ours; skip rather than stop reading
  sluice_drop_event raw;
  std::memcpy(&raw, data, sizeof(raw));
  self->cb_(decodeDropEvent(raw));
  return 0;
}

Result<int> DropEventReader::poll(int timeoutMs) {
  int n = ring_buffer__poll(rb_, timeoutMs);
  if (n < 0 && n != -EINTR)
    return makeError(std::string("poll drop events: ") + std::strerror(-n), -n);
  return n < 0 ? 0 : n;
}

int DropEventReader::fd() const { return ring_buffer__epoll_fd(rb_); }

namespace {

int64_t nowNs(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

class BpfFlowEventReader final : public FlowEventReader {
 public:
  Result<int> poll(int timeoutMs, const Callback& cb) override {
    current_ = &cb;
    auto n = reader_->poll(timeoutMs);
    current_ = nullptr;
    return n;
  }

  std::unique_ptr<DropEventReader> reader_;
  const Callback* current_ = nullptr;  // set only inside poll()
};

}  // namespace

int64_t monotonicToWallNs(uint64_t monotonicNs) {
  const int64_t wall = nowNs(CLOCK_REALTIME);
  const int64_t mono = nowNs(CLOCK_MONOTONIC);
  return wall - (mono - static_cast<int64_t>(monotonicNs));
}

FlowEvent toFlowEvent(const DropEvent& e, int64_t wallNs) {
  FlowEvent f;
  f.wallNs = wallNs;
  f.endpoint = e.endpoint;
  f.ifindex = e.ifindex;
  f.direction = e.direction;
  f.src = e.src;
  f.dst = e.dst;
  f.srcPort = e.srcPort;
  f.dstPort = e.dstPort;
  f.protocol = e.protocol;
  f.verdict = e.allowed ? FlowVerdict::Allowed : FlowVerdict::Denied;
  if (!e.allowed) f.reason = std::string(dropReasonName(e.reason));
  f.peerClass = e.peerClass;
  if (e.allowed) f.rule = e.rule;
  return f;
}

Result<std::unique_ptr<FlowEventReader>> openFlowEventReader(const std::string& pinDir) {
  auto out = std::make_unique<BpfFlowEventReader>();
  BpfFlowEventReader* self = out.get();
  SLUICE_ASSIGN_OR_RETURN(out->reader_, DropEventReader::open(pinDir, [self](const DropEvent& e) {
                            if (self->current_ != nullptr) {
                              (*self->current_)(toFlowEvent(e, monotonicToWallNs(e.timestampNs)));
                            }
                          }));
  return std::unique_ptr<FlowEventReader>(std::move(out));
}

}  // namespace sluice::datapath::bpf
