#include "cni/spec.h"

#include <algorithm>
#include <cctype>
#include <functional>

#include "common/netlink.h"

namespace sluice::cni {

namespace {

Error invalid(const std::string& field, const std::string& what) {
  return makeError(field + ": " + what, kErrInvalidConfig);
}

// Optional typed members: absent or null leaves `out` untouched; a wrong type is an error
// naming the field (never a json::type_error escaping to main).
Status optString(const json& obj, const char* key, const std::string& path, std::string& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return invalid(path + key, "must be a string");
  out = it->get<std::string>();
  return Status::Ok();
}

Status optInt(const json& obj, const char* key, const std::string& path, int& out, int min,
              int max) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Status::Ok();
  if (!it->is_number_integer()) return invalid(path + key, "must be an integer");
  auto v = it->get<int64_t>();
  if (v < min || v > max) {
    return invalid(path + key, "must be between " + std::to_string(min) + " and " +
                                   std::to_string(max) + ", got " + std::to_string(v));
  }
  out = static_cast<int>(v);
  return Status::Ok();
}

std::vector<int> versionParts(const std::string& v) {
  std::vector<int> parts;
  size_t pos = 0;
  while (pos <= v.size()) {
    size_t dot = v.find('.', pos);
    std::string p = v.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    int n = 0;
    for (char c : p) n = (c >= '0' && c <= '9') ? n * 10 + (c - '0') : n;
    parts.push_back(n);
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  parts.resize(3, 0);
  return parts;
}

bool isSupported(const std::string& v) {
  const auto& s = supportedVersions();
  return std::find(s.begin(), s.end(), v) != s.end();
}

Result<IpAddr> parseRuntimeIp(const std::string& s, const std::string& field) {
  // runtimeConfig.ips entries are written "10.1.2.3" or with a prefix "10.1.2.3/24".
  std::string addr = s.substr(0, s.find('/'));
  auto a = IpAddr::parse(addr);
  if (!a.ok()) return invalid(field, a.error().message);
  return *a;
}

}  // namespace

bool versionAtLeast(const std::string& v, const std::string& min) {
  return versionParts(v) >= versionParts(min);
}

std::optional<std::string> negotiateVersion(const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  for (const auto& c : candidates) {
    if (!isSupported(c)) continue;
    if (!best || versionParts(c) > versionParts(*best)) best = c;
  }
  return best;
}

int specCode(const Error& e) {
  if (e.code > kCategoryBase && e.code < kCategoryBase + 1000) return e.code - kCategoryBase;
  return kErrInternal - kCategoryBase;
}

int categoryOfSpecCode(int code) {
  switch (code) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 7:
    case 11:
    case 50:
    case 51:
      return kCategoryBase + code;
    default:
      return kErrInternal;
  }
}

namespace {

// Nesting of arrays and objects, outside strings; stops counting past `limit`.
size_t jsonDepth(std::string_view s, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool inString = false, escaped = false;
  for (char c : s) {
    if (inString) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        inString = false;
      }
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

Result<json> parseJson(std::string_view text, const std::string& what) {
  if (jsonDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return makeError(what + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels",
                     kErrDecode);
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return makeError(what + " is not valid JSON", kErrDecode);
  return j;
}

Result<Env> parseEnv(const std::function<const char*(const char*)>& lookup) {
  auto get = [&](const char* k) -> std::string {
    const char* v = lookup(k);
    return v ? std::string(v) : std::string();
  };
  Env env;
  std::string cmd = get("CNI_COMMAND");
  if (cmd == "ADD") {
    env.command = Command::Add;
  } else if (cmd == "DEL") {
    env.command = Command::Del;
  } else if (cmd == "CHECK") {
    env.command = Command::Check;
  } else if (cmd == "VERSION") {
    env.command = Command::Version;
  } else if (cmd == "STATUS") {
    env.command = Command::Status;
  } else if (cmd == "GC") {
    env.command = Command::Gc;
  } else if (cmd.empty()) {
    return makeError("CNI_COMMAND is not set", kErrInvalidEnv);
  } else {
    return makeError("CNI_COMMAND: unknown command \"" + cmd + "\"", kErrInvalidEnv);
  }
  env.containerId = get("CNI_CONTAINERID");
  env.netns = get("CNI_NETNS");
  env.ifname = get("CNI_IFNAME");
  env.path = get("CNI_PATH");
  bool perAttachment =
      env.command == Command::Add || env.command == Command::Del || env.command == Command::Check;
  if (perAttachment) {
    if (env.containerId.empty()) return makeError("CNI_CONTAINERID is not set", kErrInvalidEnv);
    if (auto st = validateContainerId(env.containerId); !st.ok()) {
      return withCode(st.error().wrap("CNI_CONTAINERID"), kErrInvalidEnv);
    }
    if (env.ifname.empty()) return makeError("CNI_IFNAME is not set", kErrInvalidEnv);
    if (auto st = validateIfname(env.ifname); !st.ok()) {
      return withCode(st.error().wrap("CNI_IFNAME"), kErrInvalidEnv);
    }
    // DEL may come after the runtime already removed the namespace; ADD and CHECK need it.
    if (env.netns.empty() && env.command != Command::Del) {
      return makeError("CNI_NETNS is not set", kErrInvalidEnv);
    }
  }
  if (env.command != Command::Version && env.path.empty()) {
    return makeError("CNI_PATH is not set", kErrInvalidEnv);
  }
  std::string args = get("CNI_ARGS");
  size_t pos = 0;
  while (pos < args.size()) {
    size_t semi = args.find(';', pos);
    std::string kv = args.substr(pos, semi == std::string::npos ? std::string::npos : semi - pos);
    pos = semi == std::string::npos ? args.size() : semi + 1;
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return makeError("CNI_ARGS: \"" + kv + "\" is not KEY=VALUE", kErrInvalidEnv);
    }
    env.args[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (auto it = env.args.find("K8S_POD_NAMESPACE"); it != env.args.end())
    env.podNamespace = it->second;
  if (auto it = env.args.find("K8S_POD_NAME"); it != env.args.end()) env.podName = it->second;
  if (auto it = env.args.find("K8S_POD_UID"); it != env.args.end()) env.podUid = it->second;
  return env;
}

Result<NetConf> parseNetConf(std::string_view stdinData, Command command) {
  SLUICE_ASSIGN_OR_RETURN(json j, parseJson(stdinData, "network configuration"));
  if (!j.is_object()) return makeError("network configuration must be a JSON object", kErrDecode);
  NetConf c;
  c.raw = j;
  SLUICE_RETURN_IF_ERROR(optString(j, "cniVersion", "", c.cniVersion));
  if (auto it = j.find("cniVersions"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return invalid("cniVersions", "must be an array of strings");
    std::vector<std::string> vs;
    for (size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_string()) {
        return invalid("cniVersions[" + std::to_string(i) + "]", "must be a string");
      }
      vs.push_back((*it)[i].get<std::string>());
    }
    // A runtime that negotiated passes cniVersion as well; without it we pick the newest
    // version both sides list.
    if (c.cniVersion.empty()) {
      auto v = negotiateVersion(vs);
      if (!v) {
        return makeError(
            "cniVersions: none of the listed versions is supported (supported: "
            "0.4.0, 1.0.0, 1.1.0)",
            kErrIncompatibleVersion);
      }
      c.cniVersion = *v;
    }
  }
  if (c.cniVersion.empty()) {
    if (command == Command::Version) {
      c.cniVersion = kLatestVersion;
    } else {
      return invalid("cniVersion", "is required");
    }
  }
  if (!isSupported(c.cniVersion)) {
    return makeError(
        "cniVersion: unsupported version \"" + c.cniVersion + "\" (supported: 0.4.0, 1.0.0, 1.1.0)",
        kErrIncompatibleVersion);
  }
  if (command == Command::Version) return c;

  SLUICE_RETURN_IF_ERROR(optString(j, "name", "", c.name));
  if (c.name.empty()) return invalid("name", "is required");
  // The name becomes a directory under ipam.dataDir and part of veth aliases.
  if (c.name.find_first_of("/\\\n\r\t ") != std::string::npos || c.name == "." || c.name == "..") {
    return invalid("name", "must not contain '/', '\\' or whitespace");
  }
  SLUICE_RETURN_IF_ERROR(optString(j, "type", "", c.type));
  SLUICE_RETURN_IF_ERROR(optInt(j, "mtu", "", c.mtu, 0, 65535));
  if (c.mtu != 0 && c.mtu < 68) return invalid("mtu", "must be at least 68");
  SLUICE_RETURN_IF_ERROR(optString(j, "policySocket", "", c.policySocket));
  if (c.policySocket.empty()) return invalid("policySocket", "must not be empty");
  std::string policy = "required";
  SLUICE_RETURN_IF_ERROR(optString(j, "policy", "", policy));
  if (policy != "required" && policy != "optional") {
    return invalid("policy", "must be \"required\" or \"optional\", got \"" + policy + "\"");
  }
  c.policyRequired = policy == "required";
  SLUICE_RETURN_IF_ERROR(optInt(j, "policyTimeoutMs", "", c.policyTimeoutMs, 1, 600000));
  SLUICE_RETURN_IF_ERROR(optString(j, "logFile", "", c.logFile));
  SLUICE_RETURN_IF_ERROR(optString(j, "logLevel", "", c.logLevel));
  static const std::vector<std::string> kLevels = {"trace",   "debug", "info",     "warn",
                                                   "warning", "error", "critical", "off"};
  if (std::find(kLevels.begin(), kLevels.end(), c.logLevel) == kLevels.end()) {
    return invalid("logLevel", "unknown level \"" + c.logLevel + "\"");
  }

  auto ipam = j.find("ipam");
  if (ipam == j.end() || ipam->is_null()) return invalid("ipam", "is required");
  if (!ipam->is_object()) return invalid("ipam", "must be an object");
  c.ipam = *ipam;
  SLUICE_RETURN_IF_ERROR(optString(*ipam, "type", "ipam.", c.ipamType));
  if (c.ipamType.empty()) return invalid("ipam.type", "is required");
  if (c.ipamType.find('/') != std::string::npos) {
    return invalid("ipam.type", "must be a plugin name, not a path");
  }

  if (auto it = j.find("prevResult"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return invalid("prevResult", "must be an object");
    c.prevResult = *it;
  }
  if (command == Command::Check && !c.prevResult) {
    return invalid("prevResult", "is required for CHECK");
  }

  if (auto rc = j.find("runtimeConfig"); rc != j.end() && !rc->is_null()) {
    if (!rc->is_object()) return invalid("runtimeConfig", "must be an object");
    if (auto ips = rc->find("ips"); ips != rc->end() && !ips->is_null()) {
      if (!ips->is_array()) return invalid("runtimeConfig.ips", "must be an array of strings");
      for (size_t i = 0; i < ips->size(); ++i) {
        std::string field = "runtimeConfig.ips[" + std::to_string(i) + "]";
        if (!(*ips)[i].is_string()) return invalid(field, "must be a string");
        SLUICE_ASSIGN_OR_RETURN(IpAddr a, parseRuntimeIp((*ips)[i].get<std::string>(), field));
        c.runtimeIps.push_back(a);
      }
    }
    if (auto mac = rc->find("mac"); mac != rc->end() && !mac->is_null()) {
      if (!mac->is_string()) return invalid("runtimeConfig.mac", "must be a string");
      auto m = netlink::parseMac(mac->get<std::string>());
      if (!m.ok()) return invalid("runtimeConfig.mac", m.error().message);
      if ((*m)[0] & 1) return invalid("runtimeConfig.mac", "must be a unicast address");
      c.runtimeMac = mac->get<std::string>();
    }
  }

  if (auto va = j.find("cni.dev/valid-attachments"); va != j.end() && !va->is_null()) {
    if (!va->is_array()) return invalid("cni.dev/valid-attachments", "must be an array");
    std::vector<Attachment> atts;
    for (size_t i = 0; i < va->size(); ++i) {
      std::string field = "cni.dev/valid-attachments[" + std::to_string(i) + "]";
      const json& e = (*va)[i];
      if (!e.is_object()) return invalid(field, "must be an object");
      Attachment a;
      SLUICE_RETURN_IF_ERROR(optString(e, "containerID", field + ".", a.containerId));
      SLUICE_RETURN_IF_ERROR(optString(e, "ifname", field + ".", a.ifname));
      if (a.containerId.empty()) return invalid(field + ".containerID", "is required");
      if (a.ifname.empty()) return invalid(field + ".ifname", "is required");
      // Every attachment we hold passed the same checks at ADD, so an entry that fails them is
      // a broken runtime, and GC must not guess what it meant.
      if (auto st = validateContainerId(a.containerId); !st.ok()) {
        return invalid(field + ".containerID", st.error().message);
      }
      if (auto st = validateIfname(a.ifname); !st.ok()) {
        return invalid(field + ".ifname", st.error().message);
      }
      atts.push_back(std::move(a));
    }
    c.validAttachments = std::move(atts);
  }
  if (command == Command::Gc && !c.validAttachments) {
    // Without the list every reservation would look stale; refusing is the safe reading.
    return invalid("cni.dev/valid-attachments", "is required for GC");
  }
  return c;
}

json encodeResult(const CniResult& r, const std::string& cniVersion) {
  bool v04 = !versionAtLeast(cniVersion, "1.0.0");
  bool v11 = versionAtLeast(cniVersion, "1.1.0");
  json out = {{"cniVersion", cniVersion}};
  json ifs = json::array();
  for (const auto& i : r.interfaces) {
    json e = {{"name", i.name}};
    if (!i.mac.empty()) e["mac"] = i.mac;
    if (v11 && i.mtu > 0) e["mtu"] = i.mtu;
    if (!i.sandbox.empty()) e["sandbox"] = i.sandbox;
    ifs.push_back(e);
  }
  out["interfaces"] = ifs;
  json ips = json::array();
  for (const auto& ip : r.ips) {
    json e = {{"address", ip.address.toString() + "/" + std::to_string(ip.prefixLen)}};
    if (v04) e["version"] = ip.address.isV4() ? "4" : "6";
    if (ip.gateway) e["gateway"] = ip.gateway->toString();
    if (ip.interface) e["interface"] = *ip.interface;
    ips.push_back(e);
  }
  out["ips"] = ips;
  json routes = json::array();
  for (const auto& rt : r.routes) {
    json e = {{"dst", rt.dst.toString()}};
    if (rt.gw) e["gw"] = rt.gw->toString();
    routes.push_back(e);
  }
  out["routes"] = routes;
  out["dns"] = r.dns.is_object() ? r.dns : json::object();
  return out;
}

Result<CniResult> decodeResult(const json& j, const std::string& field) {
  auto bad = [&](const std::string& sub, const std::string& what) {
    return makeError(field + sub + ": " + what, kErrDecode);
  };
  if (!j.is_object()) return bad("", "must be an object");
  CniResult r;
  if (auto it = j.find("interfaces"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return bad(".interfaces", "must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      std::string f = ".interfaces[" + std::to_string(i) + "]";
      if (!e.is_object()) return bad(f, "must be an object");
      Interface itf;
      for (auto [key, dst] : {std::pair{"name", &itf.name}, std::pair{"mac", &itf.mac},
                              std::pair{"sandbox", &itf.sandbox}}) {
        auto v = e.find(key);
        if (v == e.end() || v->is_null()) continue;
        if (!v->is_string()) return bad(f + "." + key, "must be a string");
        *dst = v->get<std::string>();
      }
      if (auto m = e.find("mtu"); m != e.end() && m->is_number_integer()) itf.mtu = m->get<int>();
      r.interfaces.push_back(itf);
    }
  }
  if (auto it = j.find("ips"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return bad(".ips", "must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      std::string f = ".ips[" + std::to_string(i) + "]";
      if (!e.is_object()) return bad(f, "must be an object");
      auto addr = e.find("address");
      if (addr == e.end() || !addr->is_string()) return bad(f + ".address", "must be a string");
      std::string text = addr->get<std::string>();
      auto p = Prefix::parse(text, /*allowHostBits=*/true);
      if (!p.ok()) return bad(f + ".address", p.error().message);
      IpConfig ip;
      ip.address = IpAddr::parse(text.substr(0, text.find('/'))).value();
      ip.prefixLen = p->len();
      if (auto gw = e.find("gateway"); gw != e.end() && !gw->is_null()) {
        if (!gw->is_string()) return bad(f + ".gateway", "must be a string");
        auto g = IpAddr::parse(gw->get<std::string>());
        if (!g.ok()) return bad(f + ".gateway", g.error().message);
        ip.gateway = *g;
      }
      if (auto idx = e.find("interface"); idx != e.end() && !idx->is_null()) {
        if (!idx->is_number_integer()) return bad(f + ".interface", "must be an integer");
        ip.interface = idx->get<int>();
      }
      r.ips.push_back(ip);
    }
  }
  if (auto it = j.find("routes"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return bad(".routes", "must be an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      std::string f = ".routes[" + std::to_string(i) + "]";
      if (!e.is_object()) return bad(f, "must be an object");
      auto dst = e.find("dst");
      if (dst == e.end() || !dst->is_string()) return bad(f + ".dst", "must be a string");
      auto p = Prefix::parse(dst->get<std::string>(), true);
      if (!p.ok()) return bad(f + ".dst", p.error().message);
      Route rt{*p, std::nullopt};
      if (auto gw = e.find("gw"); gw != e.end() && !gw->is_null()) {
        if (!gw->is_string()) return bad(f + ".gw", "must be a string");
        auto g = IpAddr::parse(gw->get<std::string>());
        if (!g.ok()) return bad(f + ".gw", g.error().message);
        rt.gw = *g;
      }
      r.routes.push_back(rt);
    }
  }
  if (auto it = j.find("dns"); it != j.end() && it->is_object()) r.dns = *it;
  return r;
}

json encodeError(const std::string& cniVersion, int code, const std::string& msg,
                 const std::string& details) {
  json e = {{"cniVersion", cniVersion.empty() ? kLatestVersion : cniVersion},
            {"code", code},
            {"msg", msg}};
  if (!details.empty()) e["details"] = details;
  return e;
}

}  // namespace sluice::cni
