#include "policyd/daemon/node_agent.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <nlohmann/json.hpp>
#include <utility>

#include "policyd/daemon/state_files.h"

namespace sluice::daemon {

namespace {

using endpoint_api::Op;
using endpoint_api::Reply;
using endpoint_api::Request;
using SteadyTime = std::chrono::steady_clock::time_point;

Reply okReply() { return Reply{true, ""}; }
Reply errorReply(std::string message) { return Reply{false, std::move(message)}; }

std::string podOf(const Request& r) {
  if (r.podNamespace.empty() && r.podName.empty()) return "-";
  return r.podNamespace + "/" + r.podName;
}

std::string podOf(const EndpointRecord& r) {
  if (r.podNamespace.empty() && r.podName.empty()) return "-";
  return r.podKey();
}

datapath::EndpointAttachment attachmentOf(const EndpointRecord& r) {
  return datapath::EndpointAttachment{r.id, r.hostVeth, r.hostIfindex, r.ips};
}

int64_t wallNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double seconds(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e9; }
double millis(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e6; }

size_t diffSize(const compiler::Diff& d) {
  size_t n = d.classesUpsert.size() + d.classesRemove.size() + d.rulesUpsert.size();
  for (const auto& e : d.endpoints) n += 1 + e.add.size() + e.remove.size();
  return n;
}

}  // namespace

NodeAgent::NodeAgent(AgentOptions options, datapath::Backend& backend, PolicyCompiler& compiler,
                     HostNetwork& host, const Clock& clock)
    : options_(std::move(options)),
      backend_(backend),
      compiler_(compiler),
      host_(host),
      clock_(clock),
      registry_(options_.stateDir + "/" + std::string(kRegistryFile)) {}

NodeAgent::~NodeAgent() { stop(); }

Status NodeAgent::start() {
  {
    std::lock_guard lock(mu_);
    if (started_) return makeError("node agent already started");
  }
  SLUICE_RETURN_IF_ERROR(ensureDirectory(options_.stateDir));
  // A marker left by a daemon that crashed must not make this one look ready.
  SLUICE_RETURN_IF_ERROR(removeFile(options_.stateDir + "/" + std::string(kReadyFile)));

  SLUICE_ASSIGN_OR_RETURN(auto report, registry_.load());
  if (report.problem) {
    spdlog::error(
        "registry path={} unusable error=\"{}\" kept_copy={}; rebuilding it from the "
        "datapath",
        registry_.path(), report.problem->message, report.keptCopy.empty() ? "-" : report.keptCopy);
  }
  SLUICE_RETURN_IF_ERROR(recoverFromDatapath(report.problem.has_value()));
  // Recovery: endpoints whose host veth is gone are dropped (their pod went away while we were
  // down); the others get their programs (re)attached before the first full sync.
  bool changed = false;
  std::vector<EndpointRecord> records;
  for (const auto& [id, rec] : registry_.endpoints()) records.push_back(rec);
  for (const auto& rec : records) {
    if (!host_.linkExists(rec.hostVeth, rec.hostIfindex)) {
      spdlog::info("endpoint={} id={} ifname={} host veth gone while the daemon was down; dropping",
                   podOf(rec), rec.id, rec.hostVeth);
      std::lock_guard lock(backendMu_);
      if (auto st = backend_.detach(attachmentOf(rec)); !st.ok()) {
        spdlog::warn("endpoint={} id={} detach error=\"{}\"", podOf(rec), rec.id,
                     st.error().message);
      }
      registry_.remove(rec.id);
      changed = true;
      continue;
    }
    std::lock_guard lock(backendMu_);
    if (auto st = backend_.attach(attachmentOf(rec)); !st.ok()) {
      spdlog::error("endpoint={} id={} ifname={} re-attach failed error=\"{}\"", podOf(rec), rec.id,
                    rec.hostVeth, st.error().message);
    } else {
      spdlog::info("endpoint={} id={} ifname={} recovered", podOf(rec), rec.id, rec.hostVeth);
    }
  }
  if (changed) SLUICE_RETURN_IF_ERROR(registry_.save());
  spdlog::info("registry path={} endpoints={} next_id={}", registry_.path(),
               registry_.endpoints().size(), registry_.nextId());
  publishEndpoints();
  needFullSync_ = true;
  nextAddressCheck_ = clock_.now() + options_.addressRecheck;
  {
    std::lock_guard lock(mu_);
    started_ = true;
    timerAt_ = nextTimer();
  }
  runner_ = std::jthread([this](std::stop_token st) { run(std::move(st)); });
  return Status::Ok();
}

Status NodeAgent::recoverFromDatapath(bool registryLost) {
  Result<std::vector<datapath::EndpointAttachment>> pinned =
      std::vector<datapath::EndpointAttachment>{};
  {
    std::lock_guard lock(backendMu_);
    pinned = backend_.endpoints();
  }
  if (!pinned.ok()) {
    // Without the registry and without the datapath's list, any id could be a live one: refuse
    // to start rather than hand out an id a pod still holds (the supervisor retries).
    if (registryLost) return pinned.error().wrap("rebuild the endpoint registry from the datapath");
    spdlog::warn("datapath endpoints unreadable error=\"{}\"; trusting the registry",
                 pinned.error().message);
    return Status::Ok();
  }
  std::set<int> known;
  for (const auto& [id, rec] : registry_.endpoints()) known.insert(rec.hostIfindex);
  bool changed = false;
  compiler::EndpointId maxPinned = 0;
  for (const auto& ep : *pinned) {
    maxPinned = std::max(maxPinned, ep.id);
    // The registry's record for the same link wins: its re-attach rewrites the pinned entry.
    if (registry_.findById(ep.id) != nullptr || known.contains(ep.ifindex)) continue;
    if (ep.ifname.empty() || !host_.linkExists(ep.ifname, ep.ifindex)) {
      spdlog::info("endpoint id={} ifindex={} in the datapath, its link is gone; removing", ep.id,
                   ep.ifindex);
      std::lock_guard lock(backendMu_);
      if (auto st = backend_.detach(ep); !st.ok()) {
        spdlog::warn("endpoint id={} detach error=\"{}\"", ep.id, st.error().message);
      }
      continue;
    }
    // A live pod the registry does not know (the registry was lost, or a daemon was killed
    // between attach and save): keep it registered, hence enforced, under the id its datapath
    // state already carries. The CNI plugin's alias on the host veth names its attachment, the
    // host routes through the veth its addresses; its pod is matched by address once the
    // source's objects arrive.
    EndpointRecord rec;
    rec.id = ep.id;
    rec.hostVeth = ep.ifname;
    rec.hostIfindex = ep.ifindex;
    rec.ips = ep.ips;
    if (auto l = host_.link(ep.ifindex); l.ok()) {
      parseHostVethAlias(l->alias, rec.ifname, rec.containerId);
      if (rec.ips.empty()) rec.ips = l->routedAddresses;
    } else {
      spdlog::warn("endpoint id={} ifname={} link details error=\"{}\"", ep.id, ep.ifname,
                   l.error().message);
    }
    std::string ips;
    for (const auto& a : rec.ips) ips += (ips.empty() ? "" : ",") + a.toString();
    spdlog::warn(
        "endpoint id={} ifname={} rebuilt from the datapath container={} pod_ifname={} "
        "ips={}",
        rec.id, rec.hostVeth, rec.containerId.empty() ? "-" : rec.containerId,
        rec.ifname.empty() ? "-" : rec.ifname, ips.empty() ? "-" : ips);
    registry_.upsert(std::move(rec));
    changed = true;
  }
  if (maxPinned >= registry_.nextId()) {
    registry_.raiseNextId(maxPinned + 1);
    changed = true;
  }
  if (changed || registryLost) SLUICE_RETURN_IF_ERROR(registry_.save());
  return Status::Ok();
}

bool NodeAgent::matchPodsByAddress() {
  bool changed = false;
  std::vector<EndpointRecord> updated;
  for (const auto& [id, rec] : registry_.endpoints()) {
    if (!rec.podName.empty() || !rec.podNamespace.empty() || rec.ips.empty()) continue;
    for (const auto& p : store_.cluster().pods) {
      if (p.hostNetwork) continue;
      const bool match = std::any_of(rec.ips.begin(), rec.ips.end(), [&](const IpAddr& a) {
        return std::find(p.ips.begin(), p.ips.end(), a) != p.ips.end();
      });
      if (!match) continue;
      EndpointRecord named = rec;
      named.podNamespace = p.namespace_;
      named.podName = p.name;
      spdlog::info("endpoint={} id={} ifname={} pod found by address", p.key(), rec.id,
                   rec.hostVeth);
      updated.push_back(std::move(named));
      break;
    }
  }
  for (auto& rec : updated) {
    registry_.upsert(std::move(rec));
    changed = true;
  }
  return changed;
}

bool NodeAgent::dropVanishedEndpoints() {
  std::vector<EndpointRecord> gone;
  for (const auto& [id, rec] : registry_.endpoints()) {
    if (waiting_.contains(id) || rec.hostVeth.empty()) continue;
    if (!host_.linkExists(rec.hostVeth, rec.hostIfindex)) gone.push_back(rec);
  }
  for (const auto& rec : gone) {
    // The pod's veth went without a DEL reaching us (a DEL while the daemon was down, a runtime
    // that gave up): its registration and datapath state would otherwise stay until a restart.
    spdlog::warn("endpoint={} id={} ifname={} host veth gone without a CNI DEL; removing",
                 podOf(rec), rec.id, rec.hostVeth);
    {
      std::lock_guard lock(backendMu_);
      if (auto st = backend_.detach(attachmentOf(rec)); !st.ok()) {
        spdlog::warn("endpoint={} id={} detach error=\"{}\"", podOf(rec), rec.id,
                     st.error().message);
      }
    }
    registry_.remove(rec.id);
  }
  if (gone.empty()) return false;
  if (auto st = registry_.save(); !st.ok()) {
    spdlog::warn("registry save failed error=\"{}\"", st.error().message);
  }
  return true;
}

const EndpointRecord* NodeAgent::findEndpoint(const Request& r) const {
  if (const EndpointRecord* rec = registry_.find(r.containerId, r.ifname)) return rec;
  // A recovered endpoint may lack its container id; the host veth name is derived from the
  // container id and ifname, so it names the same attachment.
  const EndpointRecord* rec = registry_.findRecoveredByHostVeth(r.hostVeth);
  if (rec != nullptr && (r.hostIfindex <= 0 || rec->hostIfindex == r.hostIfindex)) return rec;
  return nullptr;
}

void NodeAgent::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (runner_.joinable()) runner_.join();
  std::deque<OpPtr> left;
  {
    std::lock_guard lock(mu_);
    left.swap(ops_);
  }
  for (auto& op : left)
    op->reply.set_value(endpoint_api::retryReply("sluice-policyd is shutting down"));
  for (auto& [id, w] : waiting_) {
    for (auto& op : w.ops)
      op->reply.set_value(endpoint_api::retryReply("sluice-policyd is shutting down"));
  }
  waiting_.clear();
  if (ready_.exchange(false) || started_) {
    if (auto st = removeFile(options_.stateDir + "/" + std::string(kReadyFile)); !st.ok()) {
      spdlog::warn("ready marker error=\"{}\"", st.error().message);
    }
  }
  {
    std::lock_guard lock(statsMu_);
    stats_.ready = false;
  }
}

void NodeAgent::writeAppliedVersions() {
  if (pendingVersions_.empty()) return;
  if (auto w = writeFileAtomic(options_.stateDir + "/" + std::string(kAppliedVersionsFile),
                               nlohmann::json(pendingVersions_).dump() + "\n", false);
      !w.ok()) {
    spdlog::warn("applied versions error=\"{}\"", w.error().message);
  }
  pendingVersions_.clear();
}

void NodeAgent::onUpdate(source::Update update) {
  {
    std::lock_guard lock(mu_);
    if (update.initialComplete) initialSeen_ = true;
    updates_.push_back(std::move(update));
  }
  cv_.notify_all();
}

Reply NodeAgent::handle(const Request& request) {
  // Readiness is answered at once, without waiting behind syncs: CNI STATUS must not block.
  if (request.op == Op::Status) {
    return ready() ? okReply()
                   : errorReply(
                         "sluice-policyd is not ready: the initial cluster state is not "
                         "applied yet");
  }
  auto op = std::make_shared<PendingOp>();
  op->request = request;
  auto future = op->reply.get_future();
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !started_) {
      // The runtime retries ADD on code 11 (try again later): a restarting daemon is transient.
      return endpoint_api::retryReply(stopping_ ? "sluice-policyd is shutting down"
                                                : "sluice-policyd is starting");
    }
    ops_.push_back(op);
  }
  cv_.notify_all();
  if (future.wait_for(options_.requestTimeout) != std::future_status::ready) {
    spdlog::warn("endpoint={} op={} container={} timed out after {} ms", podOf(request),
                 opName(request.op), request.containerId, options_.requestTimeout.count());
    return endpoint_api::retryReply("timed out after " +
                                    std::to_string(options_.requestTimeout.count()) +
                                    " ms waiting for the policy sync");
  }
  return future.get();
}

void NodeAgent::wake() {
  {
    std::lock_guard lock(mu_);
    wakeRequested_ = true;
  }
  cv_.notify_all();
}

Clock::TimePoint NodeAgent::nextTimer() const {
  Clock::TimePoint t = nextAddressCheck_;
  if (retryPending_) t = std::min(t, retryAt_);
  for (const auto& [id, w] : waiting_) t = std::min(t, w.deadline);
  return t;
}

void NodeAgent::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    std::vector<OpPtr> ops;
    std::vector<source::Update> updates;
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stopping_) return;
        const bool timerDue = clock_.now() >= timerAt_;
        if (!updates_.empty() || (initialSeen_ && !ops_.empty()) || timerDue || wakeRequested_)
          break;
        // Real time bounded, so a ManualClock that moved without wake() is noticed too.
        auto wait = std::clamp<std::chrono::nanoseconds>(
            timerAt_ - clock_.now(), std::chrono::milliseconds(1), std::chrono::seconds(1));
        cv_.wait_for(lock, wait);
      }
      wakeRequested_ = false;
      updates.swap(updates_);
      if (initialSeen_) {
        ops.assign(std::make_move_iterator(ops_.begin()), std::make_move_iterator(ops_.end()));
        ops_.clear();
      }
    }
    try {
      syncOnce(std::move(ops), std::move(updates));
    } catch (const std::exception& e) {
      // Nothing below throws by design; if something does, keep the daemon alive and retry.
      spdlog::error("sync failed with exception error=\"{}\"", e.what());
      needFullSync_ = true;
      retryPending_ = true;
      retryAt_ = clock_.now() + options_.retryInterval;
    }
    std::lock_guard lock(mu_);
    timerAt_ = nextTimer();
  }
}

bool NodeAgent::podKnown(const EndpointRecord& rec) const {
  return store_.findPod(rec.podKey()) != nullptr;
}

bool NodeAgent::refreshAddresses() {
  auto addrs = host_.addresses();
  if (!addrs.ok()) {
    spdlog::warn("node={} host addresses error=\"{}\"; keeping the previous list",
                 options_.nodeName, addrs.error().message);
    return false;
  }
  if (*addrs == hostAddresses_) return false;
  std::string list;
  for (const auto& a : *addrs) list += (list.empty() ? "" : ",") + a.toString();
  spdlog::info("node={} host addresses={}", options_.nodeName, list);
  hostAddresses_ = std::move(*addrs);
  return true;
}

compiler::NodeContext NodeAgent::nodeContext() const {
  compiler::NodeContext ctx;
  ctx.hostAddresses = hostAddresses_;
  for (const auto& [id, rec] : registry_.endpoints()) {
    if (waiting_.contains(id)) continue;  // still fail closed: not in the compiled state yet
    ctx.endpoints.push_back(compiler::LocalEndpoint{id, rec.podNamespace, rec.podName, rec.ips});
  }
  return ctx;
}

void NodeAgent::publishEndpoints() {
  std::map<compiler::EndpointId, std::string> names;
  for (const auto& [id, rec] : registry_.endpoints()) names[id] = podOf(rec);
  std::lock_guard lock(statsMu_);
  endpointNames_ = std::move(names);
  endpointRecords_.clear();
  for (const auto& [id, rec] : registry_.endpoints()) endpointRecords_.push_back(rec);
  stats_.endpoints = registry_.endpoints().size();
  stats_.waitingForPod = waiting_.size();
}

void NodeAgent::countRequest(Op op, bool ok) {
  std::lock_guard lock(statsMu_);
  ++requests_[{opName(op), ok ? "ok" : "error"}];
}

void NodeAgent::finish(std::vector<Completion>& done) {
  for (auto& c : done) {
    countRequest(c.op->request.op, c.reply.ok);
    if (!c.reply.ok) {
      spdlog::warn("endpoint={} op={} container={} ifname={} failed error=\"{}\"",
                   podOf(c.op->request), opName(c.op->request.op), c.op->request.containerId,
                   c.op->request.ifname, c.reply.error);
    }
    c.op->reply.set_value(std::move(c.reply));
  }
  done.clear();
}

Reply NodeAgent::check(const Request& r) {
  const EndpointRecord* rec = findEndpoint(r);
  if (rec == nullptr) {
    return errorReply("endpoint container=" + r.containerId + " ifname=" + r.ifname +
                      " is not registered");
  }
  Result<bool> attached = false;
  {
    std::lock_guard lock(backendMu_);
    attached = backend_.attached(attachmentOf(*rec));
  }
  if (!attached.ok()) return errorReply(attached.error().wrap("check enforcement").message);
  if (!*attached) {
    return errorReply("policy enforcement is not attached to host veth " + rec->hostVeth);
  }
  if (!r.ips.empty()) {
    std::vector<IpAddr> want;
    for (const auto& s : r.ips) {
      auto a = IpAddr::parse(s);
      if (!a.ok()) return errorReply(a.error().wrap("ips").message);
      want.push_back(*a);
    }
    std::vector<IpAddr> have = rec->ips;
    std::sort(want.begin(), want.end());
    std::sort(have.begin(), have.end());
    if (want != have) {
      std::string list;
      for (const auto& a : rec->ips) list += (list.empty() ? "" : ",") + a.toString();
      return errorReply("addresses differ from the registered ones (" + list + ")");
    }
  }
  if (waiting_.contains(rec->id)) return errorReply("endpoint policy is not applied yet");
  return okReply();
}

void NodeAgent::handleAdd(const OpPtr& op, std::vector<Completion>& done, bool& changed,
                          std::vector<compiler::EndpointId>& added) {
  const Request& r = op->request;
  auto fail = [&](std::string message) { done.push_back({op, errorReply(std::move(message))}); };
  if (r.containerId.empty()) return fail("add: containerID is required");
  if (r.ifname.empty()) return fail("add: ifname is required");
  if (r.hostVeth.empty() && r.hostIfindex <= 0) return fail("add: host veth is required");
  EndpointRecord rec;
  rec.containerId = r.containerId;
  rec.ifname = r.ifname;
  rec.netns = r.netns;
  rec.hostVeth = r.hostVeth;
  rec.hostIfindex = r.hostIfindex;
  rec.podNamespace = r.podNamespace;
  rec.podName = r.podName;
  for (size_t i = 0; i < r.ips.size(); ++i) {
    auto a = IpAddr::parse(r.ips[i]);
    if (!a.ok()) return fail(a.error().wrap("add: ips[" + std::to_string(i) + "]").message);
    rec.ips.push_back(*a);
  }
  // Enforcement goes only on a pod's host veth: attaching to any other interface (lo, the
  // node's uplink, another pod's veth) would put the node's own traffic under pod policy.
  if (auto st = host_.checkPodVeth(r.hostVeth, r.hostIfindex, r.netns, r.ifname); !st.ok()) {
    return fail(st.error().wrap("add: refused").message);
  }

  const EndpointRecord* existing = findEndpoint(r);
  rec.id = existing != nullptr ? existing->id : registry_.allocateId();
  {
    std::lock_guard lock(backendMu_);
    if (existing != nullptr &&
        (existing->hostVeth != rec.hostVeth || existing->hostIfindex != rec.hostIfindex)) {
      // The same attachment re-added on a new veth: the old link's enforcement goes.
      if (auto st = backend_.detach(attachmentOf(*existing)); !st.ok()) {
        spdlog::warn("endpoint={} id={} detach of the previous veth {} error=\"{}\"", podOf(rec),
                     rec.id, existing->hostVeth, st.error().message);
      }
    }
    if (auto st = backend_.attach(attachmentOf(rec)); !st.ok()) {
      return fail(st.error().wrap("attach enforcement to " + rec.hostVeth).message);
    }
  }
  if (existing == nullptr || *existing != rec) {
    if (existing == nullptr) added.push_back(rec.id);
    registry_.upsert(rec);
    changed = true;
  }
  std::string ips;
  for (const auto& a : rec.ips) ips += (ips.empty() ? "" : ",") + a.toString();
  spdlog::info("endpoint={} op=add id={} container={} ifname={} host_veth={} ips={}{}", podOf(rec),
               rec.id, rec.containerId, rec.ifname, rec.hostVeth, ips,
               existing != nullptr ? " (already registered)" : "");
  const bool needsPod = !rec.podName.empty() && !podKnown(rec);
  if (!needsPod) {
    done.push_back({op, okReply()});
    return;
  }
  auto [it, inserted] = waiting_.try_emplace(rec.id);
  if (inserted) {
    it->second.deadline = clock_.now() + options_.podWait;
    spdlog::info("endpoint={} id={} pod object not known yet; waiting up to {} ms", podOf(rec),
                 rec.id, options_.podWait.count());
  }
  it->second.ops.push_back(op);
}

void NodeAgent::handleDel(const OpPtr& op, std::vector<Completion>& done, bool& changed) {
  const Request& r = op->request;
  const EndpointRecord* found = findEndpoint(r);
  if (found == nullptr) {
    spdlog::info("endpoint={} op=del container={} ifname={} not registered; nothing to do",
                 podOf(r), r.containerId, r.ifname);
    done.push_back({op, okReply()});
    return;
  }
  const EndpointRecord rec = *found;
  {
    std::lock_guard lock(backendMu_);
    if (auto st = backend_.detach(attachmentOf(rec)); !st.ok()) {
      done.push_back({op, errorReply(st.error().wrap("detach enforcement").message)});
      return;
    }
  }
  if (auto w = waiting_.find(rec.id); w != waiting_.end()) {
    for (auto& waiter : w->second.ops) {
      done.push_back({waiter, errorReply("endpoint deleted while waiting for its pod object")});
    }
    waiting_.erase(w);
  }
  registry_.remove(rec.id);
  changed = true;
  spdlog::info("endpoint={} op=del id={} container={} ifname={} host_veth={}", podOf(rec), rec.id,
               rec.containerId, rec.ifname, rec.hostVeth);
  done.push_back({op, okReply()});
}

void NodeAgent::syncOnce(std::vector<OpPtr> ops, std::vector<source::Update> updates) {
  const auto now = clock_.now();
  bool stateRead = false;     // some Update re-read the source's state (not versionsOnly)
  bool modelChanged = false;  // and some object in the store changed
  for (auto& u : updates) {
    for (auto& [resource, rv] : u.resourceVersions) pendingVersions_[resource] = rv;
    if (u.initialComplete) haveInitial_ = true;
    if (u.versionsOnly) continue;  // what is applied already reflects these events
    stateRead = true;
    if (!u.changes.empty()) {
      std::unique_lock model(modelMu_);
      if (store_.apply(std::move(u.changes)) > 0) {
        ++modelGeneration_;
        modelChanged = true;
      }
    }
    pendingAppliedWallNs_ = u.readWallNs;
    pendingEventSeen_ = pendingEventSeen_ ? std::min(*pendingEventSeen_, u.eventSeen) : u.eventSeen;
    std::lock_guard lock(statsMu_);
    ++stats_.updates;
    stats_.lastGeneration = u.generation;
    if (u.errors) stats_.invalidObjects = u.errors->size();
  }
  if (!updates.empty() && !stateRead) {
    // Only versions moved: record how far the source has got; written at once when no sync is
    // due, else after the next one.
    if (haveInitial_ && ops.empty() && !needFullSync_ && !pendingAppliedWallNs_ && !retryPending_) {
      writeAppliedVersions();
      return;
    }
  }
  // Nothing is compiled before the source's initial state is complete: an empty or partial model
  // would strip the policy of recovered endpoints.
  if (!haveInitial_) return;
  bool needCompile = needFullSync_;

  if (stateRead) {
    if (modelChanged && matchPodsByAddress()) {
      if (auto st = registry_.save(); !st.ok()) {
        // Only the names are unsaved: the next restart matches them again.
        spdlog::warn("registry save failed error=\"{}\"", st.error().message);
      }
    }
    needCompile = true;
  }

  std::vector<Completion> done;
  bool changed = false;
  std::vector<compiler::EndpointId> added;
  for (auto& op : ops) {
    switch (op->request.op) {
      case Op::Add:
        handleAdd(op, done, changed, added);
        break;
      case Op::Del:
        handleDel(op, done, changed);
        break;
      case Op::Check:
        done.push_back({op, check(op->request)});
        break;
      case Op::Status:  // answered in handle(), never queued
        done.push_back({op, ready() ? okReply() : errorReply("not ready")});
        break;
    }
  }
  if (changed) {
    needCompile = true;
    if (auto st = registry_.save(); !st.ok()) {
      // Not persisted means not recoverable after a restart: refuse the new endpoints.
      spdlog::error("registry save failed error=\"{}\"", st.error().message);
      for (auto id : added) {
        const EndpointRecord* rec = registry_.findById(id);
        if (rec == nullptr) continue;
        {
          std::lock_guard lock(backendMu_);
          (void)backend_.detach(attachmentOf(*rec));
        }
        registry_.remove(id);
        if (auto w = waiting_.find(id); w != waiting_.end()) {
          for (auto& waiter : w->second.ops)
            done.push_back({waiter, errorReply(st.error().message)});
          waiting_.erase(w);
        }
      }
      for (auto& c : done) {
        if (c.op->request.op != Op::Add || !c.reply.ok) continue;
        if (registry_.find(c.op->request.containerId, c.op->request.ifname) != nullptr) continue;
        c.reply = errorReply(st.error().message);
      }
    }
  }

  // Release registrations whose pod object arrived, or that waited long enough.
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    const EndpointRecord* rec = registry_.findById(it->first);
    const bool known = rec != nullptr && podKnown(*rec);
    if (!known && now < it->second.deadline && rec != nullptr) {
      ++it;
      continue;
    }
    if (rec != nullptr && !known) {
      spdlog::warn(
          "endpoint={} id={} pod object not seen after {} ms; enforcing without its "
          "labels until it arrives",
          podOf(*rec), rec->id, options_.podWait.count());
    }
    for (auto& op : it->second.ops) done.push_back({op, okReply()});
    it = waiting_.erase(it);
    needCompile = true;
  }

  if (now >= nextAddressCheck_) {
    if (dropVanishedEndpoints()) needCompile = true;
  }
  if (now >= nextAddressCheck_ || needCompile) {
    nextAddressCheck_ = now + options_.addressRecheck;
    if (refreshAddresses()) needCompile = true;
  }
  if (retryPending_ && now >= retryAt_) {
    retryPending_ = false;
    needCompile = true;
  }
  publishEndpoints();
  if (!needCompile) {
    finish(done);
    return;
  }

  const auto t0 = std::chrono::steady_clock::now();
  bool trimAfterInitial = false;
  compiler::NodeContext node = nodeContext();
  compiler::Diff diff;
  if (!compiledOnce_) {
    // The whole store, read in place (no change set copying every object).
    diff = compiler_.update(store_.cluster(), node);
    store_.discardChanges();
    compiledOnce_ = true;
    compiledNode_ = std::move(node);
    trimAfterInitial = true;
  } else {
    source::Changes c = store_.takeChanges();
    compiler::ChangeSet changes;
    changes.namespaceUpserts = std::move(c.namespaceUpserts);
    changes.namespaceDeletes = std::move(c.namespaceDeletes);
    changes.podUpserts = std::move(c.podUpserts);
    changes.podDeletes = std::move(c.podDeletes);
    changes.policyUpserts = std::move(c.policyUpserts);
    changes.policyDeletes = std::move(c.policyDeletes);
    if (node != compiledNode_) {
      changes.node = node;
      compiledNode_ = std::move(node);
    }
    diff = compiler_.update(changes);
  }
  const auto t1 = std::chrono::steady_clock::now();
  const bool full = needFullSync_;
  Status st;
  {
    std::lock_guard lock(backendMu_);
    if (full) {
      st = backend_.sync(compiler_.state());
    } else if (!diff.empty()) {
      st = backend_.apply(diff);
    }
  }
  const auto t2 = std::chrono::steady_clock::now();
  const uint64_t revision = compiler_.state().revision;

  if (!st.ok()) {
    needFullSync_ = true;
    retryPending_ = true;
    retryAt_ = now + options_.retryInterval;
    spdlog::error("sync failed revision={} full={} error=\"{}\"; retrying in {} ms", revision, full,
                  st.error().message, options_.retryInterval.count());
    for (auto& c : done) {
      if (c.op->request.op == Op::Add && c.reply.ok) {
        c.reply = errorReply(st.error().wrap("apply policy").message);
      }
    }
    {
      std::lock_guard lock(statsMu_);
      ++stats_.syncErrors;
    }
    finish(done);
    return;
  }

  needFullSync_ = false;
  const auto syncDuration = t2 - t0;
  std::optional<std::chrono::nanoseconds> latency;
  if (pendingEventSeen_) latency = t2 - *pendingEventSeen_;
  const int64_t appliedWall = wallNowNs();
  {
    std::lock_guard lock(statsMu_);
    ++stats_.syncs;
    if (full) ++stats_.fullSyncs;
    stats_.revision = revision;
    stats_.lastSyncDuration = syncDuration;
    if (latency) {
      stats_.lastLatency = *latency;
      latency_.observe(seconds(*latency));
    }
    if (full || !diff.rulesUpsert.empty()) rules_ = compiler_.state().rules;
    if (full) {
      appliedPolicies_ = compiler_.state().endpoints;
    } else {
      for (const auto& ch : diff.endpoints) {
        auto it = compiler_.state().endpoints.find(ch.endpoint);
        if (it == compiler_.state().endpoints.end()) {
          appliedPolicies_.erase(ch.endpoint);
        } else {
          appliedPolicies_[ch.endpoint] = it->second;
        }
      }
    }
  }
  const bool quiet = !full && diff.empty() && done.empty() && !pendingAppliedWallNs_;
  spdlog::log(quiet ? spdlog::level::debug : spdlog::level::info,
              "sync node={} revision={} mode={} endpoints={} diff_items={} compile_ms={:.3f} "
              "apply_ms={:.3f} update_latency_ms={}",
              options_.nodeName, revision, full ? "full" : (diff.empty() ? "noop" : "diff"),
              registry_.endpoints().size(), diffSize(diff), millis(t1 - t0), millis(t2 - t1),
              latency ? fmt::format("{:.3f}", millis(*latency)) : std::string("-"));

  if (trimAfterInitial) {
    // The initial state passed through list pages, decoded objects and one large batch on the
    // source's and this thread's malloc arenas; what is free now goes back to the system
    // instead of staying in the daemon's resident memory.
    {
      std::unique_lock model(modelMu_);
      store_.shrink();
    }
    diff = compiler::Diff();
    ::malloc_trim(0);
  }
  const std::string dir = options_.stateDir + "/";
  if (pendingAppliedWallNs_) {
    if (auto w = writeFileAtomic(dir + std::string(kAppliedFile),
                                 std::to_string(*pendingAppliedWallNs_) + "\n", false);
        !w.ok()) {
      spdlog::warn("applied marker error=\"{}\"", w.error().message);
    }
    nlohmann::json stats = {
        {"node", options_.nodeName},
        {"revision", revision},
        {"mode", full ? "full" : "diff"},
        {"endpoints", registry_.endpoints().size()},
        {"readWallNs", *pendingAppliedWallNs_},
        {"appliedWallNs", appliedWall},
        {"compileNs", (t1 - t0).count()},
        {"applyNs", (t2 - t1).count()},
        {"updateLatencyNs", latency ? latency->count() : 0},
    };
    if (auto w = writeFileAtomic(dir + std::string(kSyncStatsFile), stats.dump() + "\n", false);
        !w.ok()) {
      spdlog::warn("sync stats error=\"{}\"", w.error().message);
    }
    pendingAppliedWallNs_.reset();
    pendingEventSeen_.reset();
  }
  writeAppliedVersions();
  if (!ready_.load()) {
    if (auto w = writeFileAtomic(dir + std::string(kReadyFile), std::to_string(appliedWall) + "\n",
                                 false);
        !w.ok()) {
      spdlog::error("ready marker error=\"{}\"", w.error().message);
    }
    ready_ = true;
    {
      std::lock_guard lock(statsMu_);
      stats_.ready = true;
    }
    spdlog::info("node={} ready revision={} endpoints={}", options_.nodeName, revision,
                 registry_.endpoints().size());
  }
  finish(done);
}

AgentStats NodeAgent::stats() const {
  std::lock_guard lock(statsMu_);
  return stats_;
}

void NodeAgent::readModel(const Reader& fn) const {
  std::shared_lock model(modelMu_);
  fn(store_.cluster(), modelGeneration_);
}

std::string NodeAgent::endpointName(compiler::EndpointId id) const {
  std::lock_guard lock(statsMu_);
  auto it = endpointNames_.find(id);
  return it == endpointNames_.end() ? std::string() : it->second;
}

std::vector<EndpointRecord> NodeAgent::endpointRecords() const {
  std::lock_guard lock(statsMu_);
  return endpointRecords_;
}

std::vector<compiler::RuleOrigin> NodeAgent::ruleOrigins() const {
  std::lock_guard lock(statsMu_);
  return rules_;
}

std::optional<compiler::EndpointPolicy> NodeAgent::appliedPolicy(compiler::EndpointId id) const {
  std::lock_guard lock(statsMu_);
  auto it = appliedPolicies_.find(id);
  if (it == appliedPolicies_.end()) return std::nullopt;
  return it->second;
}

std::string NodeAgent::metricsText() {
  // Without backendMu_ (the backend allows it): a scrape never waits behind an attach or a sync,
  // and a slow counter read never delays a CNI ADD.
  auto counters = backend_.counters();
  auto drops = backend_.dropCounts();
  MetricsWriter w;
  std::lock_guard lock(statsMu_);
  const AgentStats& s = stats_;
  w.family("sluice_ready", "gauge",
           "1 once the source's initial state has been compiled and applied.");
  w.sample("sluice_ready", s.ready ? 1 : 0);
  w.family("sluice_endpoints", "gauge", "Endpoints (pod interfaces) registered on this node.");
  w.sample("sluice_endpoints", static_cast<double>(s.endpoints));
  w.family("sluice_endpoints_waiting_for_pod", "gauge",
           "Registrations waiting for their Pod object (dropping traffic meanwhile).");
  w.sample("sluice_endpoints_waiting_for_pod", static_cast<double>(s.waitingForPod));
  w.family("sluice_syncs_total", "counter", "Successful syncs of the datapath.");
  w.sample("sluice_syncs_total", static_cast<double>(s.syncs));
  w.family("sluice_sync_errors_total", "counter", "Failed syncs (retried).");
  w.sample("sluice_sync_errors_total", static_cast<double>(s.syncErrors));
  w.family("sluice_full_syncs_total", "counter",
           "Successful full (read back and reconcile) syncs.");
  w.sample("sluice_full_syncs_total", static_cast<double>(s.fullSyncs));
  w.family("sluice_source_updates_total", "counter",
           "Source updates (per-object change batches) consumed.");
  w.sample("sluice_source_updates_total", static_cast<double>(s.updates));
  w.family("sluice_source_invalid_objects", "gauge",
           "Objects or files the source currently rejects (last good version enforced).");
  w.sample("sluice_source_invalid_objects", static_cast<double>(s.invalidObjects));
  w.family("sluice_policy_revision", "gauge", "Revision of the compiled state last applied.");
  w.sample("sluice_policy_revision", static_cast<double>(s.revision));
  w.family("sluice_last_sync_duration_seconds", "gauge",
           "Compile + backend apply time of the last sync.");
  w.sample("sluice_last_sync_duration_seconds", seconds(s.lastSyncDuration));
  w.family("sluice_policy_update_latency_last_seconds", "gauge",
           "Last policy update latency: source change seen -> backend apply returned.");
  w.sample("sluice_policy_update_latency_last_seconds", seconds(s.lastLatency));
  w.histogram("sluice_policy_update_latency_seconds",
              "Policy update latency: source change seen -> backend apply returned.", latency_);
  w.family("sluice_endpoint_requests_total", "counter", "Endpoint socket requests by result.");
  for (const auto& [key, n] : requests_) {
    w.sample("sluice_endpoint_requests_total", {{"op", key.first}, {"result", key.second}},
             static_cast<double>(n));
  }
  w.family("sluice_datapath_counters_ok", "gauge", "1 when the rule counters could be read.");
  w.sample("sluice_datapath_counters_ok", counters.ok() ? 1 : 0);
  if (counters.ok()) {
    w.family("sluice_rule_packets_total", "counter", "Packets admitted by each policy rule.");
    std::vector<std::pair<MetricLabels, const datapath::RuleCounter*>> series;
    for (const auto& c : *counters) {
      MetricLabels labels;
      if (c.rule < rules_.size()) {
        const auto& o = rules_[c.rule];
        labels = {{"policy", o.policy},
                  {"direction", o.direction == compiler::Direction::Ingress ? "ingress" : "egress"},
                  {"rule", std::to_string(o.rule)}};
      } else {
        labels = {{"policy", ""}, {"direction", ""}, {"rule", "id" + std::to_string(c.rule)}};
      }
      series.emplace_back(std::move(labels), &c);
    }
    for (const auto& [labels, c] : series) {
      w.sample("sluice_rule_packets_total", labels, static_cast<double>(c->packets));
    }
    w.family("sluice_rule_bytes_total", "counter", "Bytes admitted by each policy rule.");
    for (const auto& [labels, c] : series) {
      w.sample("sluice_rule_bytes_total", labels, static_cast<double>(c->bytes));
    }
  }
  w.family("sluice_datapath_drops_ok", "gauge", "1 when the drop counters could be read.");
  w.sample("sluice_datapath_drops_ok", drops.ok() ? 1 : 0);
  if (drops.ok()) {
    w.family("sluice_dropped_packets_total", "counter", "Packets the datapath dropped, by reason.");
    for (const auto& d : *drops) {
      w.sample("sluice_dropped_packets_total", {{"reason", d.reason}},
               static_cast<double>(d.packets));
    }
    w.family("sluice_dropped_bytes_total", "counter", "Bytes the datapath dropped, by reason.");
    for (const auto& d : *drops) {
      w.sample("sluice_dropped_bytes_total", {{"reason", d.reason}}, static_cast<double>(d.bytes));
    }
  }
  return w.text();
}

}  // namespace sluice::daemon
