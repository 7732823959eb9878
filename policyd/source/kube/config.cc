#include "policyd/source/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "common/file_util.h"

extern char** environ;

namespace sluice::source::kube {

namespace {

std::string trimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// kubeconfig *-data fields are base64 of the PEM text.
Result<std::string> base64Decode(const std::string& in) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    auto pos = kAlphabet.find(c);
    if (pos == std::string::npos) return makeError("not valid base64");
    acc = (acc << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// Finds `name` in a kubeconfig list (`clusters`, `users`, `contexts`) and returns its inner map.
Result<YAML::Node> findNamed(const YAML::Node& root, const char* list, const char* inner,
                             const std::string& name) {
  YAML::Node seq = root[list];
  if (!seq || !seq.IsSequence()) return makeError(std::string(list) + ": missing or not a list");
  for (size_t i = 0; i < seq.size(); ++i) {
    const YAML::Node& item = seq[i];
    if (!item.IsMap() || !item["name"] || !item["name"].IsScalar()) continue;
    if (item["name"].Scalar() != name) continue;
    YAML::Node body = item[inner];
    if (!body || !body.IsMap())
      return makeError(std::string(list) + "[" + std::to_string(i) + "] (" + name + ")." + inner +
                       ": missing or not a map");
    return body;
  }
  return makeError(std::string(list) + ": no entry named \"" + name + "\"");
}

// A scalar field of a map, or "" when absent; an error when present but not a scalar.
Result<std::string> scalar(const YAML::Node& map, const char* key, const std::string& where) {
  YAML::Node n = map[key];
  if (!n || n.IsNull()) return std::string();
  if (!n.IsScalar()) return makeError(where + "." + key + ": expected a string");
  return n.Scalar();
}

}  // namespace

std::map<std::string, std::string> processEnv() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

Result<ClusterConfig> inClusterConfig(const std::map<std::string, std::string>& env,
                                      const std::string& saDir) {
  auto host = env.find("KUBERNETES_SERVICE_HOST");
  auto port = env.find("KUBERNETES_SERVICE_PORT");
  if (host == env.end() || host->second.empty() || port == env.end() || port->second.empty()) {
    return makeError(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
        "(not running in a pod? pass --kubeconfig)");
  }
  ClusterConfig c;
  std::string h = host->second;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6 service address
  c.server = "https://" + h + ":" + port->second;
  c.tokenFile = saDir + "/token";
  c.caFile = saDir + "/ca.crt";
  c.origin = "in-cluster";
  // Fail now on a missing token or CA rather than on every request later.
  if (auto t = readFile(c.tokenFile); !t.ok()) return t.error().wrap("in-cluster config");
  if (auto t = readFile(c.caFile); !t.ok()) return t.error().wrap("in-cluster config");
  return c;
}

namespace {

// One file of a (possibly merged) kubeconfig.
struct KubeconfigFile {
  std::string path;
  YAML::Node root;
};

// A named entry and the file it came from (relative paths are relative to that file).
struct Found {
  YAML::Node body;
  const KubeconfigFile* file = nullptr;
};

// kubectl's merge: the first file that defines a name wins.
Result<Found> findNamedIn(const std::vector<KubeconfigFile>& files, const char* list,
                          const char* inner, const std::string& name) {
  std::optional<Error> first;
  for (const auto& f : files) {
    YAML::Node seq = f.root[list];
    if (!seq && files.size() > 1) continue;  // a merged file may hold only some of the lists
    auto r = findNamed(f.root, list, inner, name);
    if (r.ok()) return Found{*r, &f};
    const bool notHere = r.error().message.find(": no entry named") != std::string::npos;
    if (!notHere) return makeError("kubeconfig " + f.path + ": " + r.error().message);
    if (!first) first = r.error();
  }
  std::string where = files.size() == 1 ? "kubeconfig " + files[0].path : "kubeconfig (merged)";
  return makeError(where + ": " +
                   (first ? first->message : std::string(list) + ": missing or not a list"));
}

Result<ClusterConfig> loadMerged(const std::vector<std::string>& paths, const std::string& context);

}  // namespace

Result<ClusterConfig> loadKubeconfig(const std::string& path, const std::string& context) {
  return loadMerged({path}, context);
}

namespace {

Result<ClusterConfig> loadMerged(const std::vector<std::string>& paths,
                                 const std::string& context) {
  std::vector<KubeconfigFile> files;
  for (const auto& path : paths) {
    auto text = readFile(path);
    if (!text.ok()) return makeError("kubeconfig: " + text.error().message);
    YAML::Node root;
    try {
      root = YAML::Load(*text);
    } catch (const YAML::Exception& e) {
      return makeError("kubeconfig " + path + ": line " + std::to_string(e.mark.line + 1) +
                       ": invalid YAML: " + e.msg);
    }
    if (root.IsNull() && paths.size() > 1) continue;  // an empty file adds nothing
    if (!root.IsMap()) return makeError("kubeconfig " + path + ": expected a map at the top level");
    files.push_back({path, root});
  }
  if (files.empty()) return makeError("kubeconfig: no usable file in $KUBECONFIG");
  // Errors name the file an entry came from; `fail` is for the file of the current entry.
  std::string path = files[0].path;
  auto fail = [&](const std::string& what) {
    return makeError("kubeconfig " + path + ": " + what);
  };

  std::string ctxName = context;
  if (ctxName.empty()) {
    // The first file that sets current-context wins.
    for (const auto& f : files) {
      path = f.path;
      auto cur = scalar(f.root, "current-context", "");
      if (!cur.ok()) return fail("current-context: expected a string");
      ctxName = *cur;
      if (!ctxName.empty()) break;
    }
    if (ctxName.empty()) {
      path = files.size() == 1 ? files[0].path : "(merged)";
      return fail("current-context: not set and no --context given");
    }
  }
  auto ctxFound = findNamedIn(files, "contexts", "context", ctxName);
  if (!ctxFound.ok()) return ctxFound.error();
  path = ctxFound->file->path;
  const YAML::Node* ctx = &ctxFound->body;
  std::string ctxWhere = "contexts(" + ctxName + ").context";
  auto clusterName = scalar(*ctx, "cluster", ctxWhere);
  if (!clusterName.ok()) return fail(clusterName.error().message);
  if (clusterName->empty()) return fail(ctxWhere + ".cluster: required");
  auto userName = scalar(*ctx, "user", ctxWhere);
  if (!userName.ok()) return fail(userName.error().message);

  ClusterConfig c;
  c.origin =
      "kubeconfig " + (files.size() == 1 ? path : "(merged $KUBECONFIG)") + " context " + ctxName;
  auto clusterFound = findNamedIn(files, "clusters", "cluster", *clusterName);
  if (!clusterFound.ok()) return clusterFound.error();
  path = clusterFound->file->path;
  const YAML::Node* cluster = &clusterFound->body;
  std::string dirOf = path;
  auto resolvePath = [&](const std::string& p) {
    if (p.empty() || std::filesystem::path(p).is_absolute()) return p;
    return (std::filesystem::path(dirOf).parent_path() / p).string();
  };
  std::string cw = "clusters(" + *clusterName + ").cluster";
  auto get = [&](const YAML::Node& m, const char* key, const std::string& where,
                 std::string& out) -> Status {
    auto v = scalar(m, key, where);
    if (!v.ok()) return fail(v.error().message);
    out = *v;
    return Status::Ok();
  };
  auto getData = [&](const YAML::Node& m, const char* key, const std::string& where,
                     std::string& out) -> Status {
    std::string raw;
    SLUICE_RETURN_IF_ERROR(get(m, key, where, raw));
    if (raw.empty()) return Status::Ok();
    auto d = base64Decode(raw);
    if (!d.ok()) return fail(where + "." + key + ": " + d.error().message);
    out = std::move(*d);
    return Status::Ok();
  };
  SLUICE_RETURN_IF_ERROR(get(*cluster, "server", cw, c.server));
  if (c.server.empty()) return fail(cw + ".server: required");
  if (!c.server.starts_with("https://") && !c.server.starts_with("http://"))
    return fail(cw + ".server: want an http(s):// URL, got \"" + c.server + "\"");
  c.server = trimSlash(c.server);
  SLUICE_RETURN_IF_ERROR(get(*cluster, "certificate-authority", cw, c.caFile));
  SLUICE_RETURN_IF_ERROR(getData(*cluster, "certificate-authority-data", cw, c.caData));
  std::string insecure;
  SLUICE_RETURN_IF_ERROR(get(*cluster, "insecure-skip-tls-verify", cw, insecure));
  if (!insecure.empty() && insecure != "true" && insecure != "false")
    return fail(cw + ".insecure-skip-tls-verify: want true or false, got \"" + insecure + "\"");
  c.insecureSkipTlsVerify = insecure == "true";
  c.caFile = resolvePath(c.caFile);

  if (!userName->empty()) {
    auto userFound = findNamedIn(files, "users", "user", *userName);
    if (!userFound.ok()) return userFound.error();
    path = userFound->file->path;
    dirOf = path;
    const YAML::Node* user = &userFound->body;
    std::string uw = "users(" + *userName + ").user";
    SLUICE_RETURN_IF_ERROR(get(*user, "token", uw, c.token));
    SLUICE_RETURN_IF_ERROR(get(*user, "tokenFile", uw, c.tokenFile));
    SLUICE_RETURN_IF_ERROR(get(*user, "client-certificate", uw, c.clientCertFile));
    SLUICE_RETURN_IF_ERROR(getData(*user, "client-certificate-data", uw, c.clientCertData));
    SLUICE_RETURN_IF_ERROR(get(*user, "client-key", uw, c.clientKeyFile));
    SLUICE_RETURN_IF_ERROR(getData(*user, "client-key-data", uw, c.clientKeyData));
    if ((*user)["exec"] || (*user)["auth-provider"])
      return fail(uw +
                  ": exec and auth-provider credentials are not supported; use a token or "
                  "client certificate");
    c.tokenFile = resolvePath(c.tokenFile);
    c.clientCertFile = resolvePath(c.clientCertFile);
    c.clientKeyFile = resolvePath(c.clientKeyFile);
    bool cert = !c.clientCertFile.empty() || !c.clientCertData.empty();
    bool key = !c.clientKeyFile.empty() || !c.clientKeyData.empty();
    if (cert != key) return fail(uw + ": client-certificate and client-key must be given together");
  }
  // Files named in the kubeconfig must be readable now: a typo is reported at start, not as a
  // TLS failure on every retry.
  for (const std::string* f : {&c.caFile, &c.tokenFile, &c.clientCertFile, &c.clientKeyFile}) {
    if (f->empty()) continue;
    if (auto r = readFile(*f); !r.ok()) return fail(r.error().message);
  }
  return c;
}

}  // namespace

Result<ClusterConfig> resolveConfig(const std::string& kubeconfig, const std::string& context,
                                    const std::map<std::string, std::string>& env) {
  if (!kubeconfig.empty()) return loadKubeconfig(kubeconfig, context);
  if (auto it = env.find("KUBECONFIG"); it != env.end() && !it->second.empty()) {
    // Several files, ':'-separated, merged as kubectl does: the first file to set a key wins;
    // files that do not exist are skipped.
    std::vector<std::string> paths;
    std::string_view rest = it->second;
    while (!rest.empty()) {
      auto colon = rest.find(':');
      std::string one(rest.substr(0, colon));
      rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
      if (one.empty() || std::find(paths.begin(), paths.end(), one) != paths.end()) continue;
      std::error_code ec;
      if (!std::filesystem::exists(one, ec)) continue;
      paths.push_back(std::move(one));
    }
    if (paths.empty()) return makeError("$KUBECONFIG=" + it->second + ": none of its files exists");
    return loadMerged(paths, context);
  }
  if (!context.empty())
    return makeError("--context needs a kubeconfig (--kubeconfig or $KUBECONFIG)");
  return inClusterConfig(env);
}

}  // namespace sluice::source::kube
