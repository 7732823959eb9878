#include "e2e/node/node.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "common/file_util.h"

namespace sluice::e2e {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// kubelet writes these (issue 8), and a node forwarding for pods is where ip_forward would be
// flipped by a careless plugin: all are saved and compared.
const std::vector<std::string> kSysctls = {"vm/overcommit_memory",
                                           "vm/panic_on_oom",
                                           "kernel/panic",
                                           "kernel/panic_on_oops",
                                           "kernel/keys/root_maxkeys",
                                           "kernel/keys/root_maxbytes",
                                           "kernel/keys/maxkeys",
                                           "kernel/keys/maxbytes",
                                           "net/ipv4/ip_forward",
                                           "net/ipv6/conf/all/forwarding",
                                           "net/ipv4/conf/all/rp_filter"};

// Directories the node writes into, with the entry-name prefix this suite owns there ("" = the
// whole directory is the node's). /run/netns and /sys/fs/bpf are shared with other suites, which
// run in parallel, so only the runtime's cni-* netns and Sluice's default pin dir are tracked.
struct Watched {
  const char* path;
  const char* prefix;
};
const std::vector<Watched> kWatched = {
    {"/etc/cni", ""},         {"/etc/cni/net.d", ""},    {"/opt/cni", ""},
    {"/opt/cni/bin", ""},     {"/opt/containerd", ""},   {"/run/sluice", ""},
    {"/var/lib/sluice", ""},  {"/var/log/sluice", ""},   {"/var/lib/cni", ""},
    {"/var/lib/kubelet", ""}, {"/var/log/pods", ""},     {"/var/log/containers", ""},
    {"/run/containerd", ""},  {"/etc/kubernetes", ""},   {"/usr/libexec/kubernetes", ""},
    {"/run/netns", "cni-"},   {"/sys/fs/bpf", "sluice"},
};

constexpr const char* kMetricsAddr = "127.0.0.1:10338";

std::string readSysctl(const std::string& key) {
  std::ifstream f("/proc/sys/" + key);
  std::string v;
  std::getline(f, v);
  return v;
}

bool writeSysctl(const std::string& key, const std::string& value) {
  std::ofstream f("/proc/sys/" + key);
  f << value << "\n";
  f.flush();
  return static_cast<bool>(f);
}

std::optional<std::vector<std::string>> listDir(const fs::path& dir, const std::string& prefix) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// iptables rules without comments and counters, comparable across time.
std::string iptablesRules(const char* tool) {
  auto r = run(Command{{tool, "-w", "5", "-S"}}, 20s);
  if (!r.ok() || r->exitCode != 0) return "(" + std::string(tool) + " unavailable)";
  return r->out;
}

// Every mount point at or below `dir`, deepest first.
std::vector<std::string> mountsUnder(const fs::path& dir) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  std::vector<std::string> out;
  const std::string d = dir.string();
  while (std::getline(f, line)) {
    std::istringstream s(line);
    std::string id, parent, devno, root, mountPoint;
    s >> id >> parent >> devno >> root >> mountPoint;
    if (mountPoint == d || mountPoint.rfind(d + "/", 0) == 0) out.push_back(mountPoint);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return out;
}

void unmountUnder(const fs::path& dir) {
  // Bounded: each pass unmounts what is there; stacked mounts take a few passes.
  for (int pass = 0; pass < 5; ++pass) {
    auto mounts = mountsUnder(dir);
    if (mounts.empty()) return;
    for (const auto& m : mounts) ::umount2(m.c_str(), MNT_DETACH);
  }
}

Status writeText(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  f.flush();
  if (!f) return makeError("write " + path.string());
  return Status::Ok();
}

// Processes whose command line mentions `needle` (a path unique to this run), e.g. the shims
// containerd started for this node: they outlive containerd by design.
std::vector<pid_t> processesMentioning(const std::string& needle) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string n = e.path().filename().string();
    if (n.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) pids.push_back(std::stoi(n));
  }
  return pids;
}

// An earlier run that was killed (its test process is gone) leaves its processes, mounts and
// state dir behind: stop and remove them, by this suite's own prefix only.
void reapStaleRuns(const std::string& prefixBase) {
  std::error_code ec;
  for (const char* root : {"/var/lib", "/var/tmp"}) {
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string n = e.path().filename().string();
      if (n.rfind(prefixBase, 0) != 0) continue;
      const std::string pidText = n.substr(prefixBase.size());
      if (pidText.empty() || pidText.find_first_not_of("0123456789") != std::string::npos) continue;
      if (::kill(std::stoi(pidText), 0) == 0) continue;  // that run is still going
      for (int pass = 0; pass < 3; ++pass) {
        // With the trailing slash: run 12 must not match run 123.
        auto pids = processesMentioning(e.path().string() + "/");
        for (pid_t p : pids) ::kill(p, SIGKILL);
        if (pids.empty()) break;
        std::this_thread::sleep_for(300ms);
      }
      unmountUnder(e.path());
      if (std::string(root) == "/var/lib") fs::remove_all(e.path(), ec);
    }
  }
}

}  // namespace

HostState HostState::capture(const std::vector<fs::path>& extraDirs) {
  HostState h;
  for (const auto& k : kSysctls) h.sysctls_[k] = readSysctl(k);
  for (const auto& w : kWatched) h.dirs_[w.path] = listDir(w.path, w.prefix);
  for (const auto& d : extraDirs) h.dirs_[d] = listDir(d, "");
  h.iptables_ = iptablesRules("iptables");
  h.ip6tables_ = iptablesRules("ip6tables");
  return h;
}

namespace {
std::string prefixOf(const fs::path& dir) {
  for (const auto& w : kWatched) {
    if (dir == w.path) return w.prefix;
  }
  return "";
}
}  // namespace

std::vector<std::string> HostState::restore() const {
  std::vector<std::string> problems;
  for (const auto& [k, v] : sysctls_) {
    if (readSysctl(k) != v && !writeSysctl(k, v)) problems.push_back("sysctl " + k);
  }
  // Deepest first, so a directory the node created is emptied before its parent is judged.
  std::vector<fs::path> order;
  for (const auto& [d, _] : dirs_) order.push_back(d);
  std::sort(order.begin(), order.end(), [](const fs::path& a, const fs::path& b) {
    return a.string().size() > b.string().size();
  });
  for (const auto& d : order) {
    const auto& before = dirs_.at(d);
    std::error_code ec;
    if (!before) {
      if (fs::exists(d, ec)) {
        unmountUnder(d);
        fs::remove_all(d, ec);
        if (ec) problems.push_back("remove " + d.string() + ": " + ec.message());
      }
      continue;
    }
    auto now = listDir(d, prefixOf(d));
    if (!now) continue;
    std::set<std::string> keep(before->begin(), before->end());
    for (const auto& n : *now) {
      if (keep.count(n)) continue;
      unmountUnder(d / n);
      fs::remove_all(d / n, ec);
      if (ec) problems.push_back("remove " + (d / n).string() + ": " + ec.message());
    }
  }
  return problems;
}

std::vector<std::string> HostState::differences() const {
  std::vector<std::string> diffs;
  for (const auto& [k, v] : sysctls_) {
    std::string now = readSysctl(k);
    if (now != v) diffs.push_back("sysctl " + k + " was " + v + ", is " + now);
  }
  for (const auto& [d, before] : dirs_) {
    auto now = listDir(d, prefixOf(d));
    if (before.has_value() != now.has_value()) {
      diffs.push_back(d.string() + (now ? " exists (it did not)" : " is gone (it existed)"));
    } else if (before && *before != *now) {
      std::string s;
      for (const auto& n : *now) {
        if (std::find(before->begin(), before->end(), n) == before->end()) s += " +" + n;
      }
      for (const auto& n : *before) {
        if (std::find(now->begin(), now->end(), n) == now->end()) s += " -" + n;
      }
      diffs.push_back(d.string() + ":" + s);
    }
  }
  if (iptablesRules("iptables") != iptables_) diffs.push_back("iptables rules changed");
  if (iptablesRules("ip6tables") != ip6tables_) diffs.push_back("ip6tables rules changed");
  return diffs;
}

Result<std::string> hostAddress(int family) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return makeError("getifaddrs failed");
  std::string found;
  for (ifaddrs* a = list; a && found.empty(); a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != family) continue;
    if ((a->ifa_flags & IFF_UP) == 0 || (a->ifa_flags & IFF_LOOPBACK)) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    if (family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof buf);
    } else {
      const auto* in6 = reinterpret_cast<sockaddr_in6*>(a->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr)) continue;
      inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    }
    found = buf;
  }
  freeifaddrs(list);
  if (found.empty()) {
    return makeError(std::string("no global ") + (family == AF_INET ? "IPv4" : "IPv6") +
                     " address on an interface that is up");
  }
  return found;
}

Result<std::unique_ptr<Node>> Node::start(const NodeOptions& opts) {
  for (const char* c : {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                        "kubectl", "pause"}) {
    if (!fs::exists(opts.kubeBinDir / c)) {
      return makeError("no " + std::string(c) + " in " + opts.kubeBinDir.string() +
                       " (scripts/build-kube.sh)");
    }
  }
  reapStaleRuns(opts.runPrefix.substr(0, opts.runPrefix.rfind('-') + 1));
  std::unique_ptr<Node> node(new Node(opts));
  node->name_ = opts.runPrefix;
  SLUICE_ASSIGN_OR_RETURN(node->ipv4_, hostAddress(AF_INET));
  SLUICE_ASSIGN_OR_RETURN(node->ipv6_, hostAddress(AF_INET6));
  node->runDir_ = fs::path("/var/tmp") / opts.runPrefix;
  node->stateDir_ = fs::path("/var/lib") / opts.runPrefix;
  std::error_code ec;
  fs::remove_all(node->runDir_, ec);
  fs::create_directories(node->runDir_);
  // Captured before anything is written, so stop() can put it all back even after a failure.
  node->host_ = HostState::capture({});
  fs::create_directories(node->stateDir_);
  SLUICE_RETURN_IF_ERROR(node->prepareHost());
  SLUICE_RETURN_IF_ERROR(node->startControlPlane());
  SLUICE_RETURN_IF_ERROR(node->startContainerd());
  SLUICE_RETURN_IF_ERROR(node->importImages());
  SLUICE_RETURN_IF_ERROR(node->startKubelet());
  SLUICE_RETURN_IF_ERROR(node->waitForNodeObject(60s));
  return node;
}

Node::~Node() { stop(); }

Status Node::prepareHost() {
  if (fs::exists("/etc/cni/net.d") && !listDir("/etc/cni/net.d", "")->empty()) {
    return makeError("/etc/cni/net.d is not empty: this machine already has a CNI configuration");
  }
  if (!processesMentioning("kubelet --").empty() && fs::exists("/var/lib/kubelet/pods")) {
    return makeError("a kubelet already runs on this machine");
  }
  // What a node image ships in /opt/cni/bin (kubernetes-cni): the reference plugins the conflist
  // chains (portmap, bandwidth) and the ptp + host-local pair the timing comparison uses.
  fs::create_directories("/opt/cni/bin");
  for (const char* p : {"portmap", "bandwidth", "loopback", "ptp", "host-local"}) {
    fs::path dst = fs::path("/opt/cni/bin") / p;
    if (fs::exists(dst)) continue;
    std::error_code ec;
    fs::copy_file(fs::path("/usr/lib/cni") / p, dst, ec);
    if (ec) return makeError("copy /usr/lib/cni/" + std::string(p) + ": " + ec.message());
    fs::permissions(dst, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
    addedCniBins_.push_back(p);
  }
  fs::create_directories("/etc/cni/net.d");
  return Status::Ok();
}

Status Node::startControlPlane() {
  KubeApiOptions ko;
  ko.binDir = opts_.kubeBinDir;
  ko.runDir = runDir_ / "api";
  ko.address = ipv4_;
  ko.clusterRoleManifest = opts_.sourceDir / "manifests" / "sluice.yaml";
  ko.serviceAccounts = true;
  ko.kubeletClientCert = true;
  ko.tokenUsers = {{"system:node:" + name_, {"system:nodes"}}};
  ko.extraFlags = {"--feature-gates=IPv6DualStack=true", "--allow-privileged=false"};
  SLUICE_ASSIGN_OR_RETURN(api_, KubeApi::start(ko));
  // kubelet's user gets the node role (RBAC only; no Node authorizer in this API server).
  json binding = {{"apiVersion", "rbac.authorization.k8s.io/v1"},
                  {"kind", "ClusterRoleBinding"},
                  {"metadata", {{"name", "sluice-e2e-kubelet"}}},
                  {"roleRef",
                   {{"apiGroup", "rbac.authorization.k8s.io"},
                    {"kind", "ClusterRole"},
                    {"name", "system:node"}}},
                  {"subjects", json::array({{{"apiGroup", "rbac.authorization.k8s.io"},
                                             {"kind", "User"},
                                             {"name", "system:node:" + name_}}})}};
  SLUICE_RETURN_IF_ERROR(statusOf(api_->apply(binding.dump())));

  const fs::path api = runDir_ / "api";
  Command cm{{(opts_.kubeBinDir / "kube-controller-manager").string(),
              "--kubeconfig=" + api_->adminKubeconfig().string(),
              "--service-account-private-key-file=" + (api / "sa.key").string(),
              "--root-ca-file=" + api_->caFile().string(),
              // podCIDRs for usePodCidr: one IPv4 /24 and one IPv6 /64 per node.
              "--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56",
              "--node-cidr-mask-size-ipv4=24", "--node-cidr-mask-size-ipv6=64",
              "--service-cluster-ip-range=10.96.0.0/16", "--feature-gates=IPv6DualStack=true",
              "--leader-elect=false", "--port=0", "--secure-port=0", "--v=1"}};
  cm.outputFile = (runDir_ / "kube-controller-manager.log").string();
  SLUICE_ASSIGN_OR_RETURN(controllerManager_, spawn(cm));
  Command sched{{(opts_.kubeBinDir / "kube-scheduler").string(),
                 "--kubeconfig=" + api_->adminKubeconfig().string(), "--leader-elect=false",
                 "--port=0", "--secure-port=0", "--v=1"}};
  sched.outputFile = (runDir_ / "kube-scheduler.log").string();
  SLUICE_ASSIGN_OR_RETURN(scheduler_, spawn(sched));
  return Status::Ok();
}

Status Node::startContainerd() {
  const fs::path c = stateDir_ / "containerd";
  fs::create_directories(c);
  // Facts of these machines (issue 8): cgroupfs, no CAP_SYS_RESOURCE for negative OOM scores,
  // a local sandbox image; the CNI dirs are the standard ones the DaemonSet writes into.
  std::string config = R"(version = 2
root = ")" + (c / "root").string() +
                       R"("
state = ")" + (c / "state").string() +
                       R"("
[grpc]
  address = ")" + (c / "containerd.sock").string() +
                       R"("
[ttrpc]
  address = ")" + (c / "containerd.sock.ttrpc").string() +
                       R"("
[metrics]
  address = ")" + kMetricsAddr +
                       R"("
[plugins."io.containerd.internal.v1.opt"]
  path = ")" + (c / "opt").string() +
                       R"("
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.4"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
)";
  SLUICE_RETURN_IF_ERROR(writeText(runDir_ / "containerd.toml", config));
  Command cmd{{"containerd", "--config", (runDir_ / "containerd.toml").string()}};
  cmd.outputFile = (runDir_ / "containerd.log").string();
  // Appends across restarts (restartContainerd), so one log shows the whole run.
  SLUICE_ASSIGN_OR_RETURN(containerd_, spawn(cmd));
  auto deadline = Clock::now() + 30s;
  while (Clock::now() < deadline) {
    auto r = run(Command{{"ctr", "--address", (c / "containerd.sock").string(), "version"}}, 10s);
    if (r.ok() && r->exitCode == 0) return Status::Ok();
    if (!containerd_.running()) return makeError("containerd exited; see " + cmd.outputFile);
    std::this_thread::sleep_for(200ms);
  }
  return makeError("containerd not serving after 30 s; see " + cmd.outputFile);
}

Status Node::importImages() {
  const fs::path out = runDir_ / "images";
  Command build{{(opts_.sourceDir / "scripts" / "build-images.sh").string(),
                 opts_.buildDir.string(), opts_.kubeBinDir.string(), out.string()}};
  SLUICE_ASSIGN_OR_RETURN(RunResult r, run(build, 180s));
  if (r.exitCode != 0) return makeError("scripts/build-images.sh: " + r.err);
  for (const char* name : {"sluice", "busybox", "pause"}) {
    SLUICE_RETURN_IF_ERROR(runChecked(
        Command{{"ctr", "--address", (stateDir_ / "containerd" / "containerd.sock").string(), "-n",
                 "k8s.io", "images", "import", (out / (std::string(name) + ".oci.tar")).string()}},
        120s));
  }
  return Status::Ok();
}

Status Node::startKubelet() {
  const fs::path k = stateDir_ / "kubelet";
  fs::create_directories(k);
  std::string config = R"(apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: )" + ipv4_ + R"(
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: )" +
                       api_->caFile().string() + R"(}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
oomScoreAdj: 0
makeIPTablesUtilChains: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
volumePluginDir: )" + (k / "volume-plugins").string() +
                       R"(
resolvConf: /etc/resolv.conf
featureGates: {IPv6DualStack: true}
)";
  SLUICE_RETURN_IF_ERROR(writeText(runDir_ / "kubelet.yaml", config));
  Command cmd{{(opts_.kubeBinDir / "kubelet").string(),
               "--config=" + (runDir_ / "kubelet.yaml").string(),
               "--kubeconfig=" + api_->kubeconfigOf("system:node:" + name_).string(),
               "--container-runtime=remote",
               "--container-runtime-endpoint=unix://" +
                   (stateDir_ / "containerd" / "containerd.sock").string(),
               "--root-dir=" + k.string(), "--cert-dir=" + (k / "pki").string(),
               "--hostname-override=" + name_, "--node-ip=" + ipv4_ + "," + ipv6_,
               "--pod-infra-container-image=localhost/pause:3.4", "--v=1"}};
  cmd.outputFile = (runDir_ / "kubelet.log").string();
  SLUICE_ASSIGN_OR_RETURN(kubelet_, spawn(cmd));
  return Status::Ok();
}

Status Node::waitForNodeObject(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string last;
  while (Clock::now() < deadline) {
    auto r = api_->request("GET", "/api/v1/nodes/" + name_);
    if (r.ok() && r->first == 200) {
      json n = json::parse(r->second, nullptr, false);
      if (!n.is_discarded() && n["spec"].contains("podCIDRs")) return Status::Ok();
      last = "no podCIDRs yet";
    } else {
      last = r.ok() ? "HTTP " + std::to_string(r->first) : r.error().message;
    }
    if (!kubelet_.running())
      return makeError("kubelet exited; see " + (runDir_ / "kubelet.log").string());
    std::this_thread::sleep_for(250ms);
  }
  return makeError("Node " + name_ + " not registered with podCIDRs: " + last + "; see " +
                   (runDir_ / "kubelet.log").string());
}

Result<CommandOutput> Node::kubectl(const std::vector<std::string>& args,
                                    const std::string& stdinData,
                                    std::chrono::milliseconds timeout) {
  Command cmd{{(opts_.kubeBinDir / "kubectl").string(),
               "--kubeconfig=" + api_->adminKubeconfig().string()}};
  cmd.argv.insert(cmd.argv.end(), args.begin(), args.end());
  cmd.stdinData = stdinData;
  SLUICE_ASSIGN_OR_RETURN(RunResult r, run(cmd, timeout));
  return CommandOutput{r.exitCode, r.out, r.err};
}

Status Node::kubectlChecked(const std::vector<std::string>& args, const std::string& stdinData,
                            std::chrono::milliseconds timeout) {
  SLUICE_ASSIGN_OR_RETURN(CommandOutput r, kubectl(args, stdinData, timeout));
  if (r.exitCode != 0) {
    std::string a;
    for (const auto& s : args) a += " " + s;
    return makeError("kubectl" + a + ": exit " + std::to_string(r.exitCode) + ": " + r.err);
  }
  return Status::Ok();
}

Result<json> Node::kubectlJson(const std::vector<std::string>& args) {
  std::vector<std::string> a = args;
  a.insert(a.end(), {"-o", "json"});
  SLUICE_ASSIGN_OR_RETURN(CommandOutput r, kubectl(a));
  if (r.exitCode != 0) return makeError("kubectl " + args[0] + ": " + r.err);
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return makeError("kubectl " + args[0] + ": output is not JSON");
  return j;
}

Result<bool> Node::nodeReady() {
  SLUICE_ASSIGN_OR_RETURN(json n, kubectlJson({"get", "node", name_}));
  for (const auto& c : n["status"].value("conditions", json::array())) {
    if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
  }
  return false;
}

Status Node::waitNodeReady(bool ready, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto r = nodeReady();
    if (r.ok() && *r == ready) return Status::Ok();
    std::this_thread::sleep_for(200ms);
  }
  return makeError("Node " + name_ + " not " + (ready ? "Ready" : "NotReady") + " after " +
                   std::to_string(timeout.count()) + " ms");
}

Result<std::chrono::milliseconds> Node::installSluice(std::chrono::milliseconds timeout) {
  // README "Install on a cluster", step for step: where the API server is, then the manifests.
  SLUICE_RETURN_IF_ERROR(
      kubectlChecked({"-n", "kube-system", "create", "configmap", "sluice-kube-api",
                      "--from-literal=KUBERNETES_SERVICE_HOST=" + ipv4_,
                      "--from-literal=KUBERNETES_SERVICE_PORT=6443"}));
  auto start = Clock::now();
  SLUICE_RETURN_IF_ERROR(kubectlChecked({"apply", "-f", (opts_.sourceDir / "manifests").string()}));
  SLUICE_RETURN_IF_ERROR(waitNodeReady(true, timeout));
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

Status Node::restartKubelet() {
  kubelet_.stop(10s);
  SLUICE_RETURN_IF_ERROR(startKubelet());
  // Serving again (exec, logs) once its port answers.
  auto deadline = Clock::now() + 60s;
  while (Clock::now() < deadline) {
    if (kubeletMetrics().ok()) return Status::Ok();
    if (!kubelet_.running()) return makeError("kubelet exited after its restart");
    std::this_thread::sleep_for(200ms);
  }
  return makeError("kubelet not serving 60 s after its restart");
}

Status Node::restartContainerd() {
  containerd_.stop(10s);
  return startContainerd();
}

Result<std::string> Node::containerdMetrics() {
  SLUICE_ASSIGN_OR_RETURN(RunResult r,
                          run(Command{{"curl", "-sS", "--max-time", "10",
                                       std::string("http://") + kMetricsAddr + "/v1/metrics"}},
                              15s));
  if (r.exitCode != 0) return makeError("containerd metrics: " + r.err);
  return r.out;
}

Result<std::string> Node::kubeletMetrics() {
  // As the API server talks to kubelet: its client certificate, kubelet's self-signed serving one.
  const fs::path api = runDir_ / "api";
  SLUICE_ASSIGN_OR_RETURN(RunResult r, run(Command{{"curl", "-sS", "-k", "--max-time", "10",
                                                    "--cert", (api / "kubelet-client.crt").string(),
                                                    "--key", (api / "kubelet-client.key").string(),
                                                    "https://" + ipv4_ + ":10250/metrics"}},
                                           15s));
  if (r.exitCode != 0) return makeError("kubelet metrics: " + r.err);
  return r.out;
}

Status Node::deleteWorkloads(std::vector<std::string>& problems) {
  // Pods first, while the daemon still runs, so every CNI DEL finds it; then the install.
  auto ns = kubectlJson({"get", "namespaces"});
  if (ns.ok()) {
    for (const auto& n : (*ns)["items"]) {
      std::string name = n["metadata"].value("name", "");
      if (name.rfind("kube-", 0) == 0 || name == "default") continue;
      auto st = kubectlChecked({"delete", "namespace", name, "--wait=false"});
      if (!st.ok()) problems.push_back(st.error().message);
    }
  }
  auto st = kubectlChecked({"delete", "pods", "--all", "-n", "default", "--wait=false"});
  if (!st.ok()) problems.push_back(st.error().message);
  auto deadline = Clock::now() + 120s;
  while (Clock::now() < deadline) {
    auto pods = kubectlJson({"get", "pods", "-A"});
    if (!pods.ok()) break;
    int left = 0;
    for (const auto& p : (*pods)["items"]) {
      if (!p["spec"].value("hostNetwork", false)) ++left;
    }
    if (left == 0) break;
    std::this_thread::sleep_for(500ms);
  }
  st = kubectlChecked({"delete", "-f", (opts_.sourceDir / "manifests").string(), "--wait=true"}, "",
                      120s);
  if (!st.ok()) problems.push_back(st.error().message);
  deadline = Clock::now() + 60s;
  while (Clock::now() < deadline) {
    auto pods = kubectlJson({"get", "pods", "-n", "kube-system", "-l", "app=sluice"});
    if (!pods.ok() || (*pods)["items"].empty()) break;
    std::this_thread::sleep_for(500ms);
  }
  return Status::Ok();
}

std::vector<std::string> Node::stop() {
  std::vector<std::string> problems;
  if (stopped_) return problems;
  stopped_ = true;
  if (api_ && kubelet_.running()) (void)deleteWorkloads(problems);
  kubelet_.stop(10s);
  if (api_) {
    // Once kubelet is gone, so it does not register the Node again.
    auto st = kubectlChecked({"delete", "node", name_, "--wait=false"});
    if (!st.ok()) problems.push_back(st.error().message);
  }
  containerd_.stop(10s);
  // Shims (and the containers under them) outlive containerd; this run's have its socket path
  // on their command line.
  const std::string sock = (stateDir_ / "containerd").string();
  for (int pass = 0; pass < 3; ++pass) {
    auto pids = processesMentioning(sock);
    if (pids.empty()) break;
    for (pid_t p : pids) {
      if (p != getpid()) ::kill(p, SIGKILL);
    }
    std::this_thread::sleep_for(300ms);
  }
  scheduler_.stop(5s);
  controllerManager_.stop(5s);
  api_.reset();
  unmountUnder(stateDir_);
  std::error_code ec;
  fs::remove_all(stateDir_, ec);
  if (ec) problems.push_back("remove " + stateDir_.string() + ": " + ec.message());
  for (const auto& b : addedCniBins_) fs::remove(fs::path("/opt/cni/bin") / b, ec);
  auto restoreProblems = host_.restore();
  problems.insert(problems.end(), restoreProblems.begin(), restoreProblems.end());
  return problems;
}

}  // namespace sluice::e2e
