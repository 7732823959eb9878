#include "policyd/datapath/bpf/bpf_backend.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <linux/magic.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "bpf/sluice_tc.skel.h"
#include "policyd/datapath/bpf/drop_event_reader.h"
#include "policyd/datapath/bpf/lowering.h"

namespace sluice::datapath::bpf {

namespace {

// Our tc filters on the host veth: one handle and priority on each hook, so attaching again
// replaces (atomically) instead of stacking a second filter.
constexpr uint32_t kTcHandle = 0x51c;
constexpr uint32_t kTcPriority = 1;

std::string errnoText(int err) { return std::strerror(err < 0 ? -err : err); }
int posErr(int err) { return err < 0 ? -err : err; }

Error mapError(const char* op, const bpf_map* map, const std::string& key, int err) {
  return makeError(
      std::string(op) + " map " + bpf_map__name(map) + " key {" + key + "}: " + errnoText(err),
      posErr(err));
}

int libbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof(buf), fmt, args);
  std::string_view line(buf, n < 0 ? 0 : std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  // Netlink extended acks ("Exclusivity flag on", "Cannot find specified filter chain") come
  // from probes whose errors we expect and handle (qdisc exists, filter not attached yet); a
  // real failure is reported by the caller with its context.
  if (level == LIBBPF_WARN && line.find("Kernel error message") != std::string_view::npos) {
    level = LIBBPF_DEBUG;
  }
  switch (level) {
    case LIBBPF_WARN:
      spdlog::warn("libbpf {}", line);
      break;
    case LIBBPF_INFO:
      spdlog::debug("libbpf {}", line);
      break;
    case LIBBPF_DEBUG:
      spdlog::trace("libbpf {}", line);
      break;
  }
  return 0;
}

struct SkelDeleter {
  void operator()(sluice_tc* skel) const noexcept { sluice_tc__destroy(skel); }
};
using SkelPtr = std::unique_ptr<sluice_tc, SkelDeleter>;

Status ensureBpffsDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return makeError("create bpf pin dir " + dir + ": " + ec.message(), ec.value());
  struct statfs fs {};
  if (::statfs(dir.c_str(), &fs) != 0) {
    return makeError("statfs bpf pin dir " + dir + ": " + errnoText(errno), errno);
  }
  if (static_cast<unsigned long>(fs.f_type) != BPF_FS_MAGIC) {
    return makeError("bpf pin dir " + dir + " is not on a bpf filesystem (mount -t bpf)", EINVAL);
  }
  return Status::Ok();
}

// Iterates every key of a map (get_next_key), reading the value of each.
template <typename K, typename V, typename F>
Status forEachEntry(const bpf_map* map, F&& fn) {
  K key{}, next{};
  V value{};
  const K* prev = nullptr;
  const int fd = bpf_map__fd(map);
  for (;;) {
    int err = bpf_map_get_next_key(fd, prev, &next);
    if (err) {
      if (posErr(err) == ENOENT) return Status::Ok();
      return makeError(std::string("iterate map ") + bpf_map__name(map) + ": " + errnoText(err),
                       posErr(err));
    }
    key = next;
    prev = &key;
    err = bpf_map_lookup_elem(fd, &key, &value);
    if (err) {
      if (posErr(err) == ENOENT) continue;  // deleted by the datapath meanwhile (LRU)
      return makeError(std::string("read map ") + bpf_map__name(map) + ": " + errnoText(err),
                       posErr(err));
    }
    fn(key, value);
  }
}

bool linkExists(int ifindex) {
  char name[IF_NAMESIZE];
  return ifindex > 0 && if_indextoname(static_cast<unsigned>(ifindex), name) != nullptr;
}

Result<int> resolveIfindex(const EndpointAttachment& ep) {
  if (ep.ifindex > 0) return ep.ifindex;
  if (ep.ifname.empty())
    return makeError("endpoint " + std::to_string(ep.id) + ": no ifindex or ifname", EINVAL);
  unsigned idx = if_nametoindex(ep.ifname.c_str());
  if (idx == 0)
    return makeError(
        "endpoint " + std::to_string(ep.id) + ": link " + ep.ifname + ": " + errnoText(errno),
        errno);
  return static_cast<int>(idx);
}

Result<uint32_t> programId(int progFd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  int err = bpf_obj_get_info_by_fd(progFd, &info, &len);
  if (err) return makeError("bpf prog info: " + errnoText(err), posErr(err));
  return info.id;
}

const char* hookName(bpf_tc_attach_point point) {
  return point == BPF_TC_INGRESS ? "ingress" : "egress";
}

bool sameEntry(const sluice_endpoint& a, const sluice_endpoint& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// The endpoint entry for `ep` with `flags`: its addresses, at most one per family.
Result<sluice_endpoint> endpointEntry(const EndpointAttachment& ep, uint32_t flags) {
  sluice_endpoint entry{};
  entry.id = ep.id;
  entry.flags = flags;
  for (const IpAddr& ip : ep.ips) {
    uint8_t& has = ip.isV4() ? entry.has_ipv4 : entry.has_ipv6;
    if (has) {
      return makeError("endpoint " + std::to_string(ep.id) + " ips: more than one " +
                           (ip.isV4() ? "IPv4" : "IPv6") + " address (" + ip.toString() + ")",
                       EINVAL);
    }
    has = 1;
    if (ip.isV4()) {
      std::memcpy(entry.ipv4, ip.bytes().data(), 4);
    } else {
      std::memcpy(entry.ipv6, ip.bytes().data(), 16);
    }
  }
  return entry;
}

std::vector<IpAddr> entryAddresses(const sluice_endpoint& entry) {
  std::vector<IpAddr> out;
  if (entry.has_ipv4) {
    const uint8_t* b = entry.ipv4;
    out.push_back(
        IpAddr::v4((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3]));
  }
  if (entry.has_ipv6) {
    std::array<uint8_t, 16> a;
    std::memcpy(a.data(), entry.ipv6, 16);
    out.push_back(IpAddr::v6(a));
  }
  return out;
}

uint32_t seconds(std::chrono::seconds s) {
  return static_cast<uint32_t>(std::clamp<int64_t>(s.count(), 1, UINT32_MAX));
}

}  // namespace

struct BpfBackend::Impl {
  BpfOptions options;
  SkelPtr skel;
  bool reused = false;
  compiler::State state;  // the IR as last applied
  // What the class and policy maps hold, and the flags each endpoint id should carry.
  LoweredState mirror;
  std::map<int, sluice_endpoint> endpoints;  // the endpoint map: ifindex -> entry
  uint64_t revision = 0;
  uint32_t configFlags = 0;
  WriteStats last;
  // Rule ids counters() reports; read by counters() on any thread without the caller's lock.
  std::atomic<size_t> counterLimit{0};
  std::atomic<uint64_t> expired{0};  // flows the sweeper deleted
  bool synced = false;  // sync() or apply() ran: `state` is what the maps were written from

  // The conntrack sweeper; stopped and joined before the skeleton goes.
  std::mutex sweepMutex;
  std::condition_variable sweepWake;
  bool sweepStop = false;
  std::thread sweeper;

  ~Impl() {
    {
      std::lock_guard lock(sweepMutex);
      sweepStop = true;
    }
    sweepWake.notify_all();
    if (sweeper.joinable()) sweeper.join();
  }

  bpf_map* classes() const { return skel->maps.sluice_classes; }
  bpf_map* policy() const { return skel->maps.sluice_policy; }
  bpf_map* endpointMap() const { return skel->maps.sluice_endpoints; }
  bpf_map* config() const { return skel->maps.sluice_config; }

  Status load();
  Status readBack();
  Status writeConfig();
  Status writeEndpoint(int ifindex, const sluice_endpoint& entry);
  Status write(const MapOps& ops);
  Status attachHook(int ifindex, bpf_tc_attach_point point, int progFd, const std::string& what);
  Status detachHook(int ifindex, bpf_tc_attach_point point, const std::string& what);
  Status forgetConntrack(compiler::EndpointId id);
  Status zeroRuleCounters(const std::vector<compiler::RuleId>& ids);
  void updateCounterLimit();
  Result<uint32_t> sweep();
  void sweepLoop();
};

Status BpfBackend::Impl::load() {
  SLUICE_RETURN_IF_ERROR(ensureBpffsDir(options.pinDir));
  skel.reset(sluice_tc__open());
  if (!skel) return makeError("open BPF object sluice_tc: " + errnoText(errno), errno);
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, skel->obj) {
    const std::string path = options.pinDir + "/" + bpf_map__name(map);
    if (map == policy()) reused = ::access(path.c_str(), F_OK) == 0;
    // libbpf reuses a compatible pinned map at this path, or creates and pins a new one.
    int err = bpf_map__set_pin_path(map, path.c_str());
    if (err) return makeError("set pin path " + path + ": " + errnoText(err), posErr(err));
  }
  int err = sluice_tc__load(skel.get());
  if (err) {
    return makeError("load BPF object sluice_tc (pin dir " + options.pinDir +
                         "; a pinned map with another layout must be removed): " + errnoText(err),
                     posErr(err));
  }
  return Status::Ok();
}

Status BpfBackend::Impl::readBack() {
  SLUICE_RETURN_IF_ERROR((forEachEntry<sluice_class_key, uint32_t>(
      classes(), [&](const sluice_class_key& k, uint32_t v) { mirror.classes[ClassKey{k}] = v; })));
  SLUICE_RETURN_IF_ERROR((forEachEntry<sluice_policy_key, sluice_policy_value>(
      policy(), [&](const sluice_policy_key& k, const sluice_policy_value& v) {
        mirror.policy[PolicyKey{k}] = v.rule;
      })));
  SLUICE_RETURN_IF_ERROR((forEachEntry<uint32_t, sluice_endpoint>(
      endpointMap(), [&](uint32_t ifindex, const sluice_endpoint& v) {
        endpoints[static_cast<int>(ifindex)] = v;
        if (v.flags & SLUICE_EP_POLICY_READY) mirror.endpointFlags[v.id] = v.flags;
      })));
  uint32_t zero = 0;
  sluice_config cfg{};
  if (int err = bpf_map_lookup_elem(bpf_map__fd(config()), &zero, &cfg); err) {
    return makeError("read map sluice_config: " + errnoText(err), posErr(err));
  }
  revision = cfg.revision;
  return Status::Ok();
}

Status BpfBackend::Impl::writeConfig() {
  uint32_t zero = 0;
  sluice_config cfg{};
  cfg.revision = revision;
  cfg.flags = configFlags;
  const ConntrackOptions& ct = options.conntrack;
  cfg.ct_quota = ct.perEndpointQuota;
  cfg.ct_tcp_syn_s = seconds(ct.tcpSyn);
  cfg.ct_tcp_established_s = seconds(ct.tcpEstablished);
  cfg.ct_tcp_closing_s = seconds(ct.tcpClosing);
  cfg.ct_tcp_closed_s = seconds(ct.tcpClosed);
  cfg.ct_other_s = seconds(ct.other);
  if (int err = bpf_map_update_elem(bpf_map__fd(config()), &zero, &cfg, BPF_ANY); err) {
    return mapError("update", config(), "0", err);
  }
  return Status::Ok();
}

Status BpfBackend::Impl::writeEndpoint(int ifindex, const sluice_endpoint& entry) {
  uint32_t key = static_cast<uint32_t>(ifindex);
  if (int err = bpf_map_update_elem(bpf_map__fd(endpointMap()), &key, &entry, BPF_ANY); err) {
    return mapError("update", endpointMap(), "ifindex=" + std::to_string(ifindex), err);
  }
  endpoints[ifindex] = entry;
  ++last.endpointWrites;
  return Status::Ok();
}

Status BpfBackend::Impl::write(const MapOps& ops) {
  last = WriteStats{};
  const int classFd = bpf_map__fd(classes());
  const int policyFd = bpf_map__fd(policy());
  for (const auto& [key, cls] : ops.classes.upsert) {
    if (int err = bpf_map_update_elem(classFd, &key.raw, &cls, BPF_ANY); err) {
      return mapError("update", classes(), toString(key), err);
    }
    mirror.classes[key] = cls;
    ++last.classWrites;
  }
  for (const auto& key : ops.classes.remove) {
    if (int err = bpf_map_delete_elem(classFd, &key.raw); err && posErr(err) != ENOENT) {
      return mapError("delete", classes(), toString(key), err);
    }
    mirror.classes.erase(key);
    ++last.classWrites;
  }
  for (const auto& [key, rule] : ops.policy.upsert) {
    sluice_policy_value v{rule};
    if (int err = bpf_map_update_elem(policyFd, &key.raw, &v, BPF_ANY); err) {
      return mapError("update", policy(), toString(key), err);
    }
    mirror.policy[key] = rule;
    ++last.policyWrites;
  }
  for (const auto& [id, flags] : ops.endpointFlags) {
    if (flags == 0) {
      mirror.endpointFlags.erase(id);
    } else {
      mirror.endpointFlags[id] = flags;
    }
    for (const auto& [ifindex, entry] : std::map<int, sluice_endpoint>(endpoints)) {
      if (entry.id != id || entry.flags == flags) continue;
      sluice_endpoint updated = entry;  // keeps the addresses
      updated.flags = flags;
      SLUICE_RETURN_IF_ERROR(writeEndpoint(ifindex, updated));
      spdlog::info("bpf endpoint={} ifindex={} flags={:#x}", id, ifindex, flags);
    }
  }
  for (const auto& key : ops.policy.remove) {
    if (int err = bpf_map_delete_elem(policyFd, &key.raw); err && posErr(err) != ENOENT) {
      return mapError("delete", policy(), toString(key), err);
    }
    mirror.policy.erase(key);
    ++last.policyWrites;
  }
  if (!ops.empty()) {
    // Written last: a flow re-checked against the new revision sees the new policy.
    ++revision;
    SLUICE_RETURN_IF_ERROR(writeConfig());
    last.revisionBumped = true;
  }
  return Status::Ok();
}

Status BpfBackend::Impl::attachHook(int ifindex, bpf_tc_attach_point point, int progFd,
                                    const std::string& what) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  // Creates the clsact qdisc; it may be there already (ours from before, or someone else's).
  int err = bpf_tc_hook_create(&hook);
  if (err && posErr(err) != EEXIST) {
    return makeError(what + ": create clsact qdisc: " + errnoText(err), posErr(err));
  }
  SLUICE_ASSIGN_OR_RETURN(uint32_t ourId, programId(progFd));
  LIBBPF_OPTS(bpf_tc_opts, query, .handle = kTcHandle, .priority = kTcPriority);
  if (bpf_tc_query(&hook, &query) == 0 && query.prog_id == ourId) return Status::Ok();
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = progFd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
              .priority = kTcPriority);
  err = bpf_tc_attach(&hook, &opts);
  if (err) {
    return makeError(what + ": tc " + hookName(point) + " attach: " + errnoText(err), posErr(err));
  }
  return Status::Ok();
}

Status BpfBackend::Impl::detachHook(int ifindex, bpf_tc_attach_point point,
                                    const std::string& what) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  int err = bpf_tc_detach(&hook, &opts);
  // Gone already: no filter, no qdisc, or no link.
  if (err && posErr(err) != ENOENT && posErr(err) != ENODEV && posErr(err) != EINVAL) {
    return makeError(what + ": tc " + hookName(point) + " detach: " + errnoText(err), posErr(err));
  }
  return Status::Ok();
}

Status BpfBackend::Impl::forgetConntrack(compiler::EndpointId id) {
  // Rare (endpoint removal), so a scan is fine; a later endpoint reusing the id must not inherit
  // this one's flows.
  std::vector<sluice_ct_key> stale;
  SLUICE_RETURN_IF_ERROR((forEachEntry<sluice_ct_key, sluice_ct_value>(
      skel->maps.sluice_ct, [&](const sluice_ct_key& k, const sluice_ct_value&) {
        if (k.endpoint == id) stale.push_back(k);
      })));
  const int fd = bpf_map__fd(skel->maps.sluice_ct);
  for (const auto& k : stale) bpf_map_delete_elem(fd, &k);
  // Its quota count goes with its flows (the endpoint entry is gone, so no new ones come).
  bpf_map_delete_elem(bpf_map__fd(skel->maps.sluice_ct_count), &id);
  return Status::Ok();
}

Status BpfBackend::Impl::zeroRuleCounters(const std::vector<compiler::RuleId>& ids) {
  if (ids.empty()) return Status::Ok();
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return makeError("possible cpus: " + errnoText(cpus), posErr(cpus));
  const std::vector<sluice_counter> zeros(static_cast<size_t>(cpus));
  const int fd = bpf_map__fd(skel->maps.sluice_rule_stats);
  for (compiler::RuleId id : ids) {
    if (id >= SLUICE_MAX_RULES) continue;
    if (int err = bpf_map_update_elem(fd, &id, zeros.data(), BPF_ANY); err) {
      return mapError("zero", skel->maps.sluice_rule_stats, "rule=" + std::to_string(id), err);
    }
  }
  spdlog::debug("bpf zeroed counters of {} reused rule ids", ids.size());
  return Status::Ok();
}

void BpfBackend::Impl::updateCounterLimit() {
  size_t limit = state.rules.size();
  for (const auto& [key, rule] : mirror.policy) limit = std::max<size_t>(limit, size_t{rule} + 1);
  counterLimit.store(std::min<size_t>(limit, SLUICE_MAX_RULES), std::memory_order_relaxed);
}

Result<uint32_t> BpfBackend::Impl::sweep() {
  // The program needs a frame to run on; it reads nothing of it.
  std::vector<uint8_t> frame(ETH_HLEN, 0);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .repeat = 1);
  if (int err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.sweep_ct), &opts); err) {
    return makeError("run conntrack sweep program: " + errnoText(err), posErr(err));
  }
  expired.fetch_add(opts.retval, std::memory_order_relaxed);
  return static_cast<uint32_t>(opts.retval);
}

void BpfBackend::Impl::sweepLoop() {
  std::unique_lock lock(sweepMutex);
  while (!sweepWake.wait_for(lock, options.conntrack.sweepInterval, [&] { return sweepStop; })) {
    lock.unlock();
    auto n = sweep();
    if (!n.ok()) {
      spdlog::warn("bpf conntrack sweep pin_dir={}: {}", options.pinDir, n.error().message);
    } else if (*n > 0) {
      spdlog::debug("bpf conntrack sweep deleted={}", *n);
    }
    lock.lock();
  }
}

BpfBackend::BpfBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpfBackend::~BpfBackend() = default;

Result<std::unique_ptr<BpfBackend>> BpfBackend::open(const BpfOptions& options) {
  static std::once_flag printOnce;
  std::call_once(printOnce, [] { libbpf_set_print(libbpfPrint); });

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->configFlags =
      (options.established == EstablishedMode::Keep ? SLUICE_CONFIG_ESTABLISHED_KEEP : 0u) |
      (options.reportAllowedFlows ? SLUICE_CONFIG_LOG_ALLOWED : 0u);
  SLUICE_RETURN_IF_ERROR(impl->load());
  SLUICE_RETURN_IF_ERROR(impl->readBack());
  SLUICE_RETURN_IF_ERROR(impl->writeConfig());
  impl->updateCounterLimit();
  if (options.conntrack.sweepInterval.count() > 0) {
    Impl* raw = impl.get();
    impl->sweeper = std::thread([raw] { raw->sweepLoop(); });
  }
  spdlog::info(
      "bpf datapath pin_dir={} maps={} revision={} endpoints={} classes={} policy_entries={} "
      "established={}",
      options.pinDir, impl->reused ? "reused" : "created", impl->revision, impl->endpoints.size(),
      impl->mirror.classes.size(), impl->mirror.policy.size(),
      options.established == EstablishedMode::Keep ? "keep" : "recheck");
  return std::unique_ptr<BpfBackend>(new BpfBackend(std::move(impl)));
}

Status BpfBackend::attach(const EndpointAttachment& ep) {
  impl_->last = WriteStats{};
  SLUICE_ASSIGN_OR_RETURN(int ifindex, resolveIfindex(ep));
  const std::string what = "attach endpoint " + std::to_string(ep.id) + " link " +
                           (ep.ifname.empty() ? "#" + std::to_string(ifindex) : ep.ifname);
  // The entry goes in first: until the policy is applied its flags lack POLICY_READY, so the
  // programs drop everything from the moment they see the link.
  auto flagsIt = impl_->mirror.endpointFlags.find(ep.id);
  auto built =
      endpointEntry(ep, flagsIt == impl_->mirror.endpointFlags.end() ? 0 : flagsIt->second);
  if (!built.ok()) return built.error().wrap(what);
  const sluice_endpoint entry = *built;
  auto cur = impl_->endpoints.find(ifindex);
  if (cur == impl_->endpoints.end() || !sameEntry(cur->second, entry)) {
    if (auto s = impl_->writeEndpoint(ifindex, entry); !s.ok()) return s.error().wrap(what);
  }
  SLUICE_RETURN_IF_ERROR(impl_->attachHook(ifindex, BPF_TC_INGRESS,
                                           bpf_program__fd(impl_->skel->progs.from_pod), what));
  SLUICE_RETURN_IF_ERROR(
      impl_->attachHook(ifindex, BPF_TC_EGRESS, bpf_program__fd(impl_->skel->progs.to_pod), what));
  spdlog::info("bpf attach endpoint={} ifname={} ifindex={} ips={} ready={}", ep.id, ep.ifname,
               ifindex, ep.ips.size(), (entry.flags & SLUICE_EP_POLICY_READY) != 0);
  return Status::Ok();
}

Status BpfBackend::detach(const EndpointAttachment& ep) {
  int ifindex = ep.ifindex;
  if (ifindex <= 0 && !ep.ifname.empty())
    ifindex = static_cast<int>(if_nametoindex(ep.ifname.c_str()));
  const std::string what = "detach endpoint " + std::to_string(ep.id);
  if (linkExists(ifindex)) {
    SLUICE_RETURN_IF_ERROR(impl_->detachHook(ifindex, BPF_TC_INGRESS, what));
    SLUICE_RETURN_IF_ERROR(impl_->detachHook(ifindex, BPF_TC_EGRESS, what));
  }
  // Entries of this endpoint only: an ifindex may already belong to a newer link.
  const int fd = bpf_map__fd(impl_->endpointMap());
  for (const auto& [idx, entry] : std::map<int, sluice_endpoint>(impl_->endpoints)) {
    if (entry.id != ep.id || (ifindex > 0 && idx != ifindex)) continue;
    uint32_t key = static_cast<uint32_t>(idx);
    if (int err = bpf_map_delete_elem(fd, &key); err && posErr(err) != ENOENT) {
      return mapError("delete", impl_->endpointMap(), "ifindex=" + std::to_string(idx), err)
          .wrap(what);
    }
    impl_->endpoints.erase(idx);
  }
  SLUICE_RETURN_IF_ERROR(impl_->forgetConntrack(ep.id));
  // A later endpoint reusing the id starts its policy-drop counts from zero.
  for (uint8_t dir : {SLUICE_DIR_INGRESS, SLUICE_DIR_EGRESS}) {
    sluice_endpoint_drop_key key{};
    key.endpoint = ep.id;
    key.direction = dir;
    if (int err = bpf_map_delete_elem(bpf_map__fd(impl_->skel->maps.sluice_ep_drops), &key);
        err && posErr(err) != ENOENT) {
      return mapError("delete", impl_->skel->maps.sluice_ep_drops,
                      "endpoint=" + std::to_string(ep.id), err)
          .wrap(what);
    }
  }
  spdlog::info("bpf detach endpoint={} ifname={} ifindex={}", ep.id, ep.ifname, ifindex);
  return Status::Ok();
}

Result<bool> BpfBackend::attached(const EndpointAttachment& ep) {
  int ifindex = ep.ifindex;
  if (ifindex <= 0 && !ep.ifname.empty())
    ifindex = static_cast<int>(if_nametoindex(ep.ifname.c_str()));
  if (!linkExists(ifindex)) return false;
  sluice_endpoint entry{};
  uint32_t key = static_cast<uint32_t>(ifindex);
  if (bpf_map_lookup_elem(bpf_map__fd(impl_->endpointMap()), &key, &entry) != 0 ||
      entry.id != ep.id) {
    return false;
  }
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, query, .handle = kTcHandle, .priority = kTcPriority);
    if (bpf_tc_query(&hook, &query) != 0) return false;
  }
  return true;
}

Status BpfBackend::apply(const compiler::Diff& diff) {
  // Backend contract (backend.h): on maps another instance wrote, the IR they came from is
  // unknown, so a diff has no base. Refuse rather than lose the entries the diff does not name.
  if (!impl_->synced && impl_->reused) {
    return makeError("bpf apply revision " + std::to_string(diff.revision) + ": pin dir " +
                     impl_->options.pinDir +
                     " holds maps of an earlier instance; sync before applying diffs");
  }
  // A rule id that gets a new origin is a new rule: it must not inherit the old one's counts.
  std::vector<compiler::RuleId> reused;
  for (const auto& [id, origin] : diff.rulesUpsert) {
    if (!impl_->synced || id >= impl_->state.rules.size() || impl_->state.rules[id] != origin) {
      reused.push_back(id);
    }
  }
  const MapOps ops = lowerDiff(impl_->mirror, impl_->state, diff);
  if (auto s = impl_->write(ops); !s.ok()) {
    return s.error().wrap("bpf apply revision " + std::to_string(diff.revision));
  }
  impl_->synced = true;
  impl_->updateCounterLimit();
  if (auto s = impl_->zeroRuleCounters(reused); !s.ok()) {
    return s.error().wrap("bpf apply revision " + std::to_string(diff.revision));
  }
  const auto& w = impl_->last;
  spdlog::info(
      "bpf apply ir_revision={} revision={} class_writes={} policy_writes={} endpoint_writes={}",
      diff.revision, impl_->revision, w.classWrites, w.policyWrites, w.endpointWrites);
  return Status::Ok();
}

Status BpfBackend::sync(const compiler::State& desired) {
  // Read back first: the kernel is the truth (another instance may have written since).
  impl_->mirror = LoweredState{};
  impl_->endpoints.clear();
  if (auto s = impl_->readBack(); !s.ok()) return s.error().wrap("bpf sync");
  const MapOps ops = reconcile(impl_->mirror, lower(desired));
  // Ids whose origin changed since the State these maps were written from. After a restart that
  // State is unknown, so every id starts from zero (a counter reset, as on any process restart)
  // rather than risk crediting an old rule's packets to a new one.
  std::vector<compiler::RuleId> reused;
  for (compiler::RuleId id = 0; id < desired.rules.size(); ++id) {
    if (!impl_->synced || id >= impl_->state.rules.size() ||
        impl_->state.rules[id] != desired.rules[id]) {
      reused.push_back(id);
    }
  }
  impl_->state = desired;
  if (auto s = impl_->write(ops); !s.ok()) {
    return s.error().wrap("bpf sync revision " + std::to_string(desired.revision));
  }
  impl_->synced = true;
  impl_->updateCounterLimit();
  if (auto s = impl_->zeroRuleCounters(reused); !s.ok()) {
    return s.error().wrap("bpf sync revision " + std::to_string(desired.revision));
  }
  const auto& w = impl_->last;
  spdlog::info(
      "bpf sync ir_revision={} revision={} class_writes={} policy_writes={} endpoint_writes={}",
      desired.revision, impl_->revision, w.classWrites, w.policyWrites, w.endpointWrites);
  return Status::Ok();
}

namespace {
template <typename Out>
Status readPerCpu(const bpf_map* map, uint32_t index, std::vector<sluice_counter>& buf, Out& out) {
  if (int err = bpf_map_lookup_elem(bpf_map__fd(map), &index, buf.data()); err) {
    return mapError("read", map, std::to_string(index), err);
  }
  out.packets = 0;
  out.bytes = 0;
  for (const auto& c : buf) {
    out.packets += c.packets;
    out.bytes += c.bytes;
  }
  return Status::Ok();
}
}  // namespace

Result<std::vector<RuleCounter>> BpfBackend::counters() {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return makeError("possible cpus: " + errnoText(cpus), posErr(cpus));
  std::vector<sluice_counter> buf(static_cast<size_t>(cpus));
  // Only the atomic limit and map fds: never the sync path's state.
  const size_t limit = impl_->counterLimit.load(std::memory_order_relaxed);
  std::vector<RuleCounter> out;
  out.reserve(limit);
  for (uint32_t id = 0; id < limit; ++id) {
    RuleCounter c;
    c.rule = id;
    SLUICE_RETURN_IF_ERROR(readPerCpu(impl_->skel->maps.sluice_rule_stats, id, buf, c));
    out.push_back(c);
  }
  return out;
}

Result<std::vector<EndpointAttachment>> BpfBackend::endpoints() {
  // Read from the kernel, not the mirror: this is what survives a daemon restart.
  std::vector<EndpointAttachment> out;
  const int fd = bpf_map__fd(impl_->endpointMap());
  uint32_t key = 0;
  uint32_t next = 0;
  const uint32_t* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    key = next;
    prev = &key;
    sluice_endpoint entry{};
    if (bpf_map_lookup_elem(fd, &key, &entry) != 0) continue;  // removed meanwhile
    EndpointAttachment ep;
    ep.id = entry.id;
    ep.ifindex = static_cast<int>(key);
    ep.ips = entryAddresses(entry);
    char name[IF_NAMESIZE] = {};
    if (if_indextoname(key, name) != nullptr) ep.ifname = name;
    out.push_back(std::move(ep));
  }
  return out;
}

Result<std::vector<DropCounter>> BpfBackend::dropCounters() {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return makeError("possible cpus: " + errnoText(cpus), posErr(cpus));
  std::vector<sluice_counter> buf(static_cast<size_t>(cpus));
  std::vector<DropCounter> out;
  for (uint32_t r = 1; r < kDropReasonCount; ++r) {
    DropCounter c;
    c.reason = static_cast<DropReason>(r);
    SLUICE_RETURN_IF_ERROR(readPerCpu(impl_->skel->maps.sluice_drop_stats, r, buf, c));
    out.push_back(c);
  }
  return out;
}

Result<std::vector<EndpointDropCount>> BpfBackend::endpointDropCounts() {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return makeError("possible cpus: " + errnoText(cpus), posErr(cpus));
  std::vector<sluice_counter> buf(static_cast<size_t>(cpus));
  std::vector<EndpointDropCount> out;
  const bpf_map* map = impl_->skel->maps.sluice_ep_drops;
  const int fd = bpf_map__fd(map);
  sluice_endpoint_drop_key key{}, next{};
  const sluice_endpoint_drop_key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    key = next;
    prev = &key;
    if (bpf_map_lookup_elem(fd, &key, buf.data()) != 0) continue;  // removed meanwhile
    EndpointDropCount c;
    c.endpoint = key.endpoint;
    c.direction = key.direction == SLUICE_DIR_EGRESS ? compiler::Direction::Egress
                                                     : compiler::Direction::Ingress;
    for (const auto& v : buf) {
      c.packets += v.packets;
      c.bytes += v.bytes;
    }
    out.push_back(c);
  }
  return out;
}

Result<ConntrackStats> BpfBackend::conntrackStats() {
  ConntrackStats st;
  st.expired = impl_->expired.load(std::memory_order_relaxed);
  const int fd = bpf_map__fd(impl_->skel->maps.sluice_ct_count);
  uint32_t key = 0, next = 0;
  const uint32_t* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    key = next;
    prev = &key;
    int64_t n = 0;
    if (bpf_map_lookup_elem(fd, &key, &n) == 0 && n > 0) st.entries += static_cast<uint64_t>(n);
  }
  return st;
}

Result<std::unique_ptr<FlowEventReader>> BpfBackend::openFlowEvents() {
  return openFlowEventReader(pinDir());
}

Result<std::vector<DropCount>> BpfBackend::dropCounts() {
  SLUICE_ASSIGN_OR_RETURN(auto raw, dropCounters());
  std::vector<DropCount> out;
  out.reserve(raw.size());
  for (const auto& c : raw) {
    out.push_back(DropCount{std::string(dropReasonName(c.reason)), c.packets, c.bytes});
  }
  return out;
}

Result<uint32_t> BpfBackend::sweepConntrack() { return impl_->sweep(); }

const WriteStats& BpfBackend::lastWrite() const { return impl_->last; }
bool BpfBackend::reusedPinnedMaps() const { return impl_->reused; }
uint64_t BpfBackend::revision() const { return impl_->revision; }
const std::string& BpfBackend::pinDir() const { return impl_->options.pinDir; }
int BpfBackend::fromPodProgramFd() const { return bpf_program__fd(impl_->skel->progs.from_pod); }
int BpfBackend::toPodProgramFd() const { return bpf_program__fd(impl_->skel->progs.to_pod); }

Status uninstall(const BpfOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(options.pinDir, ec)) return Status::Ok();
  size_t endpoints = 0;
  {
    BpfOptions quiet = options;
    quiet.conntrack.sweepInterval = std::chrono::milliseconds(0);
    SLUICE_ASSIGN_OR_RETURN(auto backend, BpfBackend::open(quiet));
    SLUICE_ASSIGN_OR_RETURN(auto eps, backend->endpoints());
    for (const EndpointAttachment& ep : eps) {
      SLUICE_RETURN_IF_ERROR(backend->detach(ep));
    }
    endpoints = eps.size();
  }  // the backend's map fds close before the pins go
  std::filesystem::remove_all(options.pinDir, ec);
  if (ec) return makeError("remove bpf pin dir " + options.pinDir + ": " + ec.message());
  spdlog::info("bpf uninstall pin_dir={} endpoints_detached={} ok", options.pinDir, endpoints);
  return Status::Ok();
}

Result<std::unique_ptr<Backend>> makeBpfBackend(const BpfOptions& options) {
  SLUICE_ASSIGN_OR_RETURN(auto backend, BpfBackend::open(options));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace sluice::datapath::bpf
