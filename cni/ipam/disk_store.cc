#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "cni/ipam/store.h"
#include "cni/sha256.h"

namespace sluice::cni::ipam {

namespace {

using json = nlohmann::json;

std::string ownerContent(const Attachment& a) { return a.containerId + "\r\n" + a.ifname; }

std::optional<Attachment> parseOwner(const std::string& content) {
  auto trim = [](std::string s) {
    while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  };
  size_t nl = content.find('\n');
  Attachment a;
  a.containerId = trim(content.substr(0, nl));
  if (nl != std::string::npos) a.ifname = trim(content.substr(nl + 1));
  // An empty file is what a crash between create and write leaves behind.
  if (a.containerId.empty()) return std::nullopt;
  return a;
}

class DiskStore : public Store {
 public:
  DiskStore(Fs& fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}

  Result<std::unique_ptr<FsLock>> lock() override {
    SLUICE_ASSIGN_OR_RETURN(bool ready, fs_.exists(dir_ + "/attachments"));
    if (!ready) SLUICE_RETURN_IF_ERROR(fs_.mkdirs(dir_ + "/attachments"));
    return fs_.lock(dir_ + "/lock");
  }

  Result<std::vector<IpAddr>> addressesOf(const Attachment& a) override {
    SLUICE_ASSIGN_OR_RETURN(auto rec, readRecord(recordPath(a)));
    if (!rec || rec->first != a) return std::vector<IpAddr>();
    // Only addresses whose file still names this attachment count: a crash after the record
    // was written but before an address file was created must not hand out that address.
    std::vector<IpAddr> out;
    for (const auto& ip : rec->second) {
      SLUICE_ASSIGN_OR_RETURN(auto owner, ownerOf(ip));
      if (owner && *owner == a) out.push_back(ip);
    }
    return out;
  }

  Result<bool> isReserved(const IpAddr& ip) override { return fs_.exists(ipPath(ip)); }

  Result<std::optional<Attachment>> ownerOf(const IpAddr& ip) override {
    SLUICE_ASSIGN_OR_RETURN(auto content, fs_.read(ipPath(ip)));
    if (!content) return std::optional<Attachment>();
    return parseOwner(*content);
  }

  Status reserve(const Attachment& a, const std::vector<IpAddr>& ips) override {
    json rec = {{"containerID", a.containerId}, {"ifname", a.ifname}, {"ips", json::array()}};
    for (const auto& ip : ips) rec["ips"].push_back(ip.toString());
    SLUICE_RETURN_IF_ERROR(fs_.replace(recordPath(a), rec.dump()));
    std::vector<IpAddr> created;
    for (const auto& ip : ips) {
      auto st = fs_.createExclusive(ipPath(ip), ownerContent(a));
      if (st.ok()) {
        created.push_back(ip);
        continue;
      }
      if (st.error().code == EEXIST) {
        SLUICE_ASSIGN_OR_RETURN(auto owner, ownerOf(ip));
        if (owner && *owner == a) continue;
      }
      for (const auto& c : created) (void)fs_.remove(ipPath(c));
      (void)fs_.remove(recordPath(a));
      return st.error().wrap("reserve " + ip.toString());
    }
    return Status::Ok();
  }

  Status release(const Attachment& a) override {
    SLUICE_ASSIGN_OR_RETURN(auto rec, readRecord(recordPath(a)));
    if (!rec) return Status::Ok();
    for (const auto& ip : rec->second) {
      SLUICE_ASSIGN_OR_RETURN(auto owner, ownerOf(ip));
      // Never free an address someone else holds (e.g. after a crash and a reuse).
      if (owner && *owner == a) SLUICE_RETURN_IF_ERROR(fs_.remove(ipPath(ip)));
    }
    return fs_.remove(recordPath(a));
  }

  Result<std::optional<IpAddr>> lastReserved(size_t rangeSet) override {
    SLUICE_ASSIGN_OR_RETURN(auto content, fs_.read(cursorPath(rangeSet)));
    if (!content) return std::optional<IpAddr>();
    std::string s = *content;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    auto ip = IpAddr::parse(s);
    if (!ip.ok()) return std::optional<IpAddr>();  // a torn cursor only costs fairness
    return std::optional<IpAddr>(*ip);
  }

  Status setLastReserved(size_t rangeSet, const IpAddr& ip) override {
    return fs_.replace(cursorPath(rangeSet), ip.toString());
  }

  Result<std::vector<Attachment>> attachments() override {
    std::vector<Attachment> out;
    SLUICE_ASSIGN_OR_RETURN(auto recs, fs_.list(dir_ + "/attachments"));
    for (const auto& name : recs) {
      SLUICE_ASSIGN_OR_RETURN(auto rec, readRecord(dir_ + "/attachments/" + name));
      if (rec) out.push_back(rec->first);
    }
    SLUICE_ASSIGN_OR_RETURN(auto names, fs_.list(dir_));
    for (const auto& name : names) {
      auto ip = IpAddr::parse(name);
      if (!ip.ok()) continue;
      SLUICE_ASSIGN_OR_RETURN(auto owner, ownerOf(*ip));
      if (owner) out.push_back(*owner);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  Status releaseAllExcept(const std::vector<Attachment>& keep) override {
    auto kept = [&](const Attachment& a) {
      return std::find(keep.begin(), keep.end(), a) != keep.end();
    };
    SLUICE_ASSIGN_OR_RETURN(auto names, fs_.list(dir_));
    for (const auto& name : names) {
      auto ip = IpAddr::parse(name);
      if (!ip.ok()) continue;
      SLUICE_ASSIGN_OR_RETURN(auto owner, ownerOf(*ip));
      if (!owner || !kept(*owner)) SLUICE_RETURN_IF_ERROR(fs_.remove(dir_ + "/" + name));
    }
    SLUICE_ASSIGN_OR_RETURN(auto recs, fs_.list(dir_ + "/attachments"));
    for (const auto& name : recs) {
      std::string path = dir_ + "/attachments/" + name;
      SLUICE_ASSIGN_OR_RETURN(auto rec, readRecord(path));
      if (!rec || !kept(rec->first)) SLUICE_RETURN_IF_ERROR(fs_.remove(path));
    }
    return Status::Ok();
  }

 private:
  std::string ipPath(const IpAddr& ip) const { return dir_ + "/" + ip.toString(); }
  std::string cursorPath(size_t n) const { return dir_ + "/last_reserved_ip." + std::to_string(n); }
  std::string recordPath(const Attachment& a) const {
    return dir_ + "/attachments/" + sha256Hex(a.containerId + "/" + a.ifname);
  }

  Result<std::optional<std::pair<Attachment, std::vector<IpAddr>>>> readRecord(const std::string& path) {
    using Rec = std::optional<std::pair<Attachment, std::vector<IpAddr>>>;
    SLUICE_ASSIGN_OR_RETURN(auto content, fs_.read(path));
    if (!content) return Rec();
    json j = json::parse(*content, nullptr, false);
    // A torn or foreign record is treated as absent; GC removes it.
    if (j.is_discarded() || !j.is_object()) return Rec();
    auto str = [&](const char* k) {
      auto it = j.find(k);
      return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    Attachment a{str("containerID"), str("ifname")};
    std::vector<IpAddr> ips;
    if (auto it = j.find("ips"); it != j.end() && it->is_array()) {
      for (const auto& e : *it) {
        if (!e.is_string()) continue;
        auto ip = IpAddr::parse(e.get<std::string>());
        if (ip.ok()) ips.push_back(*ip);
      }
    }
    if (a.containerId.empty()) return Rec();
    return Rec(std::pair{a, ips});
  }

  Fs& fs_;
  std::string dir_;
};

}  // namespace

std::unique_ptr<Store> makeDiskStore(Fs& fs, const std::string& dataDir, const std::string& network) {
  return std::make_unique<DiskStore>(fs, dataDir + "/" + network);
}

}  // namespace sluice::cni::ipam
