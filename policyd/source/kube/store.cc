#include "policyd/source/kube/store.h"

#include <set>

namespace sluice::source::kube {

namespace {

// Whether two versions differ in anything the engine or the node reads. Most updates the API
// server sends do not (pod status conditions, node heartbeats): they must not cost a sync.
// Policies change rarely and are compared conservatively (any update counts).
bool sameValue(const Value& a, const Value& b) {
  if (a.index() != b.index()) return false;
  if (auto* x = std::get_if<model::Pod>(&a)) {
    const auto& y = std::get<model::Pod>(b);
    if (x->ports.size() != y.ports.size()) return false;
    for (size_t i = 0; i < x->ports.size(); ++i) {
      const auto &p = x->ports[i], &q = y.ports[i];
      if (p.name != q.name || p.port != q.port || p.protocol != q.protocol) return false;
    }
    return x->namespace_ == y.namespace_ && x->name == y.name && x->labels == y.labels &&
           x->ips == y.ips && x->hostNetwork == y.hostNetwork && x->nodeName == y.nodeName;
  }
  if (auto* x = std::get_if<model::Namespace>(&a)) {
    const auto& y = std::get<model::Namespace>(b);
    return x->name == y.name && x->labels == y.labels;
  }
  if (auto* x = std::get_if<Node>(&a)) return *x == std::get<Node>(b);
  return false;
}

}  // namespace

std::optional<Change> KindStore::upsert(Object&& o) {
  auto it = entries_.find(o.key);
  if (it == entries_.end()) {
    Entry e{std::move(o.resourceVersion), std::move(o.value), std::move(o.error)};
    entries_.emplace(o.key, std::move(e));
    return Change{Change::Op::Added, std::move(o.key)};
  }
  Entry& e = it->second;
  if (!o.resourceVersion.empty() && e.resourceVersion == o.resourceVersion) return std::nullopt;
  e.resourceVersion = std::move(o.resourceVersion);
  if (!o.error && !e.error) {
    bool same = o.value && e.good ? sameValue(*o.value, *e.good) : !o.value && !e.good;
    if (same) return std::nullopt;  // a new version with nothing new in it
  }
  if (o.error) {
    e.error = std::move(o.error);  // keep the last good version
  } else {
    e.good = std::move(o.value);  // may be empty: a finished Pod
    e.error.reset();
  }
  return Change{Change::Op::Updated, std::move(o.key)};
}

std::optional<Change> KindStore::remove(const std::string& key) {
  if (entries_.erase(key) == 0) return std::nullopt;
  return Change{Change::Op::Deleted, key};
}

std::vector<Change> KindStore::replace(std::vector<Object>&& items) {
  std::vector<Change> changes;
  std::set<std::string> seen;
  for (auto& o : items) {
    std::string key = o.key;
    if (!seen.insert(key).second) continue;  // the server lists each object once
    if (auto c = upsert(std::move(o))) changes.push_back(std::move(*c));
  }
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (seen.contains(it->first)) {
      ++it;
      continue;
    }
    changes.push_back({Change::Op::Deleted, it->first});
    it = entries_.erase(it);
  }
  return changes;
}

}  // namespace sluice::source::kube
