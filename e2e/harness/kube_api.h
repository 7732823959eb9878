// A real kube-apiserver (built from Debian's kubernetes source package by scripts/build-kube.sh)
// and etcd, for e2e tests of `--source kube`. Both run inside a network namespace the test made
// (the simulated cluster's fabric), so the API server is reachable from every simulated node and
// nothing listens in the namespace the test was started from.
//
// Auth is a self-made CA (openssl) and a static token file: an admin token (system:masters) for
// the harness, and a node token whose user is bound to the ClusterRole shipped in
// manifests/sluice.yaml, so the daemons run with exactly the least privilege users install.
// There is no controller-manager, so the ServiceAccount admission plugin is off.
//
// Objects are written with server-side apply (PATCH application/apply-patch+yaml), through curl
// run inside the namespace. Each write returns the object's resourceVersion, which the harness
// uses as a sync barrier (etcd revisions: integers, increasing across all kinds).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/result.h"
#include "e2e/harness/process.h"

namespace sluice::e2e {

struct KubeApiOptions {
  std::filesystem::path binDir;               // holds kube-apiserver
  std::filesystem::path runDir;               // certs, tokens, etcd data, logs (created)
  std::string netns;                          // path of the namespace both run in
  std::string address;                        // IPv4 the API server binds in that namespace
  std::filesystem::path clusterRoleManifest;  // manifests/sluice.yaml

  // For a real node (e2e/node), where a controller-manager issues service-account tokens and a
  // kubelet serves exec/logs. All off by default (the simulated clusters need none of them).
  struct TokenUser {
    std::string name;
    std::vector<std::string> groups;
  };
  bool serviceAccounts = false;         // keep the ServiceAccount admission plugin on
  bool kubeletClientCert = false;       // a CA-signed client cert the server presents to kubelets
  std::vector<TokenUser> tokenUsers;    // more token users, each with kubeconfigOf(name)
  std::vector<std::string> extraFlags;  // appended to kube-apiserver's command line
};

// One Kubernetes object as the harness names it.
struct ObjectRef {
  std::string kind;
  std::string ns;  // empty for cluster-scoped kinds
  std::string name;
  auto operator<=>(const ObjectRef&) const = default;
  std::string str() const { return kind + " " + (ns.empty() ? "" : ns + "/") + name; }
};

class KubeApi {
 public:
  static Result<std::unique_ptr<KubeApi>> start(const KubeApiOptions& opts);
  ~KubeApi();
  KubeApi(const KubeApi&) = delete;
  KubeApi& operator=(const KubeApi&) = delete;

  std::string server() const;  // https://ADDRESS:6443
  // A kubeconfig for the least-privilege node user (written once, under runDir).
  const std::filesystem::path& nodeKubeconfig() const { return nodeKubeconfig_; }
  const std::filesystem::path& adminKubeconfig() const { return adminKubeconfig_; }
  // The kubeconfig of one of KubeApiOptions::tokenUsers.
  std::filesystem::path kubeconfigOf(const std::string& user) const;
  // The CA that signed the server's certificate (and kubeletClientCert).
  std::filesystem::path caFile() const { return opts_.runDir / "ca.crt"; }

  // Server-side applies every object in `text` (JSON object or List, or multi-document YAML).
  // Returns the objects written with their new resourceVersions.
  Result<std::map<ObjectRef, uint64_t>> apply(const std::string& text);
  // Deletes objects; a missing object is not an error.
  Status remove(const std::vector<ObjectRef>& objects);
  // The objects a manifest text names (kind, namespace, name), without writing anything.
  static Result<std::vector<ObjectRef>> objectsOf(const std::string& text);
  // PATCHes pods/NAME/status as kubelet does: phase Running, podIP(s). Returns resourceVersion.
  Result<uint64_t> setPodIps(const std::string& ns, const std::string& name,
                             const std::vector<std::string>& ips);
  // Merge-patches an object's status subresource (e.g. a Node's addresses).
  Result<uint64_t> patchStatus(const ObjectRef& ref, const nlohmann::json& status);
  // Raw request as the admin; returns HTTP status and body.
  Result<std::pair<int, std::string>> request(const std::string& method, const std::string& path,
                                              const std::string& body = "",
                                              const std::string& contentType = "");

  // Fault injection: restart the API server (etcd keeps the data), and compact etcd's history
  // up to its current revision so any watch resuming from an older resourceVersion gets 410 Gone.
  Status stopApiServer();
  Status startApiServer();
  Result<uint64_t> compactEtcd();
  const std::filesystem::path& apiServerLog() const { return apiLog_; }

 private:
  explicit KubeApi(KubeApiOptions opts) : opts_(std::move(opts)) {}
  Status makeCredentials();
  Status startEtcd();
  Status waitReady(std::chrono::milliseconds timeout);
  Status grantNodeRole();
  Result<nlohmann::json> call(const std::string& method, const std::string& path,
                              const std::string& body, const std::string& contentType);

  KubeApiOptions opts_;
  std::filesystem::path adminKubeconfig_;
  std::filesystem::path nodeKubeconfig_;
  std::filesystem::path apiLog_;
  std::string adminToken_;
  std::string nodeToken_;
  Child etcd_;
  Child apiserver_;
};

// A Result's outcome without its value.
template <typename T>
Status statusOf(const Result<T>& r) {
  return r.ok() ? Status::Ok() : Status(r.error());
}

// Where scripts/build-kube.sh put kube-apiserver: $SLUICE_KUBE_BIN_DIR, else the newest
// /var/cache/sluice/kubernetes-*/bin holding it; empty when there is none.
std::filesystem::path findKubeBinDir();

}  // namespace sluice::e2e
