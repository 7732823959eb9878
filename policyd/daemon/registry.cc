#include "policyd/daemon/registry.h"

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>

#include "policyd/daemon/state_files.h"

namespace sluice::daemon {

namespace {

using nlohmann::json;

constexpr int kFormatVersion = 1;

Result<std::string> getString(const json& obj, const char* key, bool required) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) return makeError(std::string(key) + ": missing");
    return std::string();
  }
  if (!it->is_string()) return makeError(std::string(key) + ": not a string");
  return it->get<std::string>();
}

}  // namespace

const EndpointRecord* Registry::find(const std::string& containerId,
                                     const std::string& ifname) const {
  // A recovered endpoint may have no container id; an empty id never names one.
  if (containerId.empty()) return nullptr;
  for (const auto& [id, rec] : byId_) {
    if (rec.containerId == containerId && rec.ifname == ifname) return &rec;
  }
  return nullptr;
}

const EndpointRecord* Registry::findRecoveredByHostVeth(const std::string& hostVeth) const {
  if (hostVeth.empty()) return nullptr;
  for (const auto& [id, rec] : byId_) {
    if (rec.containerId.empty() && rec.hostVeth == hostVeth) return &rec;
  }
  return nullptr;
}

void Registry::raiseNextId(compiler::EndpointId atLeast) {
  if (atLeast > nextId_) nextId_ = atLeast;
}

const EndpointRecord* Registry::findById(compiler::EndpointId id) const {
  auto it = byId_.find(id);
  return it == byId_.end() ? nullptr : &it->second;
}

void Registry::upsert(EndpointRecord record) {
  if (record.id >= nextId_) nextId_ = record.id + 1;
  byId_[record.id] = std::move(record);
}

bool Registry::remove(compiler::EndpointId id) { return byId_.erase(id) > 0; }

std::string Registry::encode() const {
  json eps = json::array();
  for (const auto& [id, r] : byId_) {
    json ips = json::array();
    for (const auto& ip : r.ips) ips.push_back(ip.toString());
    eps.push_back({{"id", r.id},
                   {"containerId", r.containerId},
                   {"ifname", r.ifname},
                   {"netns", r.netns},
                   {"hostVeth", r.hostVeth},
                   {"hostIfindex", r.hostIfindex},
                   {"ips", ips},
                   {"podNamespace", r.podNamespace},
                   {"podName", r.podName}});
  }
  json doc = {{"version", kFormatVersion}, {"nextId", nextId_}, {"endpoints", eps}};
  return doc.dump(1) + "\n";
}

Status Registry::decode(std::string_view text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return makeError("not valid JSON");
  if (!doc.is_object()) return makeError("not a JSON object");
  auto version = doc.find("version");
  if (version == doc.end() || !version->is_number_integer() || *version != kFormatVersion) {
    return makeError("version: want " + std::to_string(kFormatVersion));
  }
  auto next = doc.find("nextId");
  if (next == doc.end() || !next->is_number_unsigned() || *next == 0 ||
      next->get<uint64_t>() > std::numeric_limits<compiler::EndpointId>::max()) {
    return makeError("nextId: want a positive 32-bit integer");
  }
  auto eps = doc.find("endpoints");
  if (eps == doc.end() || !eps->is_array()) return makeError("endpoints: want an array");

  std::map<compiler::EndpointId, EndpointRecord> byId;
  compiler::EndpointId nextId = next->get<compiler::EndpointId>();
  for (size_t i = 0; i < eps->size(); ++i) {
    const json& e = (*eps)[i];
    const std::string where = "endpoints[" + std::to_string(i) + "]";
    if (!e.is_object()) return makeError(where + ": not an object");
    EndpointRecord r;
    auto id = e.find("id");
    if (id == e.end() || !id->is_number_unsigned() || *id == 0 ||
        id->get<uint64_t>() > std::numeric_limits<compiler::EndpointId>::max()) {
      return makeError(where + ".id: want a positive 32-bit integer");
    }
    r.id = id->get<compiler::EndpointId>();
    auto str = [&](const char* key, bool required, std::string& out) -> Status {
      auto v = getString(e, key, required);
      if (!v.ok()) return v.error().wrap(where);
      out = std::move(*v);
      return Status::Ok();
    };
    SLUICE_RETURN_IF_ERROR(str("containerId", true, r.containerId));
    SLUICE_RETURN_IF_ERROR(str("ifname", true, r.ifname));
    SLUICE_RETURN_IF_ERROR(str("netns", false, r.netns));
    SLUICE_RETURN_IF_ERROR(str("hostVeth", true, r.hostVeth));
    SLUICE_RETURN_IF_ERROR(str("podNamespace", false, r.podNamespace));
    SLUICE_RETURN_IF_ERROR(str("podName", false, r.podName));
    if (auto idx = e.find("hostIfindex"); idx != e.end()) {
      if (!idx->is_number_integer()) return makeError(where + ".hostIfindex: not an integer");
      r.hostIfindex = idx->get<int>();
    }
    auto ips = e.find("ips");
    if (ips == e.end() || !ips->is_array()) return makeError(where + ".ips: want an array");
    for (size_t j = 0; j < ips->size(); ++j) {
      const json& ip = (*ips)[j];
      const std::string at = where + ".ips[" + std::to_string(j) + "]";
      if (!ip.is_string()) return makeError(at + ": not a string");
      auto addr = IpAddr::parse(ip.get<std::string>());
      if (!addr.ok()) return addr.error().wrap(at);
      r.ips.push_back(*addr);
    }
    if (byId.contains(r.id)) return makeError(where + ".id: duplicate " + std::to_string(r.id));
    if (r.id >= nextId) nextId = r.id + 1;
    byId.emplace(r.id, std::move(r));
  }
  byId_ = std::move(byId);
  nextId_ = nextId;
  return Status::Ok();
}

Result<Registry::LoadReport> Registry::load() {
  LoadReport report;
  byId_.clear();
  nextId_ = 1;
  auto text = readFile(path_);
  if (!text.ok()) {
    if (text.error().code == ENOENT) return report;
    // Unreadable (a directory, EACCES, EIO): the caller rebuilds it like a corrupt one. Moved
    // aside, so the rebuilt registry can be written in its place.
    report.problem = text.error().wrap("endpoint registry " + path_);
    const std::string aside = path_ + ".unreadable-" + std::to_string(::time(nullptr));
    if (::rename(path_.c_str(), aside.c_str()) == 0) report.keptCopy = aside;
    return report;
  }
  if (auto st = decode(*text); !st.ok()) {
    byId_.clear();
    nextId_ = 1;
    report.problem = st.error().wrap("endpoint registry " + path_);
    report.keptCopy = path_ + ".corrupt-" + std::to_string(::time(nullptr));
    if (auto w = writeFileAtomic(report.keptCopy, *text); !w.ok()) {
      return w.error().wrap("endpoint registry: keep a copy of the corrupt file");
    }
  }
  return report;
}

Status Registry::save() const {
  if (auto st = writeFileAtomic(path_, encode()); !st.ok()) {
    return st.error().wrap("endpoint registry");
  }
  return Status::Ok();
}

}  // namespace sluice::daemon
