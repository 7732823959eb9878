#include "policyd/datapath/bpf/drop_event_reader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

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

}  // namespace sluice::datapath::bpf
