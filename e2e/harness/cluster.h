// A simulated Kubernetes cluster in network namespaces (DESIGN.md §8): "nodes" are namespaces
// joined by a bridge in a fabric namespace, each running its own sluice-policyd (own socket,
// state dir and bpffs pin dir); "pods" are namespaces wired by the real `sluice` CNI binary and
// running sluice-probe echo servers. Every resource carries a per-run prefix; the destructor
// tears everything down, and create() first removes what interrupted runs of dead processes left.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"
#include "common/result.h"
#include "e2e/harness/kube_api.h"
#include "e2e/harness/process.h"

namespace sluice::e2e {

struct ClusterOptions {
  int nodes = 2;
  std::string established = "recheck";  // --established
  std::filesystem::path binaryDir;      // the CMake build directory
  bool keepLogs = false;                // leave the run directory behind for inspection
  // Where the daemons learn the cluster from: "dir" (a manifests directory) or "kube" (a real
  // kube-apiserver + etcd started in the fabric namespace; every manifest the harness writes is
  // also applied through the API, and pods get their IPs by a status PATCH, as from kubelet).
  std::string source = "dir";
  std::filesystem::path kubeBinDir;  // kube mode: where kube-apiserver is (findKubeBinDir())
  // The daemons' --datapath: "bpf" or "nft". Defaults to $SLUICE_E2E_DATAPATH (else bpf), so
  // every suite built on this harness runs on either backend unchanged.
  std::string datapath = defaultDatapath();
  static std::string defaultDatapath();
};

struct PodSpec {
  std::string ns;
  std::string name;
  int node = 0;
  std::map<std::string, std::string> labels;
  // Container ports: name, port, protocol. The pod's echo servers listen on every port here
  // plus the probe ports the suite uses.
  struct Port {
    std::string name;
    uint16_t port;
    std::string protocol;
  };
  std::vector<Port> ports;
  // When set, the echo server starts before CNI ADD (so it sees any packet that reaches the pod
  // from the instant its interface exists) and logs every connection/datagram to this file.
  std::string serverLog;
};

struct PodInfo {
  PodSpec spec;
  std::string netnsName;
  std::string containerId;
  std::vector<IpAddr> ips;
  std::string hostVeth;
};

// allowed[i][j]: pods[i] may open a connection to pods[j].
struct Matrix {
  std::vector<std::string> pods;  // "ns/name", sorted
  std::vector<std::vector<bool>> allowed;
  std::string render(const Matrix* other = nullptr) const;  // marks cells that differ
};

class SimCluster {
 public:
  static Result<std::unique_ptr<SimCluster>> create(const ClusterOptions& opts);
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  const std::string& prefix() const { return prefix_; }
  const std::filesystem::path& manifestsDir() const { return manifests_; }
  std::string nodeNetns(int node) const;

  // The API server in kube mode (null in dir mode).
  KubeApi* api() const { return api_.get(); }
  bool kubeMode() const { return api_ != nullptr; }
  // Kube mode: the resourceVersions the API server gave the objects of the last writeManifest.
  const std::map<ObjectRef, uint64_t>& lastWriteVersions() const { return lastWrite_; }

  // Writes (or removes) a file in the manifests directory both daemons watch. In kube mode the
  // file is kept as the dry run's input and its objects are applied through the API (objects the
  // previous version of the file had and this one lacks are deleted); an object the API server
  // rejects fails the write.
  Status writeManifest(const std::string& file, const std::string& yamlOrJson);
  Status removeManifest(const std::string& file);
  // Namespace objects with labels (kubernetes.io/metadata.name is added by the decoder).
  Status setNamespaces(const std::map<std::string, std::map<std::string, std::string>>& ns);

  // Writes the Pod object, wires the pod with CNI ADD on its node, records status.podIPs, and
  // starts its echo servers. Returns once ADD returned (policy is then enforced).
  Result<PodInfo> addPod(const PodSpec& spec, const std::vector<uint16_t>& tcpPorts,
                         const std::vector<uint16_t>& udpPorts);
  // CNI ADD only (no Pod object rewrite, no servers): for first-packet tests.
  Status deletePod(const std::string& ns, const std::string& name);
  // Rewrites a pod's labels in its Pod object.
  Status relabelPod(const std::string& ns, const std::string& name,
                    const std::map<std::string, std::string>& labels);
  const std::map<std::string, PodInfo>& pods() const { return pods_; }
  const PodInfo* pod(const std::string& key) const;

  // Waits until every daemon has applied the manifests as they are now on disk.
  Status waitSynced(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Real packets: probes every ordered pair concurrently (per source), v4 unless v6.
  Result<Matrix> measure(uint16_t port, const std::string& protocol, bool v6 = false,
                         int timeoutMs = 700);
  // One probe from a pod (by key) or from a node's own namespace (nodeNetns(i)).
  Result<std::string> probeFromNetns(const std::string& netnsPath, const IpAddr& target,
                                     uint16_t port, const std::string& protocol, int timeoutMs);
  // The dry-run prediction: `sluicectl matrix -o json` on the manifests directory.
  Result<Matrix> predict(const std::string& port, const std::string& protocol);

  // Runs sluice-probe with `args` inside a pod's namespace, in the background, output to a file.
  Result<Child> spawnProbe(const std::string& podKey, const std::vector<std::string>& args,
                           const std::string& outputFile);
  static std::string podCidrV4(int node);
  std::filesystem::path runDir() const { return runDir_; }

  // Daemon lifecycle (restart tests).
  Status stopDaemon(int node);
  // waitReady=false returns once the process runs (e.g. while its source is unreachable).
  Status startDaemon(int node, bool waitReady = true);
  std::filesystem::path daemonLog(int node) const;
  // Where a node's daemon pins its BPF maps.
  std::string bpfPinDir(int node) const;
  // A node's own address on the fabric (the address its kubelet would probe pods from).
  static IpAddr nodeAddress(int node, bool v6);
  std::filesystem::path binary(const std::string& rel) const { return opts_.binaryDir / rel; }
  // Runs sluice (CNI) with `command` for a pod on its node; returns stdout/exit code.
  Result<RunResult> cni(const std::string& command, const PodInfo& pod);

  // Fault tests.
  std::filesystem::path stateDir(int node) const;    // the daemon's --state-dir
  std::filesystem::path ipamDir(int node) const;     // the CNI IPAM store of the network
  std::filesystem::path socketPath(int node) const;  // the daemon's endpoint socket
  // SIGKILL without a grace period (a crash); startDaemon() brings it back.
  void killDaemon(int node);
  // A pod sandbox without CNI ADD: its netns and Pod object (no addresses yet). Tests drive
  // ADD/DEL themselves with cni(); the sandbox is removed at teardown like any pod.
  Result<PodInfo> createSandbox(const PodSpec& spec);
  // Deletes a sandbox's netns and Pod object (no CNI DEL: call cni("DEL") first).
  Status removeSandbox(const std::string& key);

 private:
  explicit SimCluster(ClusterOptions opts);
  Status setUp();
  void tearDown();
  Status writePodObject(const PodInfo& pod);
  Status waitSyncedDir(std::chrono::milliseconds timeout);
  Status waitSyncedKube(std::chrono::milliseconds timeout);
  Status startKubeApi();
  std::string pluginConfig(int node) const;

  ClusterOptions opts_;
  std::string prefix_;
  std::filesystem::path runDir_;
  std::filesystem::path manifests_;
  std::vector<Child> daemons_;
  std::map<std::string, Child> servers_;  // pod key -> echo server
  std::map<std::string, PodInfo> pods_;
  int nextPod_ = 0;
  int syncRound_ = 0;
  bool fabricUp_ = false;
  std::unique_ptr<KubeApi> api_;
  std::map<std::string, std::vector<ObjectRef>> fileObjects_;  // kube mode: manifest -> objects
  std::map<ObjectRef, uint64_t> lastWrite_;
};

}  // namespace sluice::e2e
