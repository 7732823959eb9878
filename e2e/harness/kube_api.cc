#include "e2e/harness/kube_api.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "common/file_util.h"

namespace sluice::e2e {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr int kApiPort = 6443;
constexpr const char* kFieldManager = "sluice-e2e";

Status writeFile(const fs::path& path, const std::string& data) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) return makeError("write " + path.string());
  f << data;
  if (!f) return makeError("write " + path.string());
  return Status::Ok();
}

std::string randomToken() {
  std::random_device rd;
  std::mt19937_64 gen(rd());
  std::ostringstream s;
  for (int i = 0; i < 4; ++i) s << std::hex << gen();
  return s.str();
}

std::string base64(const std::string& in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int k = 3; k >= 0; --k) out += tbl[(v >> (6 * k)) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

struct Resource {
  std::string prefix;  // /api/v1 or /apis/GROUP/VERSION
  std::string plural;
  bool namespaced;
};

Result<Resource> resourceOf(const std::string& kind) {
  static const std::map<std::string, Resource> kinds = {
      {"Namespace", {"/api/v1", "namespaces", false}},
      {"Pod", {"/api/v1", "pods", true}},
      {"Node", {"/api/v1", "nodes", false}},
      {"NetworkPolicy", {"/apis/networking.k8s.io/v1", "networkpolicies", true}},
      {"ClusterRole", {"/apis/rbac.authorization.k8s.io/v1", "clusterroles", false}},
      {"ClusterRoleBinding", {"/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", false}},
  };
  auto it = kinds.find(kind);
  if (it == kinds.end()) return makeError("kube_api: kind " + kind + " is not supported");
  return it->second;
}

Result<std::string> pathOf(const ObjectRef& ref) {
  SLUICE_ASSIGN_OR_RETURN(Resource r, resourceOf(ref.kind));
  std::string p = r.prefix;
  if (r.namespaced) {
    if (ref.ns.empty()) return makeError(ref.str() + ": namespace required");
    p += "/namespaces/" + ref.ns;
  }
  return p + "/" + r.plural + "/" + ref.name;
}

// A YAML node as JSON: quoted scalars stay strings; plain ones are read as YAML 1.2 core
// (integers, booleans, null), as the tests write them. Used for the items of a YAML `List`.
json yamlToJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = yamlToJson(kv.second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(yamlToJson(e));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const std::string v = n.Scalar();
      if (n.Tag() == "!") return v;  // quoted in the source
      if (v == "true") return true;
      if (v == "false") return false;
      if (v == "null" || v == "~") return nullptr;
      if (!v.empty() && v.find_first_not_of("-0123456789") == std::string::npos) {
        try {
          return std::stoll(v);
        } catch (const std::exception&) {
        }
      }
      return v;
    }
    default:
      return nullptr;
  }
}

// One document of a manifest text, as its own apply body (JSON or YAML text) and its name.
struct Document {
  ObjectRef ref;
  std::string body;
};

Result<std::vector<Document>> splitDocuments(const std::string& text) {
  std::vector<Document> docs;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return docs;
  if (text[first] == '{') {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return makeError("kube_api: invalid JSON manifest");
    std::vector<json> items;
    if (j.value("kind", "") == "List") {
      for (const auto& i : j.value("items", json::array())) items.push_back(i);
    } else {
      items.push_back(j);
    }
    for (const auto& i : items) {
      Document d;
      d.ref.kind = i.value("kind", "");
      d.ref.ns = i["metadata"].value("namespace", "");
      d.ref.name = i["metadata"].value("name", "");
      d.body = i.dump();
      docs.push_back(std::move(d));
    }
    return docs;
  }
  // YAML: split on document separators textually, so quoting survives exactly as written.
  std::vector<std::string> parts;
  std::istringstream in(text);
  std::string line, cur;
  while (std::getline(in, line)) {
    if (line.rfind("---", 0) == 0) {
      parts.push_back(cur);
      cur.clear();
      continue;
    }
    cur += line + "\n";
  }
  parts.push_back(cur);
  for (const auto& p : parts) {
    YAML::Node n;
    try {
      n = YAML::Load(p);
    } catch (const YAML::Exception& e) {
      return makeError(std::string("kube_api: invalid YAML manifest: ") + e.what());
    }
    if (!n.IsMap()) continue;  // empty or comment-only document
    if (n["kind"] && n["kind"].as<std::string>("") == "List") {
      for (const auto& item : n["items"]) {
        json j = yamlToJson(item);
        Document d;
        d.ref.kind = j.value("kind", "");
        d.ref.ns = j["metadata"].value("namespace", "");
        d.ref.name = j["metadata"].value("name", "");
        d.body = j.dump();
        docs.push_back(std::move(d));
      }
      continue;
    }
    Document d;
    try {
      d.ref.kind = n["kind"].as<std::string>("");
      d.ref.name = n["metadata"]["name"].as<std::string>("");
      if (n["metadata"]["namespace"]) d.ref.ns = n["metadata"]["namespace"].as<std::string>();
    } catch (const YAML::Exception& e) {
      return makeError(std::string("kube_api: manifest document: ") + e.what());
    }
    d.body = p;
    docs.push_back(std::move(d));
  }
  return docs;
}

uint64_t resourceVersionOf(const json& obj) {
  try {
    return std::stoull(obj.at("metadata").at("resourceVersion").get<std::string>());
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

fs::path findKubeBinDir() {
  if (const char* env = std::getenv("SLUICE_KUBE_BIN_DIR"); env && *env) {
    if (fs::exists(fs::path(env) / "kube-apiserver")) return env;
    return {};
  }
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/var/cache/sluice", ec)) {
    if (e.path().filename().string().rfind("kubernetes-", 0) == 0 &&
        fs::exists(e.path() / "bin" / "kube-apiserver")) {
      found.push_back(e.path() / "bin");
    }
  }
  std::sort(found.begin(), found.end());
  return found.empty() ? fs::path() : found.back();
}

Result<std::unique_ptr<KubeApi>> KubeApi::start(const KubeApiOptions& opts) {
  if (!fs::exists(opts.binDir / "kube-apiserver")) {
    return makeError("no kube-apiserver in " + opts.binDir.string() +
                     " (run scripts/build-kube.sh)");
  }
  std::unique_ptr<KubeApi> api(new KubeApi(opts));
  fs::create_directories(opts.runDir);
  api->apiLog_ = opts.runDir / "kube-apiserver.log";
  SLUICE_RETURN_IF_ERROR(api->makeCredentials());
  SLUICE_RETURN_IF_ERROR(api->startEtcd());
  SLUICE_RETURN_IF_ERROR(api->startApiServer());
  SLUICE_RETURN_IF_ERROR(api->grantNodeRole());
  return api;
}

KubeApi::~KubeApi() {
  apiserver_.stop(5s);
  etcd_.stop(5s);
}

std::string KubeApi::server() const {
  return "https://" + opts_.address + ":" + std::to_string(kApiPort);
}

Status KubeApi::makeCredentials() {
  const fs::path& d = opts_.runDir;
  auto openssl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    return runChecked(Command{args}, 60s);
  };
  SLUICE_RETURN_IF_ERROR(
      openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", (d / "ca.key").string(),
               "-out", (d / "ca.crt").string(), "-days", "2", "-subj", "/CN=sluice-e2e-ca"}));
  SLUICE_RETURN_IF_ERROR(
      openssl({"req", "-newkey", "rsa:2048", "-nodes", "-keyout", (d / "server.key").string(),
               "-out", (d / "server.csr").string(), "-subj", "/CN=kube-apiserver"}));
  SLUICE_RETURN_IF_ERROR(
      writeFile(d / "server.ext", "subjectAltName=IP:" + opts_.address +
                                      ",IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"));
  SLUICE_RETURN_IF_ERROR(openssl({"x509", "-req", "-in", (d / "server.csr").string(), "-CA",
                                  (d / "ca.crt").string(), "-CAkey", (d / "ca.key").string(),
                                  "-CAcreateserial", "-out", (d / "server.crt").string(), "-days",
                                  "2", "-extfile", (d / "server.ext").string()}));
  SLUICE_RETURN_IF_ERROR(openssl({"genrsa", "-out", (d / "sa.key").string(), "2048"}));
  SLUICE_RETURN_IF_ERROR(
      openssl({"rsa", "-in", (d / "sa.key").string(), "-pubout", "-out", (d / "sa.pub").string()}));
  if (opts_.kubeletClientCert) {
    SLUICE_RETURN_IF_ERROR(
        openssl({"req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                 (d / "kubelet-client.key").string(), "-out", (d / "kubelet-client.csr").string(),
                 "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client"}));
    SLUICE_RETURN_IF_ERROR(
        openssl({"x509", "-req", "-in", (d / "kubelet-client.csr").string(), "-CA",
                 (d / "ca.crt").string(), "-CAkey", (d / "ca.key").string(), "-CAcreateserial",
                 "-out", (d / "kubelet-client.crt").string(), "-days", "2"}));
  }
  adminToken_ = randomToken();
  nodeToken_ = randomToken();
  std::string tokens = adminToken_ + ",e2e-admin,e2e-admin,\"system:masters\"\n" + nodeToken_ +
                       ",sluice-node,sluice-node\n";
  std::vector<std::pair<std::string, std::string>> userTokens;
  for (const auto& u : opts_.tokenUsers) {
    std::string groups;
    for (const auto& g : u.groups) groups += (groups.empty() ? "" : ",") + g;
    userTokens.emplace_back(u.name, randomToken());
    tokens += userTokens.back().second + "," + u.name + "," + u.name + ",\"" + groups + "\"\n";
  }
  SLUICE_RETURN_IF_ERROR(writeFile(d / "tokens.csv", tokens));
  SLUICE_ASSIGN_OR_RETURN(std::string ca, readFile((d / "ca.crt").string()));
  auto kubeconfig = [&](const std::string& user, const std::string& token) {
    json cfg = {
        {"apiVersion", "v1"},
        {"kind", "Config"},
        {"clusters",
         json::array(
             {{{"name", "e2e"},
               {"cluster", {{"server", server()}, {"certificate-authority-data", base64(ca)}}}}})},
        {"users", json::array({{{"name", user}, {"user", {{"token", token}}}}})},
        {"contexts",
         json::array({{{"name", "e2e"}, {"context", {{"cluster", "e2e"}, {"user", user}}}}})},
        {"current-context", "e2e"}};
    return cfg.dump(2);
  };
  adminKubeconfig_ = d / "admin.kubeconfig";
  nodeKubeconfig_ = d / "node.kubeconfig";
  SLUICE_RETURN_IF_ERROR(writeFile(adminKubeconfig_, kubeconfig("e2e-admin", adminToken_)));
  SLUICE_RETURN_IF_ERROR(writeFile(nodeKubeconfig_, kubeconfig("sluice-node", nodeToken_)));
  for (const auto& [user, token] : userTokens) {
    SLUICE_RETURN_IF_ERROR(writeFile(kubeconfigOf(user), kubeconfig(user, token)));
  }
  return Status::Ok();
}

fs::path KubeApi::kubeconfigOf(const std::string& user) const {
  return opts_.runDir / (user + ".kubeconfig");
}

Status KubeApi::startEtcd() {
  Command cmd{{"etcd", "--name", "e2e", "--data-dir", (opts_.runDir / "etcd").string(),
               "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls",
               "http://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380",
               "--initial-advertise-peer-urls", "http://127.0.0.1:2380", "--initial-cluster",
               "e2e=http://127.0.0.1:2380", "--log-level", "warn"}};
  cmd.netns = opts_.netns;
  cmd.outputFile = (opts_.runDir / "etcd.log").string();
  SLUICE_ASSIGN_OR_RETURN(etcd_, spawn(cmd));
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    Command check{{"etcdctl", "--endpoints=127.0.0.1:2379", "endpoint", "health"},
                  {{"ETCDCTL_API", "3"}},
                  opts_.netns};
    auto r = run(check, 10s);
    if (r.ok() && r->exitCode == 0) return Status::Ok();
    if (!etcd_.running()) return makeError("etcd exited; see " + cmd.outputFile);
    std::this_thread::sleep_for(100ms);
  }
  return makeError("etcd not healthy after 30 s; see " + cmd.outputFile);
}

Status KubeApi::startApiServer() {
  const fs::path& d = opts_.runDir;
  fs::create_directories(d / "apiserver-certs");
  Command cmd{{(opts_.binDir / "kube-apiserver").string(), "--etcd-servers=http://127.0.0.1:2379",
               "--bind-address=" + opts_.address, "--advertise-address=" + opts_.address,
               "--secure-port=" + std::to_string(kApiPort), "--insecure-port=0",
               "--cert-dir=" + (d / "apiserver-certs").string(),
               "--tls-cert-file=" + (d / "server.crt").string(),
               "--tls-private-key-file=" + (d / "server.key").string(),
               "--client-ca-file=" + (d / "ca.crt").string(),
               "--token-auth-file=" + (d / "tokens.csv").string(), "--authorization-mode=RBAC",
               "--service-account-key-file=" + (d / "sa.pub").string(),
               "--service-account-signing-key-file=" + (d / "sa.key").string(),
               "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
               "--service-cluster-ip-range=10.96.0.0/16",
               "--kubelet-preferred-address-types=InternalIP,Hostname", "--profiling=false",
               "--v=1"}};
  if (!opts_.serviceAccounts) cmd.argv.push_back("--disable-admission-plugins=ServiceAccount");
  if (opts_.kubeletClientCert) {
    cmd.argv.push_back("--kubelet-client-certificate=" + (d / "kubelet-client.crt").string());
    cmd.argv.push_back("--kubelet-client-key=" + (d / "kubelet-client.key").string());
  }
  cmd.argv.insert(cmd.argv.end(), opts_.extraFlags.begin(), opts_.extraFlags.end());
  cmd.netns = opts_.netns;
  // Appends across restarts, so one log shows the whole run.
  cmd.outputFile = apiLog_.string();
  SLUICE_ASSIGN_OR_RETURN(apiserver_, spawn(cmd));
  return waitReady(90s);
}

Status KubeApi::stopApiServer() {
  apiserver_.stop(10s);
  return Status::Ok();
}

Status KubeApi::waitReady(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = request("GET", "/readyz");
    if (r.ok() && r->first == 200) return Status::Ok();
    last = r.ok() ? std::to_string(r->first) + " " + r->second : r.error().message;
    if (!apiserver_.running()) return makeError("kube-apiserver exited; see " + apiLog_.string());
    std::this_thread::sleep_for(250ms);
  }
  return makeError("kube-apiserver not ready: " + last + "; see " + apiLog_.string());
}

Status KubeApi::grantNodeRole() {
  // The ClusterRole users install (manifests/sluice.yaml), bound to the node token's user.
  SLUICE_ASSIGN_OR_RETURN(std::string manifest, readFile(opts_.clusterRoleManifest.string()));
  SLUICE_ASSIGN_OR_RETURN(auto docs, splitDocuments(manifest));
  std::string role;
  for (const auto& d : docs) {
    if (d.ref.kind == "ClusterRole") {
      if (!role.empty())
        return makeError("two ClusterRoles in " + opts_.clusterRoleManifest.string());
      role = d.body;
      SLUICE_RETURN_IF_ERROR(statusOf(apply(d.body)));
      json binding = {{"apiVersion", "rbac.authorization.k8s.io/v1"},
                      {"kind", "ClusterRoleBinding"},
                      {"metadata", {{"name", "sluice-e2e-node"}}},
                      {"roleRef",
                       {{"apiGroup", "rbac.authorization.k8s.io"},
                        {"kind", "ClusterRole"},
                        {"name", d.ref.name}}},
                      {"subjects", json::array({{{"apiGroup", "rbac.authorization.k8s.io"},
                                                 {"kind", "User"},
                                                 {"name", "sluice-node"}}})}};
      SLUICE_RETURN_IF_ERROR(statusOf(apply(binding.dump())));
    }
  }
  if (role.empty()) return makeError("no ClusterRole in " + opts_.clusterRoleManifest.string());
  return Status::Ok();
}

Result<std::pair<int, std::string>> KubeApi::request(const std::string& method,
                                                     const std::string& path,
                                                     const std::string& body,
                                                     const std::string& contentType) {
  Command cmd{{"curl", "-sS", "--max-time", "20", "--cacert", (opts_.runDir / "ca.crt").string(),
               "-H", "Authorization: Bearer " + adminToken_, "-X", method, "-w", "\n%{http_code}",
               server() + path}};
  if (!body.empty()) {
    cmd.argv.insert(cmd.argv.end(), {"-H", "Content-Type: " + contentType, "--data-binary", "@-"});
    cmd.stdinData = body;
  }
  cmd.netns = opts_.netns;
  SLUICE_ASSIGN_OR_RETURN(RunResult r, run(cmd, 30s));
  if (r.exitCode != 0) return makeError("curl " + method + " " + path + ": " + r.err);
  auto nl = r.out.rfind('\n');
  if (nl == std::string::npos) return makeError("curl " + method + " " + path + ": no status");
  int status = std::atoi(r.out.c_str() + nl + 1);
  return std::make_pair(status, r.out.substr(0, nl));
}

Result<json> KubeApi::call(const std::string& method, const std::string& path,
                           const std::string& body, const std::string& contentType) {
  SLUICE_ASSIGN_OR_RETURN(auto r, request(method, path, body, contentType));
  if (r.first < 200 || r.first >= 300) {
    return makeError(method + " " + path + ": HTTP " + std::to_string(r.first) + ": " + r.second);
  }
  json j = json::parse(r.second, nullptr, false);
  if (j.is_discarded()) return makeError(method + " " + path + ": response is not JSON");
  return j;
}

Result<std::vector<ObjectRef>> KubeApi::objectsOf(const std::string& text) {
  SLUICE_ASSIGN_OR_RETURN(auto docs, splitDocuments(text));
  std::vector<ObjectRef> out;
  for (const auto& d : docs) out.push_back(d.ref);
  return out;
}

Result<std::map<ObjectRef, uint64_t>> KubeApi::apply(const std::string& text) {
  SLUICE_ASSIGN_OR_RETURN(auto docs, splitDocuments(text));
  std::map<ObjectRef, uint64_t> written;
  for (const auto& d : docs) {
    SLUICE_ASSIGN_OR_RETURN(std::string path, pathOf(d.ref));
    SLUICE_ASSIGN_OR_RETURN(
        json obj, call("PATCH", path + "?fieldManager=" + kFieldManager + "&force=true", d.body,
                       "application/apply-patch+yaml"));
    written[d.ref] = resourceVersionOf(obj);
  }
  return written;
}

Status KubeApi::remove(const std::vector<ObjectRef>& objects) {
  for (const auto& ref : objects) {
    SLUICE_ASSIGN_OR_RETURN(std::string path, pathOf(ref));
    SLUICE_ASSIGN_OR_RETURN(auto r, request("DELETE", path + "?gracePeriodSeconds=0"));
    if (r.first != 200 && r.first != 202 && r.first != 404) {
      return makeError("DELETE " + ref.str() + ": HTTP " + std::to_string(r.first) + ": " +
                       r.second);
    }
  }
  return Status::Ok();
}

Result<uint64_t> KubeApi::setPodIps(const std::string& ns, const std::string& name,
                                    const std::vector<std::string>& ips) {
  json podIps = json::array();
  for (const auto& ip : ips) podIps.push_back({{"ip", ip}});
  json status = {{"phase", "Running"}, {"podIPs", podIps}};
  if (!ips.empty()) status["podIP"] = ips[0];
  return patchStatus(ObjectRef{"Pod", ns, name}, status);
}

Result<uint64_t> KubeApi::patchStatus(const ObjectRef& ref, const json& status) {
  SLUICE_ASSIGN_OR_RETURN(std::string path, pathOf(ref));
  json patch = {{"status", status}};
  SLUICE_ASSIGN_OR_RETURN(
      json obj, call("PATCH", path + "/status", patch.dump(), "application/merge-patch+json"));
  return resourceVersionOf(obj);
}

Result<uint64_t> KubeApi::compactEtcd() {
  Command status{{"etcdctl", "--endpoints=127.0.0.1:2379", "endpoint", "status", "-w", "json"},
                 {{"ETCDCTL_API", "3"}},
                 opts_.netns};
  SLUICE_ASSIGN_OR_RETURN(RunResult r, run(status, 10s));
  if (r.exitCode != 0) return makeError("etcdctl endpoint status: " + r.err);
  json j = json::parse(r.out, nullptr, false);
  uint64_t rev = 0;
  try {
    rev = j.at(0).at("Status").at("header").at("revision").get<uint64_t>();
  } catch (const std::exception& e) {
    return makeError(std::string("etcdctl endpoint status: ") + e.what() + ": " + r.out);
  }
  Command compact{{"etcdctl", "--endpoints=127.0.0.1:2379", "compact", std::to_string(rev)},
                  {{"ETCDCTL_API", "3"}},
                  opts_.netns};
  SLUICE_RETURN_IF_ERROR(runChecked(compact, 10s));
  return rev;
}

}  // namespace sluice::e2e
