#include "policyd/source/kube/store.h"

#include <set>
#include <string_view>

namespace sluice::source::kube {

namespace {

// FNV-1a over the fields, each followed by a separator byte so ("ab","c") != ("a","bc").
class Hasher {
 public:
  void add(std::string_view s) {
    for (unsigned char c : s) mix(c);
    mix(0xff);
  }
  void add(uint64_t v) {
    for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(v >> (8 * i)));
  }
  void add(const IpAddr& a) { add(a.toString()); }
  uint64_t value() const { return h_; }

 private:
  void mix(unsigned char c) {
    h_ ^= c;
    h_ *= 1099511628211ULL;
  }
  uint64_t h_ = 1469598103934665603ULL;
};

}  // namespace

uint64_t contentHash(const Value& v) {
  Hasher h;
  h.add(static_cast<uint64_t>(v.index()));
  if (auto* p = std::get_if<model::Pod>(&v)) {
    h.add(p->namespace_);
    h.add(p->name);
    h.add(p->labels.size());
    for (const auto& [k, val] : p->labels) {
      h.add(k);
      h.add(val);
    }
    h.add(p->ips.size());
    for (const auto& a : p->ips) h.add(a);
    h.add(p->ports.size());
    for (const auto& port : p->ports) {
      h.add(port.name);
      h.add(port.port);
      h.add(static_cast<uint64_t>(port.protocol));
    }
    h.add(p->hostNetwork ? 1 : 0);
    h.add(p->nodeName);
  } else if (auto* n = std::get_if<model::Namespace>(&v)) {
    h.add(n->name);
    h.add(n->labels.size());
    for (const auto& [k, val] : n->labels) {
      h.add(k);
      h.add(val);
    }
  } else if (auto* node = std::get_if<Node>(&v)) {
    h.add(node->name);
    h.add(node->internalIps.size());
    for (const auto& a : node->internalIps) h.add(a);
    h.add(node->podCidrs.size());
    for (const auto& c : node->podCidrs) h.add(c.toString());
  } else {
    return 0;  // policies: never "the same" (see store.h)
  }
  // 0 is reserved for "compare conservatively".
  return h.value() == 0 ? 1 : h.value();
}

std::optional<Change> KindStore::upsert(Object&& o) {
  auto it = entries_.find(o.key);
  const uint64_t hash = o.value ? contentHash(*o.value) : 0;
  auto keepNode = [](Entry& e, std::optional<Value>& v) {
    if (v && std::holds_alternative<Node>(*v)) {
      e.node = std::make_unique<Node>(std::get<Node>(*v));
    } else {
      e.node.reset();
    }
  };
  auto errorOf = [](std::optional<Error>& err) {
    return err ? std::make_unique<Error>(std::move(*err)) : nullptr;
  };
  if (it == entries_.end()) {
    Entry e;
    e.resourceVersion = std::move(o.resourceVersion);
    e.good = o.value.has_value();
    e.hash = hash;
    e.error = errorOf(o.error);
    keepNode(e, o.value);
    entries_.emplace(o.key, std::move(e));
    return Change{Change::Op::Added, std::move(o.key), std::move(o.value)};
  }
  Entry& e = it->second;
  if (!o.resourceVersion.empty() && e.resourceVersion == o.resourceVersion) return std::nullopt;
  e.resourceVersion = std::move(o.resourceVersion);
  if (!o.error && !e.error) {
    const bool same = o.value && e.good ? hash != 0 && hash == e.hash : !o.value && !e.good;
    if (same) return std::nullopt;  // a new version with nothing new in it
  }
  if (o.error) {
    e.error = errorOf(o.error);  // keep the last good version
    return Change{Change::Op::Updated, std::move(o.key), std::nullopt, true};
  }
  e.good = o.value.has_value();  // may be false: a finished Pod
  e.hash = hash;
  e.error.reset();
  keepNode(e, o.value);
  return Change{Change::Op::Updated, std::move(o.key), std::move(o.value)};
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
