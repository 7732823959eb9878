// A real Kubernetes node on this machine, for the e2e.node suite: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler (scripts/build-kube.sh), containerd + runc (Debian) and
// kubelet, all started by hand (PID 1 is not systemd). Sluice is installed the way users install
// it: images imported with `ctr`, then `kubectl apply -f manifests/`.
//
// This is DESIGN.md §8's one exception to "only namespaces you made": kubelet and containerd run
// in the root network namespace like on a real node. Everything the node changes on the host is
// recorded first (HostState) and put back by stop(): sysctls kubelet writes, /etc/cni/net.d,
// /opt/cni/bin, the hostPath directories the DaemonSet creates, bpffs pins, mounts (kubelet's root
// dir, containerd's snapshots and shm), processes (including shims), iptables.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "e2e/harness/kube_api.h"
#include "e2e/harness/process.h"

namespace sluice::e2e {

struct NodeOptions {
  std::filesystem::path kubeBinDir;  // kube-*, kubelet, kubectl, pause
  std::filesystem::path sourceDir;   // the checkout (manifests/, scripts/)
  std::filesystem::path buildDir;    // sluice, sluice-policyd, sluicectl
  std::string runPrefix;             // names this run's files and processes
};

// Host settings the node touches, recorded before it starts.
class HostState {
 public:
  static HostState capture(const std::vector<std::filesystem::path>& dirs);
  // Puts back what capture() saw; returns what could not be restored.
  std::vector<std::string> restore() const;
  // What differs from the capture now (empty = the machine is as found).
  std::vector<std::string> differences() const;

 private:
  std::map<std::string, std::string> sysctls_;
  // Per directory: absent (nullopt) or its top-level entries.
  std::map<std::filesystem::path, std::optional<std::vector<std::string>>> dirs_;
  std::string iptables_;
  std::string ip6tables_;
};

struct CommandOutput {
  int exitCode = -1;
  std::string out;
  std::string err;
};

class Node {
 public:
  static Result<std::unique_ptr<Node>> start(const NodeOptions& opts);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  const std::string& ipv4() const { return ipv4_; }
  const std::string& ipv6() const { return ipv6_; }
  const std::filesystem::path& adminKubeconfig() const { return api_->adminKubeconfig(); }

  // kubectl as the cluster admin.
  Result<CommandOutput> kubectl(const std::vector<std::string>& args,
                                const std::string& stdinData = "",
                                std::chrono::milliseconds timeout = std::chrono::seconds(60));
  Status kubectlChecked(const std::vector<std::string>& args, const std::string& stdinData = "",
                        std::chrono::milliseconds timeout = std::chrono::seconds(60));
  Result<nlohmann::json> kubectlJson(const std::vector<std::string>& args);

  // The install: the API server ConfigMap, then `kubectl apply -f manifests/`; waits for the
  // Node's Ready condition and returns how long that took after the apply.
  Result<std::chrono::milliseconds> installSluice(std::chrono::milliseconds timeout);
  Status waitNodeReady(bool ready, std::chrono::milliseconds timeout);
  // The Ready condition as the API server has it.
  Result<bool> nodeReady();

  // Fault injection: stop and start kubelet or containerd (pods and their shims keep running).
  Status restartKubelet();
  Status restartContainerd();

  // containerd's CRI metrics and kubelet's (Prometheus text).
  Result<std::string> containerdMetrics();
  Result<std::string> kubeletMetrics();

  // Deletes every pod (so kubelet runs CNI DEL), the Sluice install, the Node; stops every
  // process; restores the host. Idempotent; returns what could not be cleaned up.
  std::vector<std::string> stop();
  const HostState& hostState() const { return host_; }
  const std::filesystem::path& runDir() const { return runDir_; }

 private:
  explicit Node(NodeOptions opts) : opts_(std::move(opts)) {}
  Status prepareHost();
  Status startControlPlane();
  Status startContainerd();
  Status importImages();
  Status startKubelet();
  Status waitForNodeObject(std::chrono::milliseconds timeout);
  Status deleteWorkloads(std::vector<std::string>& problems);

  NodeOptions opts_;
  std::string name_;
  std::string ipv4_;
  std::string ipv6_;
  std::filesystem::path runDir_;    // certs, configs, logs (kept on failure)
  std::filesystem::path stateDir_;  // containerd root/state, kubelet root (removed)
  HostState host_;
  std::vector<std::string> addedCniBins_;
  std::unique_ptr<KubeApi> api_;
  Child controllerManager_;
  Child scheduler_;
  Child containerd_;
  Child kubelet_;
  bool stopped_ = false;
};

// The first global address of a family on an interface that is up (not lo).
Result<std::string> hostAddress(int family);

}  // namespace sluice::e2e
