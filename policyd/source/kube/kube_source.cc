#include "policyd/source/kube/kube_source.h"

#include <spdlog/spdlog.h>

#include <ctime>

#include "policyd/source/cluster_store.h"

namespace sluice::source::kube {

namespace {

using Clock = std::chrono::steady_clock;

int64_t wallNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

size_t idx(Kind k) { return static_cast<size_t>(k); }

}  // namespace

KubeSource::KubeSource(KubeSourceOptions options) : options_(std::move(options)) {}

KubeSource::~KubeSource() { stop(); }

Result<std::unique_ptr<KubeSource>> KubeSource::create(KubeSourceOptions options) {
  auto src = std::unique_ptr<KubeSource>(new KubeSource(std::move(options)));
  for (Kind k : kAllKinds) {
    auto client = HttpClient::create(src->options_.cluster);
    if (!client.ok()) return client.error();
    src->informers_.push_back(std::make_unique<Informer>(
        k, std::move(*client), src->options_.informer, static_cast<InformerSink&>(*src)));
  }
  if (src->options_.routes || src->options_.onLocalPodCidrs) {
    src->router_ = std::make_unique<NodeRouter>(src->options_.nodeName, src->options_.routes.get(),
                                                src->options_.onLocalPodCidrs);
  }
  return src;
}

std::string KubeSource::describe() const { return "kube:" + options_.cluster.server; }

Status KubeSource::start(Callback onUpdate) {
  callback_ = std::move(onUpdate);
  deliver_ = std::jthread([this](std::stop_token st) { deliverLoop(st); });
  for (auto& i : informers_) i->start();
  return Status::Ok();
}

void KubeSource::stop() {
  for (auto& i : informers_) i->stop();
  if (deliver_.joinable()) {
    deliver_.request_stop();
    cv_.notify_all();
    deliver_.join();
  }
}

bool KubeSource::record(Kind kind, Change&& c) {
  if (keepLog_) log_.emplace_back(kind, Change{c.op, c.key});
  if (kind == Kind::Node) return true;
  const auto& entries = stores_[idx(kind)].entries();
  auto e = entries.find(c.key);
  std::string errorKey = std::string(kindName(kind)) + " " + c.key;
  if (e != entries.end() && e->second.error) {
    errors_.insert_or_assign(std::move(errorKey), *e->second.error);
    errorsDirty_ = true;
  } else if (errors_.erase(errorKey) > 0) {
    errorsDirty_ = true;
  }
  if (c.errorOnly) return true;  // the last good version stays in effect
  // Deleted, or no usable version (rejected from the start, a finished Pod): the consumer drops
  // the object. Deleting what the consumer never had is harmless.
  pending_[idx(kind)].insert_or_assign(std::move(c.key), std::move(c.value));
  return true;
}

void KubeSource::markDirty(Kind kind, Clock::time_point received) {
  if (kind == Kind::Node) {
    // Nodes only move routes and the pod CIDR file; the engine's snapshot does not change.
    nodesDirty_ = true;
    cv_.notify_all();
    return;
  }
  if (!dirty_) {
    dirty_ = true;
    firstPending_ = received;
    firstPendingWallNs_ =
        wallNowNs() -
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - received).count();
  }
  cv_.notify_all();
}

namespace {
// resourceVersions are opaque by contract but etcd revisions in practice; a list carries no
// order, so the largest numeric one stands for it (kept as is when not numeric).
bool newerVersion(const std::string& a, const std::string& b) {
  if (b.empty()) return true;
  if (a.size() != b.size()) return a.size() > b.size();
  return a > b;
}
}  // namespace

void KubeSource::listed(Kind kind, std::vector<Object> items, Clock::time_point received) {
  std::lock_guard lock(mu_);
  bool advanced = false;
  for (const auto& o : items) {
    if (newerVersion(o.resourceVersion, newestVersion_[idx(kind)])) {
      newestVersion_[idx(kind)] = o.resourceVersion;
      advanced = true;
    }
  }
  auto changes = stores_[idx(kind)].replace(std::move(items));
  const size_t changed = changes.size();
  for (auto& c : changes) record(kind, std::move(c));
  changes = {};  // the list's values now live in pending_ only
  bool first = !listed_[idx(kind)];
  listed_[idx(kind)] = true;
  ++stats_.lists;
  spdlog::info("kube list kind={} objects={} changes={} {}", kindName(kind),
               stores_[idx(kind)].entries().size(), changed, first ? "initial" : "relist");
  if (first || changed > 0) {
    markDirty(kind, received);
  } else if (advanced && kind != Kind::Node) {
    // A relist that brought only updates the engine does not read still moves the versions on.
    versionsDirty_ = true;
    cv_.notify_all();
  }
}

void KubeSource::event(Kind kind, EventType type, Object object, Clock::time_point received) {
  std::lock_guard lock(mu_);
  ++stats_.events;
  // Watch events of one kind arrive in resourceVersion order.
  if (!object.resourceVersion.empty()) newestVersion_[idx(kind)] = object.resourceVersion;
  std::optional<Change> c;
  if (type == EventType::Deleted) {
    c = stores_[idx(kind)].remove(object.key);
  } else {
    if (object.error) spdlog::warn("kube rejected {}", object.error->message);
    c = stores_[idx(kind)].upsert(std::move(object));
  }
  if (c && record(kind, std::move(*c))) {
    markDirty(kind, received);
  } else if (kind != Kind::Node && listed_[idx(kind)]) {
    versionsDirty_ = true;
    cv_.notify_all();
  }
}

void KubeSource::failed(Kind kind, const Error& error) {
  std::lock_guard lock(mu_);
  ++stats_.failures;
  lastError_ = error;
  spdlog::warn("kube informer kind={} error=\"{}\"", kindName(kind), error.message);
}

Update KubeSource::takeUpdate() {
  Update u;
  Changes& c = u.changes;
  for (auto& [key, v] : pending_[idx(Kind::Namespace)]) {
    if (v) {
      c.namespaceUpserts.push_back(std::get<model::Namespace>(std::move(*v)));
    } else {
      c.namespaceDeletes.push_back(key);
    }
  }
  for (auto& [key, v] : pending_[idx(Kind::Pod)]) {
    if (v) {
      c.podUpserts.push_back(std::get<model::Pod>(std::move(*v)));
    } else {
      c.podDeletes.push_back(key);
    }
  }
  for (auto& [key, v] : pending_[idx(Kind::NetworkPolicy)]) {
    if (v) {
      c.policyUpserts.push_back(std::get<model::NetworkPolicy>(std::move(*v)));
    } else {
      c.policyDeletes.push_back(key);
    }
  }
  for (auto& p : pending_) p.clear();
  if (errorsDirty_ || !synced_) {
    std::vector<Error> errors;
    errors.reserve(errors_.size());
    for (const auto& [key, e] : errors_) errors.push_back(e);
    u.errors = std::move(errors);
    errorsDirty_ = false;
  }
  return u;
}

void KubeSource::deliverLoop(std::stop_token stop) {
  for (;;) {
    Update update;
    bool deliver = false;
    std::map<std::string, Node> nodes;
    bool routeNodes = false;
    {
      std::unique_lock lock(mu_);
      auto allListed = [&] {
        for (bool l : listed_)
          if (!l) return false;
        return true;
      };
      // The initial state waits for every kind, Nodes included (routes before readiness).
      cv_.wait(lock, stop, [&] {
        return (dirty_ || versionsDirty_ || (nodesDirty_ && router_)) && allListed();
      });
      if (stop.stop_requested()) return;
      deliver = dirty_ || versionsDirty_;
      if (dirty_) {
        update = takeUpdate();
        update.initialComplete = !synced_;
        update.eventSeen = firstPending_;
        update.readWallNs = firstPendingWallNs_;
        update.generation = ++generation_;
        dirty_ = false;
      } else if (versionsDirty_) {
        // Only objects the engine does not read changed: what is applied already holds them, the
        // daemon just learns how far the watches have got.
        update.versionsOnly = true;
        update.eventSeen = Clock::now();
      }
      versionsDirty_ = false;
      for (Kind k : kAllKinds) {
        if (!newestVersion_[idx(k)].empty()) {
          std::string resource = resourceName(k);  // plural, without the API group
          update.resourceVersions[resource.substr(0, resource.find('.'))] = newestVersion_[idx(k)];
        }
      }
      if (nodesDirty_ && router_) {
        for (const auto& [key, e] : stores_[idx(Kind::Node)].entries())
          if (e.node) nodes.emplace(key, *e.node);
        routeNodes = true;
      }
      nodesDirty_ = false;
    }
    if (routeNodes) {
      // Failures are logged and retried with the next Node change (not in a loop: an
      // unreachable InternalIP stays unreachable until something changes).
      for (const auto& e : router_->sync(nodes))
        spdlog::warn("kube node routes error=\"{}\"", e.message);
    }
    if (!deliver) continue;
    if (callback_) callback_(std::move(update));
    {
      std::lock_guard lock(mu_);
      ++stats_.updates;
      synced_ = true;
    }
    syncedCv_.notify_all();
  }
}

bool KubeSource::waitSynced(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return syncedCv_.wait_for(lock, timeout, [&] { return synced_; });
}

std::optional<Error> KubeSource::lastError() const {
  std::lock_guard lock(mu_);
  return lastError_;
}

KubeSource::Stats KubeSource::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

std::vector<std::pair<Kind, Change>> KubeSource::changeLog() const {
  std::lock_guard lock(mu_);
  return log_;
}

void KubeSource::keepChangeLog(bool keep) {
  std::lock_guard lock(mu_);
  keepLog_ = keep;
}

Result<std::unique_ptr<Source>> makeKubeSource(const KubeSourceFactoryOptions& options) {
  auto config = resolveConfig(options.kubeconfig, options.context, processEnv());
  if (!config.ok()) return config.error();
  KubeSourceOptions o;
  o.cluster = std::move(*config);
  o.nodeName = options.nodeName;
  auto routes = makeNetlinkRouteTable();
  if (!routes.ok()) return routes.error();
  o.routes = std::move(*routes);
  o.onLocalPodCidrs = options.onLocalPodCidrs;
  spdlog::info("kube source server={} config=\"{}\"", o.cluster.server, o.cluster.origin);
  auto src = KubeSource::create(std::move(o));
  if (!src.ok()) return src.error();
  return std::unique_ptr<Source>(std::move(*src));
}

Result<Snapshot> readClusterOnce(const ClusterConfig& config, std::chrono::milliseconds timeout) {
  KubeSourceOptions o;
  o.cluster = config;
  auto src = KubeSource::create(std::move(o));
  if (!src.ok()) return src.error();
  std::mutex m;
  ClusterStore store;
  Snapshot got;
  bool complete = false;
  auto st = (*src)->start([&](Update u) {
    std::lock_guard lock(m);
    if (complete) return;
    store.apply(std::move(u.changes));
    if (u.errors) got.errors = std::move(*u.errors);
    for (auto& [resource, rv] : u.resourceVersions) got.resourceVersions[resource] = rv;
    complete = u.initialComplete;
  });
  if (!st.ok()) return st.error();
  bool ok = (*src)->waitSynced(timeout);
  (*src)->stop();
  if (!ok || !complete) {
    auto e = (*src)->lastError();
    std::string why = e ? e->message : "no answer";
    return makeError("reading the cluster at " + config.server + " (" + config.origin +
                     "): not complete after " + std::to_string(timeout.count()) + "ms: " + why);
  }
  got.cluster = store.cluster();
  return got;
}

}  // namespace sluice::source::kube
