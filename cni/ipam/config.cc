#include "cni/ipam/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cni/spec.h"
#include "common/file_util.h"
#include "common/unique_fd.h"

namespace sluice::cni::ipam {

using json = nlohmann::json;

bool Range::contains(const IpAddr& a) const {
  if (a.family() != start.family()) return false;
  U128 v = toU128(a);
  return v >= toU128(start) && v <= toU128(end);
}

bool RangeSet::contains(const IpAddr& a) const {
  for (const auto& r : ranges) {
    if (r.contains(a)) return true;
  }
  return false;
}

std::string RangeSet::describe() const {
  std::string s;
  for (const auto& r : ranges) {
    if (!s.empty()) s += ", ";
    s += r.start.toString() + "-" + r.end.toString();
  }
  return s;
}

namespace {

Error invalid(const std::string& field, const std::string& what) {
  return makeError(field + ": " + what, kErrInvalidConfig);
}

Result<std::optional<IpAddr>> optAddr(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::optional<IpAddr>();
  if (!it->is_string()) return invalid(path + "." + key, "must be a string");
  auto a = IpAddr::parse(it->get<std::string>());
  if (!a.ok()) return invalid(path + "." + key, a.error().message);
  return std::optional<IpAddr>(*a);
}

Result<Range> parseRange(const json& r, const std::string& path) {
  if (!r.is_object()) return invalid(path, "must be an object");
  auto sub = r.find("subnet");
  if (sub == r.end() || sub->is_null()) return invalid(path + ".subnet", "is required");
  if (!sub->is_string()) return invalid(path + ".subnet", "must be a string");
  // host-local accepts "10.1.2.3/24" and uses the network; so do we.
  auto p = Prefix::parse(sub->get<std::string>(), /*allowHostBits=*/true);
  if (!p.ok()) return invalid(path + ".subnet", p.error().message);
  Range range;
  range.subnet = *p;
  bool v4 = p->family() == Family::V4;
  if ((v4 && p->len() > 30) || (!v4 && p->len() > 126)) {
    return invalid(path + ".subnet", p->toString() + " is too small to allocate from");
  }
  U128 net = toU128(p->addr());
  U128 hostBits = (v4 ? 32 : 128) - p->len();
  U128 last = hostBits == 128 ? ~U128{0} : net + ((U128{1} << hostBits) - 1);
  // Never hand out the network address (IPv6: the subnet-router anycast address) or the IPv4
  // broadcast address.
  U128 lo = net + 1;
  U128 hi = v4 ? last - 1 : last;
  range.start = fromU128(p->family(), lo);
  range.end = fromU128(p->family(), hi);
  SLUICE_ASSIGN_OR_RETURN(auto start, optAddr(r, "rangeStart", path));
  SLUICE_ASSIGN_OR_RETURN(auto end, optAddr(r, "rangeEnd", path));
  SLUICE_ASSIGN_OR_RETURN(range.gateway, optAddr(r, "gateway", path));
  auto inside = [&](const IpAddr& a) {
    return a.family() == p->family() && toU128(a) >= lo && toU128(a) <= hi;
  };
  if (start) {
    if (!inside(*start)) {
      return invalid(path + ".rangeStart",
                     start->toString() + " is not a usable address of " + p->toString());
    }
    range.start = *start;
  }
  if (end) {
    if (!inside(*end)) {
      return invalid(path + ".rangeEnd",
                     end->toString() + " is not a usable address of " + p->toString());
    }
    range.end = *end;
  }
  if (toU128(range.start) > toU128(range.end)) {
    return invalid(path + ".rangeEnd",
                   range.end.toString() + " is before rangeStart " + range.start.toString());
  }
  if (range.gateway && !p->contains(*range.gateway)) {
    return invalid(path + ".gateway", range.gateway->toString() + " is outside " + p->toString());
  }
  return range;
}

Status validateSets(const std::vector<RangeSet>& sets) {
  for (size_t i = 0; i < sets.size(); ++i) {
    for (size_t j = 0; j < sets[i].ranges.size(); ++j) {
      const Range& a = sets[i].ranges[j];
      if (a.subnet.family() != sets[i].family()) {
        return invalid("ipam.ranges[" + std::to_string(i) + "][" + std::to_string(j) + "].subnet",
                       "mixes address families within one range set");
      }
      for (size_t k = 0; k < sets.size(); ++k) {
        for (size_t l = 0; l < sets[k].ranges.size(); ++l) {
          if (k < i || (k == i && l <= j)) continue;
          const Range& b = sets[k].ranges[l];
          if (a.start.family() == b.start.family() && toU128(a.start) <= toU128(b.end) &&
              toU128(b.start) <= toU128(a.end)) {
            return invalid(
                "ipam.ranges[" + std::to_string(k) + "][" + std::to_string(l) + "]",
                "overlaps ipam.ranges[" + std::to_string(i) + "][" + std::to_string(j) + "]");
          }
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> readWholeFile(const std::string& path) {
  // Regular files only (never blocks on a FIFO), at most 1 MiB: a podCIDR file is one line.
  return readFile(path, size_t{1} << 20);
}

Result<IpamConfig> parseIpamConfig(const json& ipam, const ReadFile& readFile) {
  IpamConfig cfg;
  if (!ipam.is_object()) return invalid("ipam", "must be an object");
  if (auto it = ipam.find("dataDir"); it != ipam.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().empty()) {
      return invalid("ipam.dataDir", "must be a non-empty string");
    }
    cfg.dataDir = it->get<std::string>();
  }
  bool usePodCidr = false;
  if (auto it = ipam.find("usePodCidr"); it != ipam.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid("ipam.usePodCidr", "must be a boolean");
    usePodCidr = it->get<bool>();
  }
  bool hasRanges = ipam.contains("ranges") && !ipam["ranges"].is_null();
  bool hasSubnet = ipam.contains("subnet") && !ipam["subnet"].is_null();
  if (usePodCidr) {
    if (hasRanges || hasSubnet) {
      return invalid("ipam.usePodCidr", "cannot be combined with ipam.ranges or ipam.subnet");
    }
    std::string file = "/var/lib/sluice/podcidrs.json";
    if (auto it = ipam.find("podCidrFile"); it != ipam.end() && !it->is_null()) {
      if (!it->is_string()) return invalid("ipam.podCidrFile", "must be a string");
      file = it->get<std::string>();
    }
    auto content = readFile(file);
    // Code 11: the daemon writes this file once it learned the node's podCIDRs; ADD may work
    // on a retry.
    if (!content.ok()) {
      return makeError("ipam.podCidrFile: cannot read " + file + ": " + content.error().message,
                       kErrTryAgainLater);
    }
    json j = json::parse(*content, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("podCIDRs") ||
        !j["podCIDRs"].is_array()) {
      return invalid("ipam.podCidrFile", file + " must hold {\"podCIDRs\": [\"CIDR\", ...]}");
    }
    const json& cidrs = j["podCIDRs"];
    if (cidrs.empty()) return invalid("ipam.podCidrFile", file + ": podCIDRs is empty");
    for (size_t i = 0; i < cidrs.size(); ++i) {
      std::string path = file + ": podCIDRs[" + std::to_string(i) + "]";
      if (!cidrs[i].is_string()) return invalid(path, "must be a string");
      auto r = parseRange(json{{"subnet", cidrs[i]}}, path);
      if (!r.ok()) return std::move(r).error();
      cfg.rangeSets.push_back(RangeSet{{*r}});
    }
  } else if (hasRanges) {
    const json& sets = ipam["ranges"];
    if (!sets.is_array() || sets.empty())
      return invalid("ipam.ranges", "must be a non-empty array of range sets");
    for (size_t i = 0; i < sets.size(); ++i) {
      std::string path = "ipam.ranges[" + std::to_string(i) + "]";
      if (!sets[i].is_array() || sets[i].empty())
        return invalid(path, "must be a non-empty array of ranges");
      RangeSet set;
      for (size_t j = 0; j < sets[i].size(); ++j) {
        SLUICE_ASSIGN_OR_RETURN(Range r,
                                parseRange(sets[i][j], path + "[" + std::to_string(j) + "]"));
        set.ranges.push_back(r);
      }
      cfg.rangeSets.push_back(std::move(set));
    }
  } else if (hasSubnet) {
    // host-local's legacy single-range form.
    SLUICE_ASSIGN_OR_RETURN(Range r, parseRange(ipam, "ipam"));
    cfg.rangeSets.push_back(RangeSet{{r}});
  } else {
    return invalid("ipam.ranges", "is required (or set ipam.usePodCidr)");
  }
  SLUICE_RETURN_IF_ERROR(validateSets(cfg.rangeSets));
  return cfg;
}

}  // namespace sluice::cni::ipam
