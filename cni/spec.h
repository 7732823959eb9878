// CNI spec 1.1.0 types: error codes, the runtime's environment, the network configuration
// (with Sluice's keys), and the Result a plugin prints. Decoding validates everything once and
// names the offending field; nothing below this layer sees unchecked JSON.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/endpoint_api.h"
#include "common/ip.h"
#include "common/result.h"

namespace sluice::cni {

using json = nlohmann::json;

// Error categories. Inside cni/ every error carries one of these in Error::code; main.cc maps
// them to CNI spec codes in one place (specCode). Lower layers (common/) put errno values in
// Error::code, and errno collides with spec codes (EPERM == 1 == "incompatible version"), so
// the categories live far above any errno: a code that is not a category is never printed as
// one, it becomes 100 (internal).
constexpr int kCategoryBase = 1 << 20;
constexpr int kErrIncompatibleVersion = kCategoryBase + 1;
constexpr int kErrUnsupportedField = kCategoryBase + 2;
constexpr int kErrUnknownContainer = kCategoryBase + 3;  // container/netns does not exist
constexpr int kErrInvalidEnv = kCategoryBase + 4;
constexpr int kErrIo = kCategoryBase + 5;
constexpr int kErrDecode = kCategoryBase + 6;
constexpr int kErrInvalidConfig = kCategoryBase + 7;
constexpr int kErrTryAgainLater = kCategoryBase + 11;
constexpr int kErrNotAvailable = kCategoryBase + 50;         // STATUS: cannot service ADD
constexpr int kErrNotAvailableLimited = kCategoryBase + 51;  // STATUS: existing pods affected too
// Sluice's own codes (100+, plugin-specific in the spec):
//   100 internal: netlink, filesystem, exec, the policy daemon refused; the message says which
//   101 no free address in a range set (built-in IPAM)
//   102 CHECK found a difference between the prevResult and the node
constexpr int kErrInternal = kCategoryBase + 100;
constexpr int kErrAddressesExhausted = kCategoryBase + 101;
constexpr int kErrCheckFailed = kCategoryBase + 102;

// The CNI spec code for an error: its category's code, or 100 for anything that carries no
// category (an errno, or 0). The only place a code for stdout is chosen.
int specCode(const Error& e);
// The category for a spec code another plugin (a delegated IPAM) reported. Codes the spec
// defines keep their meaning; a delegate's own 100+ codes (or nonsense) become internal.
int categoryOfSpecCode(int code);

inline const std::vector<std::string>& supportedVersions() {
  static const std::vector<std::string> v = {"0.4.0", "1.0.0", "1.1.0"};
  return v;
}
constexpr const char* kLatestVersion = "1.1.0";

// Gives an error from a lower layer (errno or no code) its category.
inline Error withCode(Error e, int code) {
  e.code = code;
  return e;
}

// CNI documents are shallow (a prevResult is 4 levels deep); a deeper one is an attack, and
// copying or printing it would recurse once per level (nlohmann copies and dumps
// recursively) until the stack runs out.
constexpr size_t kMaxJsonDepth = 64;
// Parses `text` as JSON no deeper than kMaxJsonDepth. Errors carry kErrDecode and name `what`.
Result<json> parseJson(std::string_view text, const std::string& what);

enum class Command { Add, Del, Check, Version, Status, Gc };

struct Env {
  Command command = Command::Version;
  std::string containerId;
  std::string netns;
  std::string ifname;
  std::string path;                         // CNI_PATH
  std::map<std::string, std::string> args;  // CNI_ARGS
  std::string podNamespace;
  std::string podName;
  std::string podUid;
};

// The spec's rules for CNI_CONTAINERID and CNI_IFNAME; the daemon checks the same on its
// socket (common/endpoint_api.h).
using endpoint_api::kMaxContainerIdBytes;
using endpoint_api::validateContainerId;
using endpoint_api::validateIfname;

// Reads CNI_* from `getenv`-like `lookup`; errors carry kErrInvalidEnv and name the variable.
Result<Env> parseEnv(const std::function<const char*(const char*)>& lookup);

struct Attachment {
  std::string containerId;
  std::string ifname;
  auto operator<=>(const Attachment&) const = default;
};

struct NetConf {
  std::string cniVersion;
  std::string name;
  std::string type;
  int mtu = 0;  // 0: kernel default (1500)
  std::string policySocket = "/run/sluice/policyd.sock";
  bool policyRequired = true;
  int policyTimeoutMs = 10000;
  std::string logFile;
  std::string logLevel = "info";
  std::string ipamType;
  json ipam;  // the raw "ipam" object; built-in IPAM decodes it (ipam/config.h)
  std::optional<json> prevResult;
  std::vector<IpAddr> runtimeIps;                           // runtimeConfig.ips
  std::optional<std::string> runtimeMac;                    // runtimeConfig.mac, validated
  std::optional<std::vector<Attachment>> validAttachments;  // GC: cni.dev/valid-attachments
  json raw;  // the whole input, passed unchanged to a delegated IPAM plugin
};

// Parses stdin. `command` decides what is required (prevResult for CHECK, valid-attachments
// for GC). Errors: kErrDecode for non-JSON, kErrIncompatibleVersion, kErrInvalidConfig naming
// the field.
Result<NetConf> parseNetConf(std::string_view stdinData, Command command);

// Highest version in `candidates` this plugin supports, for `cniVersions` negotiation.
std::optional<std::string> negotiateVersion(const std::vector<std::string>& candidates);
bool versionAtLeast(const std::string& v, const std::string& min);

struct Interface {
  std::string name;
  std::string mac;
  int mtu = 0;
  std::string sandbox;  // empty for host-side interfaces
};

struct IpConfig {
  IpAddr address;
  int prefixLen = 32;
  std::optional<IpAddr> gateway;
  std::optional<int> interface;
};

struct Route {
  Prefix dst;
  std::optional<IpAddr> gw;
};

struct CniResult {
  std::vector<Interface> interfaces;
  std::vector<IpConfig> ips;
  std::vector<Route> routes;
  json dns = json::object();
};

// Encodes for the config's cniVersion (0.4.0 adds "version" to each IP).
json encodeResult(const CniResult& r, const std::string& cniVersion);
// Decodes a prevResult or a delegated IPAM plugin's output; `field` names it in errors.
Result<CniResult> decodeResult(const json& j, const std::string& field);

json encodeError(const std::string& cniVersion, int code, const std::string& msg,
                 const std::string& details = "");

}  // namespace sluice::cni
