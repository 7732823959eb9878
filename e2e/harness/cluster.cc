#include "e2e/harness/cluster.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace sluice::e2e {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kRunPrefix = "slx";  // every resource of a run: slx<pid>-...
constexpr int kMaxNodes = 8;

std::string netnsPath(const std::string& name) { return "/run/netns/" + name; }

Status ip(std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  return runChecked(Command{args});
}

Status sysctlIn(const std::string& ns, const std::string& key, const std::string& value) {
  // /proc/sys/net is per network namespace: writing it from inside `ns` sets it there only.
  return runChecked(Command{{"sysctl", "-q", "-w", key + "=" + value}, {}, netnsPath(ns)});
}

std::string nodeV4(int i) { return "192.0.2." + std::to_string(10 + i); }
std::string nodeV6(int i) { return "2001:db8::" + std::to_string(10 + i); }
std::string podCidrV6(int i) { return "fd00:244:0:" + std::to_string(i) + "::/64"; }
std::string nodeName(int i) { return "n" + std::to_string(i); }
// Kube mode: the API server's address on the fabric bridge (same /24 as the nodes).
constexpr const char* kApiV4 = "192.0.2.250";
constexpr const char* kBarrierNs = "sluice-e2e-barrier";

Status writeFileAtomic(const fs::path& path, const std::string& data) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f) return makeError("write " + tmp.string());
    f << data;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return makeError("rename " + path.string() + ": " + ec.message());
  return Status::Ok();
}

bool pidAlive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// Removes namespaces, pin dirs and run dirs of earlier runs whose process is gone. Only names
// of our own form are considered, so nothing else on the machine is touched.
void removeLeftovers() {
  auto ownerOf = [](const std::string& name) -> pid_t {
    if (name.rfind(kRunPrefix, 0) != 0) return -1;
    size_t i = std::char_traits<char>::length(kRunPrefix), j = i;
    while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
    if (j == i || j >= name.size() || name[j] != '-') return -1;
    return static_cast<pid_t>(std::stol(name.substr(i, j - i)));
  };
  std::error_code ec;
  for (const char* dir : {"/run/netns", "/sys/fs/bpf", "/tmp"}) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::string name = e.path().filename();
      pid_t owner = ownerOf(name);
      if (owner <= 0 || pidAlive(owner)) continue;
      if (std::string(dir) == "/run/netns") {
        (void)runChecked(Command{{"ip", "netns", "delete", name}});
      } else {
        fs::remove_all(e.path(), ec);
      }
    }
  }
}

}  // namespace

std::string ClusterOptions::defaultDatapath() {
  const char* env = std::getenv("SLUICE_E2E_DATAPATH");
  return env && *env ? env : "bpf";
}

std::string SimCluster::podCidrV4(int node) {
  return "10.244." + std::to_string(node) + ".0/24";
}

Result<Child> SimCluster::spawnProbe(const std::string& podKey,
                                     const std::vector<std::string>& args,
                                     const std::string& outputFile) {
  const PodInfo* p = pod(podKey);
  if (!p) return makeError("no pod " + podKey);
  Command cmd{{binary("e2e/tools/sluice-probe").string()}};
  cmd.argv.insert(cmd.argv.end(), args.begin(), args.end());
  cmd.netns = netnsPath(p->netnsName);
  cmd.outputFile = outputFile;
  return spawn(cmd);
}

std::string Matrix::render(const Matrix* other) const {
  std::ostringstream out;
  size_t width = 4;
  for (const auto& p : pods) width = std::max(width, p.size());
  out << std::string(width + 2, ' ');
  for (size_t j = 0; j < pods.size(); ++j) out << (j < 10 ? " " : "") << j << " ";
  out << "\n";
  for (size_t i = 0; i < pods.size(); ++i) {
    out << pods[i] << std::string(width - pods[i].size(), ' ') << " " << (i < 10 ? " " : "") << i;
    for (size_t j = 0; j < pods.size(); ++j) {
      bool v = allowed[i][j];
      bool differs = other && i < other->allowed.size() && j < other->allowed[i].size() &&
                     other->allowed[i][j] != v && i != j;
      // A pod's traffic to itself stays on its own loopback: no CNI sees it, nothing to compare.
      const char* cell = i == j ? "-" : differs ? (v ? "!" : "x") : (v ? "." : "X");
      out << "  " << cell;
    }
    out << "\n";
  }
  return out.str();
}

SimCluster::SimCluster(ClusterOptions opts) : opts_(std::move(opts)) {
  prefix_ = std::string(kRunPrefix) + std::to_string(getpid()) + "-" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 100000);
  runDir_ = fs::path("/tmp") / prefix_;
  manifests_ = runDir_ / "manifests";
}

Result<std::unique_ptr<SimCluster>> SimCluster::create(const ClusterOptions& opts) {
  if (geteuid() != 0) return makeError("the simulated cluster needs root");
  if (opts.nodes < 1 || opts.nodes > kMaxNodes) return makeError("nodes must be 1..8");
  if (opts.datapath != "bpf" && opts.datapath != "nft") {
    return makeError("datapath (SLUICE_E2E_DATAPATH): want bpf or nft, got \"" + opts.datapath +
                     "\"");
  }
  removeLeftovers();
  std::unique_ptr<SimCluster> c(new SimCluster(opts));  // private constructor
  if (auto st = c->setUp(); !st.ok()) return st.error().wrap("set up cluster " + c->prefix_);
  return c;
}

SimCluster::~SimCluster() { tearDown(); }

std::string SimCluster::nodeNetns(int node) const {
  return netnsPath(prefix_ + "-" + nodeName(node));
}

fs::path SimCluster::daemonLog(int node) const {
  return runDir_ / nodeName(node) / "policyd.log";
}

IpAddr SimCluster::nodeAddress(int node, bool v6) {
  return IpAddr::parse(v6 ? nodeV6(node) : nodeV4(node)).value();
}

std::string SimCluster::bpfPinDir(int node) const {
  return "/sys/fs/bpf/" + prefix_ + "-" + nodeName(node);
}

Status SimCluster::setUp() {
  fs::create_directories(manifests_);
  std::string fab = prefix_ + "-fab";
  SLUICE_RETURN_IF_ERROR(ip({"netns", "add", fab}));
  fabricUp_ = true;
  SLUICE_RETURN_IF_ERROR(ip({"-n", fab, "link", "add", "br0", "type", "bridge"}));
  SLUICE_RETURN_IF_ERROR(ip({"-n", fab, "link", "set", "br0", "up"}));
  for (int i = 0; i < opts_.nodes; ++i) {
    std::string n = prefix_ + "-" + nodeName(i);
    fs::create_directories(runDir_ / nodeName(i) / "state");
    SLUICE_RETURN_IF_ERROR(ip({"netns", "add", n}));
    SLUICE_RETURN_IF_ERROR(ip({"-n", n, "link", "set", "lo", "up"}));
    SLUICE_RETURN_IF_ERROR(sysctlIn(n, "net.ipv4.ip_forward", "1"));
    SLUICE_RETURN_IF_ERROR(sysctlIn(n, "net.ipv6.conf.all.forwarding", "1"));
    SLUICE_RETURN_IF_ERROR(sysctlIn(n, "net.ipv6.conf.default.accept_dad", "0"));
    std::string port = "p" + std::to_string(i);
    SLUICE_RETURN_IF_ERROR(ip({"-n", fab, "link", "add", port, "type", "veth", "peer", "name",
                               "eth0", "netns", n}));
    SLUICE_RETURN_IF_ERROR(ip({"-n", fab, "link", "set", port, "master", "br0", "up"}));
    SLUICE_RETURN_IF_ERROR(ip({"-n", n, "addr", "add", nodeV4(i) + "/24", "dev", "eth0"}));
    SLUICE_RETURN_IF_ERROR(
        ip({"-n", n, "addr", "add", nodeV6(i) + "/64", "dev", "eth0", "nodad"}));
    SLUICE_RETURN_IF_ERROR(ip({"-n", n, "link", "set", "eth0", "up"}));
  }
  for (int i = 0; i < opts_.nodes; ++i) {
    std::string n = prefix_ + "-" + nodeName(i);
    for (int j = 0; j < opts_.nodes; ++j) {
      if (i == j) continue;
      SLUICE_RETURN_IF_ERROR(ip({"-n", n, "route", "add", podCidrV4(j), "via", nodeV4(j)}));
      SLUICE_RETURN_IF_ERROR(ip({"-n", n, "-6", "route", "add", podCidrV6(j), "via", nodeV6(j)}));
    }
  }
  if (opts_.source == "kube") SLUICE_RETURN_IF_ERROR(startKubeApi());
  for (int i = 0; i < opts_.nodes; ++i) {
    daemons_.emplace_back();
    SLUICE_RETURN_IF_ERROR(startDaemon(i));
  }
  return Status::Ok();
}

Status SimCluster::startKubeApi() {
  std::string fab = prefix_ + "-fab";
  SLUICE_RETURN_IF_ERROR(ip({"-n", fab, "link", "set", "lo", "up"}));
  SLUICE_RETURN_IF_ERROR(ip({"-n", fab, "addr", "add", std::string(kApiV4) + "/24", "dev", "br0"}));
  KubeApiOptions ko;
  ko.binDir = opts_.kubeBinDir.empty() ? findKubeBinDir() : opts_.kubeBinDir;
  if (ko.binDir.empty()) {
    return makeError("kube mode: no kube-apiserver build (run scripts/build-kube.sh)");
  }
  ko.runDir = runDir_ / "kube";
  ko.netns = netnsPath(fab);
  ko.address = kApiV4;
  ko.clusterRoleManifest = fs::path(SLUICE_SOURCE_DIR) / "manifests" / "sluice.yaml";
  SLUICE_ASSIGN_OR_RETURN(api_, KubeApi::start(ko));
  // Node objects as kubelet registers them: podCIDRs in spec, the InternalIP in status.
  for (int i = 0; i < opts_.nodes; ++i) {
    json node = {{"apiVersion", "v1"},
                 {"kind", "Node"},
                 {"metadata", {{"name", nodeName(i)}}},
                 {"spec",
                  {{"podCIDR", podCidrV4(i)},
                   {"podCIDRs", json::array({podCidrV4(i), podCidrV6(i)})}}}};
    SLUICE_RETURN_IF_ERROR(statusOf(api_->apply(node.dump())));
    json status = {{"addresses", json::array({{{"type", "InternalIP"}, {"address", nodeV4(i)}},
                                              {{"type", "InternalIP"}, {"address", nodeV6(i)}},
                                              {{"type", "Hostname"}, {"address", nodeName(i)}}})}};
    SLUICE_RETURN_IF_ERROR(statusOf(api_->patchStatus(ObjectRef{"Node", "", nodeName(i)}, status)));
  }
  // The sync barrier's objects (waitSyncedKube): they select and isolate nobody.
  json barrier = {
      {"apiVersion", "v1"},
      {"kind", "List"},
      {"items",
       json::array(
           {{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", kBarrierNs}}}},
            {{"apiVersion", "networking.k8s.io/v1"},
             {"kind", "NetworkPolicy"},
             {"metadata", {{"name", "barrier"}, {"namespace", kBarrierNs}}},
             {"spec",
              {{"podSelector", {{"matchLabels", {{"sluice-e2e-barrier", "selects-nothing"}}}}},
               {"policyTypes", json::array({"Ingress"})}}}},
            {{"apiVersion", "v1"},
             {"kind", "Pod"},
             {"metadata", {{"name", "barrier"}, {"namespace", kBarrierNs}}},
             {"spec",
              {{"nodeName", "no-such-node"},
               {"containers",
                json::array({{{"name", "app"}, {"image", "sluice-e2e/none"}}})}}}}})}};
  return statusOf(api_->apply(barrier.dump()));
}

Status SimCluster::startDaemon(int node, bool waitReady) {
  fs::path dir = runDir_ / nodeName(node);
  // A marker a killed daemon left behind must not pass for the new one's readiness (the daemon
  // removes it too, but only once it runs).
  std::error_code ignored;
  fs::remove(dir / "state" / "ready", ignored);
  Command cmd;
  cmd.argv = {binary("policyd/daemon/sluice-policyd").string(),
              "--node-name", nodeName(node),
              "--datapath", opts_.datapath,
              "--socket", (dir / "policyd.sock").string(),
              "--state-dir", (dir / "state").string(),
              "--bpf-pin-dir", "/sys/fs/bpf/" + prefix_ + "-" + nodeName(node),
              "--established", opts_.established,
              "--metrics-addr", "127.0.0.1:9090",
              "--flow-log", (dir / "flows.jsonl").string()};
  if (api_) {
    // The node's podCIDRs come from its Node object.
    cmd.argv.insert(cmd.argv.end(),
                    {"--source", "kube", "--kubeconfig", api_->nodeKubeconfig().string()});
  } else {
    cmd.argv.insert(cmd.argv.end(), {"--source", "dir:" + manifests_.string(), "--pod-cidr",
                                     podCidrV4(node), "--pod-cidr", podCidrV6(node)});
  }
  cmd.netns = nodeNetns(node);
  cmd.outputFile = daemonLog(node).string();
  SLUICE_ASSIGN_OR_RETURN(daemons_[node], spawn(cmd));
  if (!waitReady) return Status::Ok();
  // Ready = first snapshot compiled and applied (the daemon writes <state-dir>/ready).
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!fs::exists(dir / "state" / "ready")) {
    if (!daemons_[node].running()) {
      return makeError("sluice-policyd on " + nodeName(node) + " exited; see " +
                       daemonLog(node).string());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return makeError("sluice-policyd on " + nodeName(node) + " not ready after 20 s; see " +
                       daemonLog(node).string());
    }
    std::this_thread::sleep_for(20ms);
  }
  return Status::Ok();
}

Status SimCluster::stopDaemon(int node) {
  daemons_[node].stop();
  return Status::Ok();
}

fs::path SimCluster::stateDir(int node) const { return runDir_ / nodeName(node) / "state"; }

fs::path SimCluster::ipamDir(int node) const { return runDir_ / nodeName(node) / "ipam" / "sluice"; }

fs::path SimCluster::socketPath(int node) const {
  return runDir_ / nodeName(node) / "policyd.sock";
}

void SimCluster::killDaemon(int node) { daemons_[node].kill(); }

Result<PodInfo> SimCluster::createSandbox(const PodSpec& spec) {
  if (spec.node < 0 || spec.node >= opts_.nodes) return makeError("pod " + spec.name + ": no such node");
  PodInfo pod;
  pod.spec = spec;
  pod.netnsName = prefix_ + "-p" + std::to_string(nextPod_++);
  pod.containerId = pod.netnsName + "-" + spec.ns + "-" + spec.name;
  SLUICE_RETURN_IF_ERROR(writePodObject(pod));
  SLUICE_RETURN_IF_ERROR(ip({"netns", "add", pod.netnsName}));
  pods_[spec.ns + "/" + spec.name] = pod;
  SLUICE_RETURN_IF_ERROR(ip({"-n", pod.netnsName, "link", "set", "lo", "up"}));
  return pod;
}

Status SimCluster::removeSandbox(const std::string& key) {
  auto it = pods_.find(key);
  if (it == pods_.end()) return makeError("no pod " + key);
  servers_.erase(key);
  SLUICE_RETURN_IF_ERROR(ip({"netns", "delete", it->second.netnsName}));
  SLUICE_RETURN_IF_ERROR(
      removeManifest("pod-" + it->second.spec.ns + "." + it->second.spec.name + ".json"));
  pods_.erase(it);
  return Status::Ok();
}

void SimCluster::tearDown() {
  servers_.clear();
  for (auto& d : daemons_) d.stop();
  daemons_.clear();
  api_.reset();
  for (const auto& [key, pod] : pods_) (void)ip({"netns", "delete", pod.netnsName});
  pods_.clear();
  for (int i = 0; i < opts_.nodes; ++i) {
    (void)ip({"netns", "delete", prefix_ + "-" + nodeName(i)});
    std::error_code ec;
    fs::remove_all("/sys/fs/bpf/" + prefix_ + "-" + nodeName(i), ec);
  }
  if (fabricUp_) (void)ip({"netns", "delete", prefix_ + "-fab"});
  if (!opts_.keepLogs) {
    std::error_code ec;
    fs::remove_all(runDir_, ec);
  }
}

Status SimCluster::writeManifest(const std::string& file, const std::string& text) {
  if (api_) {
    SLUICE_ASSIGN_OR_RETURN(auto now, KubeApi::objectsOf(text));
    std::vector<ObjectRef> gone;
    for (const auto& ref : fileObjects_[file]) {
      if (std::find(now.begin(), now.end(), ref) == now.end()) gone.push_back(ref);
    }
    if (auto st = api_->remove(gone); !st.ok()) return st.error().wrap("kube: " + file);
    // Tracked before applying: on a rejected object the others of the file may be in place.
    fileObjects_[file] = now;
    auto applied = api_->apply(text);
    if (!applied.ok()) return applied.error().wrap("kube: " + file);
    lastWrite_ = std::move(applied).value();
  }
  SLUICE_RETURN_IF_ERROR(writeFileAtomic(manifests_ / file, text));
  return Status::Ok();
}

Status SimCluster::removeManifest(const std::string& file) {
  if (api_) {
    if (auto st = api_->remove(fileObjects_[file]); !st.ok()) {
      return st.error().wrap("kube: " + file);
    }
    fileObjects_.erase(file);
  }
  std::error_code ec;
  fs::remove(manifests_ / file, ec);
  if (ec) return makeError("remove " + file + ": " + ec.message());
  return Status::Ok();
}

Status SimCluster::setNamespaces(const std::map<std::string, std::map<std::string, std::string>>& ns) {
  json list = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", json::array()}};
  for (const auto& [name, labels] : ns) {
    list["items"].push_back({{"apiVersion", "v1"},
                             {"kind", "Namespace"},
                             {"metadata", {{"name", name}, {"labels", labels}}}});
  }
  return writeManifest("namespaces.json", list.dump(2));
}

Status SimCluster::writePodObject(const PodInfo& pod) {
  json ports = json::array();
  for (const auto& p : pod.spec.ports) {
    json port = {{"containerPort", p.port}, {"protocol", p.protocol}};
    if (!p.name.empty()) port["name"] = p.name;
    ports.push_back(port);
  }
  json ips = json::array();
  for (const auto& a : pod.ips) ips.push_back({{"ip", a.toString()}});
  json obj = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"namespace", pod.spec.ns}, {"name", pod.spec.name}, {"labels", pod.spec.labels}}},
              {"spec",
               {{"nodeName", nodeName(pod.spec.node)},
                {"containers", json::array({{{"name", "app"},
                                              {"image", "sluice-e2e/none"},
                                              {"ports", ports}}})}}}};
  if (!pod.ips.empty()) obj["status"] = {{"podIP", pod.ips[0].toString()}, {"podIPs", ips}};
  SLUICE_RETURN_IF_ERROR(
      writeManifest("pod-" + pod.spec.ns + "." + pod.spec.name + ".json", obj.dump(2)));
  if (api_ && !pod.ips.empty()) {
    // Status is a subresource: kubelet reports the addresses after the sandbox is up.
    std::vector<std::string> addrs;
    for (const auto& a : pod.ips) addrs.push_back(a.toString());
    SLUICE_RETURN_IF_ERROR(statusOf(api_->setPodIps(pod.spec.ns, pod.spec.name, addrs)));
  }
  return Status::Ok();
}

std::string SimCluster::pluginConfig(int node) const {
  fs::path dir = runDir_ / nodeName(node);
  json conf = {
      {"cniVersion", "1.1.0"},
      {"name", "sluice"},
      {"type", "sluice"},
      {"mtu", 1500},
      {"policySocket", (dir / "policyd.sock").string()},
      {"logFile", (dir / "cni.log").string()},
      {"ipam",
       {{"type", "sluice"},
        {"dataDir", (dir / "ipam").string()},
        {"ranges", json::array({json::array({{{"subnet", podCidrV4(node)}}}),
                                json::array({{{"subnet", podCidrV6(node)}}})})}}}};
  return conf.dump();
}

Result<RunResult> SimCluster::cni(const std::string& command, const PodInfo& pod) {
  Command cmd;
  cmd.argv = {binary("cni/sluice").string()};
  cmd.env = {{"CNI_COMMAND", command},
             {"CNI_CONTAINERID", pod.containerId},
             {"CNI_NETNS", netnsPath(pod.netnsName)},
             {"CNI_IFNAME", "eth0"},
             {"CNI_PATH", binary("cni").string() + ":/usr/lib/cni"},
             {"CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=" + pod.spec.ns +
                              ";K8S_POD_NAME=" + pod.spec.name +
                              ";K8S_POD_UID=uid-" + pod.containerId}};
  cmd.netns = nodeNetns(pod.spec.node);
  cmd.stdinData = pluginConfig(pod.spec.node);
  return run(cmd, 30s);
}

Result<PodInfo> SimCluster::addPod(const PodSpec& spec, const std::vector<uint16_t>& tcpPorts,
                                   const std::vector<uint16_t>& udpPorts) {
  if (spec.node < 0 || spec.node >= opts_.nodes) return makeError("pod " + spec.name + ": no such node");
  PodInfo pod;
  pod.spec = spec;
  pod.netnsName = prefix_ + "-p" + std::to_string(nextPod_++);
  pod.containerId = pod.netnsName + "-" + spec.ns + "-" + spec.name;
  std::string key = spec.ns + "/" + spec.name;
  // The API server knows the pod (labels, node) before the runtime calls CNI; its addresses
  // appear in status once the kubelet reports them.
  SLUICE_RETURN_IF_ERROR(writePodObject(pod));
  SLUICE_RETURN_IF_ERROR(ip({"netns", "add", pod.netnsName}));
  pods_[key] = pod;
  SLUICE_RETURN_IF_ERROR(ip({"-n", pod.netnsName, "link", "set", "lo", "up"}));

  std::string tcpList, udpList;
  for (auto p : tcpPorts) tcpList += (tcpList.empty() ? "" : ",") + std::to_string(p);
  for (auto p : udpPorts) udpList += (udpList.empty() ? "" : ",") + std::to_string(p);
  Command serve{{binary("e2e/tools/sluice-probe").string(), "serve", "--tcp", tcpList, "--udp", udpList}};
  serve.netns = netnsPath(pod.netnsName);
  if (!spec.serverLog.empty()) {
    serve.argv.push_back("--log");
    serve.outputFile = spec.serverLog;
    SLUICE_ASSIGN_OR_RETURN(servers_[key], spawn(serve));
  }

  SLUICE_ASSIGN_OR_RETURN(RunResult r, cni("ADD", pod));
  if (r.exitCode != 0) return makeError("CNI ADD " + key + " failed: " + r.out + r.err);
  json result = json::parse(r.out, nullptr, false);
  if (result.is_discarded() || !result.contains("ips")) return makeError("CNI ADD " + key + ": bad result " + r.out);
  for (const auto& e : result["ips"]) {
    std::string addr = e.value("address", "");
    auto p = Prefix::parse(addr, true);
    if (!p.ok()) return makeError("CNI ADD " + key + ": bad address " + addr);
    pod.ips.push_back(IpAddr::parse(addr.substr(0, addr.find('/'))).value());
  }
  for (const auto& i : result.value("interfaces", json::array())) {
    if (!i.contains("sandbox")) pod.hostVeth = i.value("name", "");
  }
  std::sort(pod.ips.begin(), pod.ips.end(),
            [](const IpAddr& a, const IpAddr& b) { return a.isV4() > b.isV4(); });
  pods_[key] = pod;
  SLUICE_RETURN_IF_ERROR(writePodObject(pod));
  if (spec.serverLog.empty()) {
    SLUICE_ASSIGN_OR_RETURN(servers_[key], spawn(serve));
  }
  // Wait for the listener over the pod's own loopback (never crosses the veth).
  if (!tcpPorts.empty()) {
    for (int i = 0; i < 100; ++i) {
      Command check{{binary("e2e/tools/sluice-probe").string(), "probe", "--timeout-ms", "200",
                     "tcp:127.0.0.1:" + std::to_string(tcpPorts[0])}};
      check.netns = serve.netns;
      SLUICE_ASSIGN_OR_RETURN(RunResult cr, run(check, 5s));
      if (cr.out.find(" ok") != std::string::npos) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  return pod;
}

Status SimCluster::deletePod(const std::string& ns, const std::string& name) {
  std::string key = ns + "/" + name;
  auto it = pods_.find(key);
  if (it == pods_.end()) return makeError("no pod " + key);
  servers_.erase(key);
  SLUICE_ASSIGN_OR_RETURN(RunResult r, cni("DEL", it->second));
  if (r.exitCode != 0) return makeError("CNI DEL " + key + " failed: " + r.out + r.err);
  SLUICE_RETURN_IF_ERROR(ip({"netns", "delete", it->second.netnsName}));
  SLUICE_RETURN_IF_ERROR(removeManifest("pod-" + ns + "." + name + ".json"));
  pods_.erase(it);
  return Status::Ok();
}

Status SimCluster::relabelPod(const std::string& ns, const std::string& name,
                              const std::map<std::string, std::string>& labels) {
  auto it = pods_.find(ns + "/" + name);
  if (it == pods_.end()) return makeError("no pod " + ns + "/" + name);
  it->second.spec.labels = labels;
  return writePodObject(it->second);
}

const PodInfo* SimCluster::pod(const std::string& key) const {
  auto it = pods_.find(key);
  return it == pods_.end() ? nullptr : &it->second;
}

Status SimCluster::waitSynced(std::chrono::milliseconds timeout) {
  return api_ ? waitSyncedKube(timeout) : waitSyncedDir(timeout);
}

Status SimCluster::waitSyncedKube(std::chrono::milliseconds timeout) {
  // Each watch delivers its kind's events in resourceVersion order, and etcd revisions grow
  // across kinds. Bumping one barrier object of each kind after every write we made gives, per
  // kind, a resourceVersion that is newer than all of them; a daemon whose applied snapshot has
  // seen that version of every kind has applied everything written before.
  std::map<std::string, uint64_t> target;
  ++syncRound_;
  const std::string note = std::to_string(syncRound_);
  const std::vector<std::pair<std::string, ObjectRef>> barriers = {
      {"namespaces", {"Namespace", "", kBarrierNs}},
      {"pods", {"Pod", kBarrierNs, "barrier"}},
      {"networkpolicies", {"NetworkPolicy", kBarrierNs, "barrier"}}};
  for (const auto& [resource, ref] : barriers) {
    json patch = {{"metadata", {{"annotations", {{"sluice.io/e2e-barrier", note}}}}}};
    std::string path = ref.kind == "Namespace" ? "/api/v1/namespaces/" + ref.name
                       : ref.kind == "Pod"
                           ? "/api/v1/namespaces/" + ref.ns + "/pods/" + ref.name
                           : "/apis/networking.k8s.io/v1/namespaces/" + ref.ns +
                                 "/networkpolicies/" + ref.name;
    SLUICE_ASSIGN_OR_RETURN(auto r, api_->request("PATCH", path, patch.dump(),
                                                  "application/merge-patch+json"));
    if (r.first != 200) return makeError("barrier " + ref.str() + ": HTTP " + std::to_string(r.first));
    json obj = json::parse(r.second, nullptr, false);
    target[resource] = std::stoull(obj["metadata"].value("resourceVersion", "0"));
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string detail;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    detail.clear();
    for (int i = 0; i < opts_.nodes && all; ++i) {
      std::ifstream f(runDir_ / nodeName(i) / "state" / "applied-versions.json");
      std::stringstream text;
      text << f.rdbuf();
      json applied = json::parse(text.str(), nullptr, false);
      for (const auto& [resource, rv] : target) {
        uint64_t have = 0;
        if (applied.is_object() && applied.contains(resource) && applied[resource].is_string()) {
          have = std::strtoull(applied[resource].get<std::string>().c_str(), nullptr, 10);
        }
        if (have < rv) {
          all = false;
          detail = nodeName(i) + " " + resource + " " + std::to_string(have) + " < " +
                   std::to_string(rv);
          break;
        }
      }
    }
    if (all) return Status::Ok();
    std::this_thread::sleep_for(5ms);
  }
  return makeError("daemons did not apply the API's objects in time (" + detail + "); see " +
                   daemonLog(0).string());
}

Status SimCluster::waitSyncedDir(std::chrono::milliseconds timeout) {
  // Each daemon records in <state-dir>/applied the wall-clock time (ns) at which its source
  // began reading the state it last applied. We read the clock, then write a no-op manifest (a
  // comment) to make every daemon read again, and wait for a read that began after that clock
  // read: it holds every change written before waitSynced was called. The clock is read before
  // the write because the directory source reads at once on the write's event (no debounce):
  // that read may begin before a clock read taken after the write returned. Should a read still
  // be missed, the barrier is re-armed with a fresh write until the deadline.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto wallNs = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  std::vector<long long> seen(opts_.nodes, 0);
  while (std::chrono::steady_clock::now() < deadline) {
    long long target = wallNs();
    SLUICE_RETURN_IF_ERROR(
        writeManifest("zz-sync.yaml", "# harness sync barrier " + std::to_string(++syncRound_) + "\n"));
    auto roundEnd = std::min(deadline, std::chrono::steady_clock::now() + 3s);
    bool all = false;
    while (!all && std::chrono::steady_clock::now() < roundEnd) {
      all = true;
      for (int i = 0; i < opts_.nodes; ++i) {
        std::ifstream f(runDir_ / nodeName(i) / "state" / "applied");
        long long at = 0;
        if (f >> at) seen[i] = at;
        if (at < target) all = false;
      }
      if (!all) std::this_thread::sleep_for(5ms);
    }
    if (all) return Status::Ok();
  }
  std::string detail;
  for (int i = 0; i < opts_.nodes; ++i) detail += " " + nodeName(i) + "=" + std::to_string(seen[i]);
  return makeError("daemons did not apply the manifests in time (applied:" + detail + "); see " +
                   daemonLog(0).string());
}

Result<std::string> SimCluster::probeFromNetns(const std::string& netnsPath, const IpAddr& target,
                                               uint16_t port, const std::string& protocol,
                                               int timeoutMs) {
  std::string proto = protocol == "UDP" ? "udp" : "tcp";
  std::string addr = target.isV4() ? target.toString() : "[" + target.toString() + "]";
  Command cmd{{binary("e2e/tools/sluice-probe").string(), "probe", "--timeout-ms",
               std::to_string(timeoutMs), proto + ":" + addr + ":" + std::to_string(port)}};
  cmd.netns = netnsPath;
  SLUICE_ASSIGN_OR_RETURN(RunResult r, run(cmd, std::chrono::milliseconds(timeoutMs + 5000)));
  auto sp = r.out.rfind(' ');
  if (r.exitCode != 0 || sp == std::string::npos) return makeError("probe failed: " + r.out + r.err);
  std::string outcome = r.out.substr(sp + 1);
  while (!outcome.empty() && outcome.back() == '\n') outcome.pop_back();
  return outcome;
}

Result<Matrix> SimCluster::measure(uint16_t port, const std::string& protocol, bool v6,
                                   int timeoutMs) {
  Matrix m;
  std::vector<const PodInfo*> order;
  for (const auto& [key, pod] : pods_) {
    m.pods.push_back(key);
    order.push_back(&pod);
  }
  std::string proto = protocol == "UDP" ? "udp" : "tcp";
  auto addrOf = [&](const PodInfo& p) -> std::optional<std::string> {
    for (const auto& a : p.ips) {
      if (a.isV4() != v6) return a.isV4() ? a.toString() : "[" + a.toString() + "]";
    }
    return std::nullopt;
  };
  std::vector<std::future<Result<RunResult>>> jobs;
  for (const auto* src : order) {
    Command cmd{{binary("e2e/tools/sluice-probe").string(), "probe", "--timeout-ms",
                 std::to_string(timeoutMs)}};
    for (const auto* dst : order) {
      auto a = addrOf(*dst);
      if (!a) return makeError("pod " + dst->spec.name + " has no address of that family");
      cmd.argv.push_back(proto + ":" + *a + ":" + std::to_string(port));
    }
    cmd.netns = netnsPath(src->netnsName);
    jobs.push_back(std::async(std::launch::async, [cmd] { return run(cmd, 30s); }));
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto r = jobs[i].get();
    if (!r.ok()) return r.error();
    std::istringstream lines(r->out);
    std::vector<bool> row;
    std::string target, outcome;
    while (lines >> target >> outcome) row.push_back(outcome == "ok");
    if (row.size() != order.size()) return makeError("probe from " + m.pods[i] + " gave " + r->out + r->err);
    m.allowed.push_back(row);
  }
  return m;
}

Result<Matrix> SimCluster::predict(const std::string& port, const std::string& protocol) {
  Command cmd{{binary("policyd/ctl/sluicectl").string(), "matrix", "-f", manifests_.string(),
               "--port", port, "--protocol", protocol, "-o", "json"}};
  SLUICE_ASSIGN_OR_RETURN(RunResult r, run(cmd, 30s));
  if (r.exitCode != 0) return makeError("sluicectl matrix exited " + std::to_string(r.exitCode) + ": " + r.err);
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return makeError("sluicectl matrix: bad JSON: " + r.out);
  Matrix m;
  try {
    m.pods = j.at("pods").get<std::vector<std::string>>();
    m.allowed = j.at("allowed").get<std::vector<std::vector<bool>>>();
  } catch (const json::exception& e) {
    return makeError(std::string("sluicectl matrix JSON: ") + e.what());
  }
  return m;
}

}  // namespace sluice::e2e
