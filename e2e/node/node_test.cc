// e2e.node: Sluice on a real Kubernetes node (issue 8). etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd and kubelet run on this machine; Sluice is
// installed with `kubectl apply -f manifests/` from an image built here; everything after that is
// done with kubectl, as an operator would: busybox pods, NetworkPolicies, probes by
// `kubectl exec`, verdicts compared with `sluicectl matrix --kubeconfig` on the live objects.
//
// The tests share one node and run in order (later ones build on the pods of earlier ones); the
// last one stops the node and checks the machine is as it was found.
#include "e2e/node/node.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "common/file_util.h"

namespace sluice::e2e {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Where scripts/build-kube.sh cached every component this suite needs, or empty.
fs::path kubeBinDir() {
  const std::vector<std::string> need = {
      "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "pause"};
  auto complete = [&](const fs::path& d) {
    return std::all_of(need.begin(), need.end(),
                       [&](const std::string& c) { return fs::exists(d / c); });
  };
  if (const char* env = std::getenv("SLUICE_KUBE_BIN_DIR"); env && *env) {
    return complete(env) ? fs::path(env) : fs::path();
  }
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/var/cache/sluice", ec)) {
    if (e.path().filename().string().rfind("kubernetes-", 0) == 0 && complete(e.path() / "bin")) {
      found.push_back(e.path() / "bin");
    }
  }
  std::sort(found.begin(), found.end());
  return found.empty() ? fs::path() : found.back();
}

// A busybox pod serving HTTP on 80 and 81 (container ports named serve-80, serve-81).
std::string serverPod(const std::string& ns, const std::string& name,
                      const std::map<std::string, std::string>& labels) {
  std::string l;
  for (const auto& [k, v] : labels) l += (l.empty() ? "" : ", ") + k + ": \"" + v + "\"";
  return R"(
apiVersion: v1
kind: Pod
metadata: {name: ")" +
         name + R"(", namespace: ")" + ns + R"(", labels: {)" + l + R"(}}
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  dnsPolicy: Default
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: localhost/busybox:1.35
    command: [sh, -c]
    args:
    - mkdir -p /www && hostname > /www/index.html && httpd -p 80 -h /www && httpd -p 81 -h /www
      && trap 'exit 0' TERM && while true; do sleep 1 & wait $!; done
    ports:
    - {name: serve-80, containerPort: 80}
    - {name: serve-81, containerPort: 81}
    readinessProbe:
      tcpSocket: {port: 80}
      periodSeconds: 1
)";
}

struct PodAddr {
  std::string key;  // ns/name
  std::string v4;
  std::string v6;
};

class RealNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines show up as they happen
    if (geteuid() != 0) {
      skipReason_ = "needs root (kubelet, containerd, CNI in the root namespace)";
      return;
    }
    fs::path bin = kubeBinDir();
    if (bin.empty()) {
      skipReason_ =
          "no cached kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl "
          "and pause: run scripts/build-kube.sh kube-apiserver kube-controller-manager "
          "kube-scheduler kubelet kubectl pause (scripts/test.sh does)";
      return;
    }
    NodeOptions o;
    o.kubeBinDir = bin;
    o.sourceDir = SLUICE_SOURCE_DIR;
    o.buildDir = SLUICE_BINARY_DIR;
    o.runPrefix = "sluice-e2e-node-" + std::to_string(getpid());
    auto t0 = Clock::now();
    auto n = Node::start(o);
    if (!n.ok()) {
      startError_ = "node did not start: " + n.error().message;
      return;
    }
    node_ = std::move(n).value().release();
    std::printf("[ node ] control plane + containerd + kubelet up in %.0f ms (node %s, %s, %s)\n",
                msSince(t0), node_->name().c_str(), node_->ipv4().c_str(), node_->ipv6().c_str());
    // Before the install the runtime has no network config: the node must be NotReady.
    auto ready = node_->nodeReady();
    notReadyBeforeInstall_ = ready.ok() && !*ready;
    conflistBeforeInstall_ = fs::exists("/etc/cni/net.d/10-sluice.conflist");
    auto took = node_->installSluice(180s);
    if (!took.ok()) {
      startError_ = "install: " + took.error().message;
      return;
    }
    readyAfterApply_ = *took;
    std::printf("[ node ] Ready %lld ms after kubectl apply -f manifests/\n",
                static_cast<long long>(readyAfterApply_.count()));
  }

  static void TearDownTestSuite() {
    if (node_) {
      std::printf("[ node ] logs kept in %s\n", node_->runDir().c_str());
      for (const auto& p : node_->stop()) std::printf("[ node ] cleanup: %s\n", p.c_str());
      delete node_;
      node_ = nullptr;
    }
  }

  void SetUp() override {
    if (!skipReason_.empty()) GTEST_SKIP() << skipReason_;
    ASSERT_TRUE(startError_.empty()) << startError_;
    ASSERT_NE(node_, nullptr) << "the node was stopped by an earlier test";
  }

  static Node& node() { return *node_; }

  static void apply(const std::string& yaml) {
    auto st = node().kubectlChecked({"apply", "-f", "-"}, yaml);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }

  // Waits until every pod in `keys` (ns/name) is Ready; returns their addresses.
  static std::vector<PodAddr> waitPodsReady(const std::vector<std::string>& keys,
                                            std::chrono::milliseconds timeout = 120s) {
    std::vector<PodAddr> out;
    auto deadline = Clock::now() + timeout;
    std::string last;
    while (Clock::now() < deadline) {
      out.clear();
      auto pods = node().kubectlJson({"get", "pods", "-A"});
      if (!pods.ok()) {
        last = pods.error().message;
        continue;
      }
      std::map<std::string, json> byKey;
      for (const auto& p : (*pods)["items"]) {
        byKey[p["metadata"].value("namespace", "") + "/" + p["metadata"].value("name", "")] = p;
      }
      bool all = true;
      for (const auto& k : keys) {
        auto it = byKey.find(k);
        bool ready = false;
        PodAddr a{k, "", ""};
        if (it != byKey.end()) {
          const json& st = it->second["status"];
          for (const auto& c : st.value("conditions", json::array())) {
            if (c.value("type", "") == "Ready" && c.value("status", "") == "True") ready = true;
          }
          for (const auto& ip : st.value("podIPs", json::array())) {
            std::string s = ip.value("ip", "");
            (s.find(':') == std::string::npos ? a.v4 : a.v6) = s;
          }
        }
        if (!ready || a.v4.empty() || a.v6.empty()) {
          all = false;
          last = k + " not Ready with two addresses";
          break;
        }
        out.push_back(a);
      }
      if (all) return out;
      std::this_thread::sleep_for(300ms);
    }
    ADD_FAILURE() << "pods not ready: " << last;
    return {};
  }

  // Bumps one barrier object per kind the daemon watches and waits until the daemon's applied
  // snapshot has seen each (etcd revisions grow across kinds and each watch is in order, so it
  // has then seen every write made before). The barrier Pod selects no node, so it is never
  // scheduled (a Pod bound to a missing node would be garbage-collected).
  static void waitEnforced(std::chrono::milliseconds timeout = 30s) {
    static int round = 0;
    ++round;
    std::map<std::string, uint64_t> target;
    for (const auto& [resource, kind, name] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"namespaces", "namespace", "e2e-barrier"},
             {"pods", "pod", "barrier"},
             {"networkpolicies", "networkpolicy", "barrier"}}) {
      std::vector<std::string> args = {"annotate",
                                       "--overwrite",
                                       "-o",
                                       "json",
                                       kind,
                                       name,
                                       "sluice.io/e2e-barrier=" + std::to_string(round)};
      if (kind != "namespace") args.insert(args.begin(), {"-n", "e2e-barrier"});
      auto r = node().kubectl(args);
      ASSERT_TRUE(r.ok() && r->exitCode == 0) << (r.ok() ? r->err : r.error().message);
      json obj = json::parse(r->out, nullptr, false);
      ASSERT_FALSE(obj.is_discarded());
      target[resource] = std::stoull(obj["metadata"].value("resourceVersion", "0"));
    }
    auto deadline = Clock::now() + timeout;
    std::string detail;
    while (Clock::now() < deadline) {
      auto text = readFile("/var/lib/sluice/applied-versions.json");
      json applied = text.ok() ? json::parse(*text, nullptr, false) : json();
      bool all = true;
      for (const auto& [resource, rv] : target) {
        uint64_t have = 0;
        if (applied.is_object() && applied.contains(resource) && applied[resource].is_string()) {
          have = std::stoull(applied[resource].get<std::string>());
        }
        if (have < rv) {
          all = false;
          detail = resource + " " + std::to_string(have) + " < " + std::to_string(rv);
        }
      }
      if (all) return;
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "the daemon did not apply the cluster's objects in time: " << detail;
  }

  // Runs in `from` one wget per target (ip or [ip6]:port) at once; returns target -> reached.
  static std::map<std::string, bool> probeFrom(const std::string& from,
                                               const std::vector<std::string>& targets) {
    std::string script;
    for (const auto& t : targets) {
      // busybox 1.35's wget -T crashes; timeout bounds a dropped SYN instead.
      script += "(timeout 2 wget -q -O /dev/null http://" + t + "/ 2>/dev/null && echo '" + t +
                " 1' || echo '" + t + " 0') & ";
    }
    script += "wait";
    auto slash = from.find('/');
    auto r = node().kubectl(
        {"exec", "-n", from.substr(0, slash), from.substr(slash + 1), "--", "sh", "-c", script}, "",
        60s);
    std::map<std::string, bool> out;
    if (!r.ok() || r->exitCode != 0) {
      ADD_FAILURE() << "kubectl exec " << from << ": " << (r.ok() ? r->err : r.error().message);
      return out;
    }
    std::istringstream s(r->out);
    std::string target, bit;
    while (s >> target >> bit) out[target] = bit == "1";
    return out;
  }

  // sluicectl matrix on the live cluster: allowed[from][to] for the given pods.
  static std::map<std::string, std::map<std::string, bool>> expectedMatrix(
      const std::string& port) {
    Command cmd{{std::string(SLUICE_BINARY_DIR) + "/policyd/ctl/sluicectl", "matrix",
                 "--kubeconfig", node().adminKubeconfig().string(), "--port", port, "-o", "json"}};
    std::map<std::string, std::map<std::string, bool>> m;
    auto r = run(cmd, 60s);
    if (!r.ok() || r->exitCode != 0) {
      ADD_FAILURE() << "sluicectl matrix: " << (r.ok() ? r->err : r.error().message);
      return m;
    }
    json j = json::parse(r->out, nullptr, false);
    if (j.is_discarded()) {
      ADD_FAILURE() << "sluicectl matrix: not JSON: " << r->out;
      return m;
    }
    auto pods = j["pods"].get<std::vector<std::string>>();
    for (size_t i = 0; i < pods.size(); ++i) {
      for (size_t k = 0; k < pods.size(); ++k) m[pods[i]][pods[k]] = j["allowed"][i][k].get<bool>();
    }
    return m;
  }

  // Probes every ordered pair of `pods` (both families) on `port` and compares each verdict with
  // sluicectl's. Returns the number of allowed pairs measured (IPv4), for sanity checks.
  static int checkMatrix(const std::vector<PodAddr>& pods, const std::string& port,
                         const std::string& portName = "") {
    auto expected = expectedMatrix(portName.empty() ? port : portName);
    std::vector<std::future<std::map<std::string, bool>>> results;
    for (const auto& from : pods) {
      std::vector<std::string> targets;
      for (const auto& to : pods) {
        if (to.key == from.key) continue;
        targets.push_back(to.v4 + ":" + port);
        targets.push_back("[" + to.v6 + "]:" + port);
      }
      results.push_back(
          std::async(std::launch::async, [from, targets] { return probeFrom(from.key, targets); }));
    }
    int allowed = 0;
    int wrong = 0;
    std::ostringstream table;
    for (size_t i = 0; i < pods.size(); ++i) {
      auto got = results[i].get();
      for (const auto& to : pods) {
        if (to.key == pods[i].key) continue;
        auto ex = expected[pods[i].key].find(to.key);
        if (ex == expected[pods[i].key].end()) {
          ADD_FAILURE() << "sluicectl matrix has no " << pods[i].key << " -> " << to.key;
          continue;
        }
        bool v4 = got[to.v4 + ":" + port];
        bool v6 = got["[" + to.v6 + "]:" + port];
        allowed += v4 ? 1 : 0;
        if (v4 != ex->second || v6 != ex->second) {
          ++wrong;
          table << "  " << pods[i].key << " -> " << to.key << ":" << port << " expected "
                << ex->second << " got v4=" << v4 << " v6=" << v6 << "\n";
        }
      }
    }
    EXPECT_EQ(wrong, 0) << "verdicts that differ from sluicectl matrix:\n" << table.str();
    return allowed;
  }

  static inline Node* node_ = nullptr;
  static inline std::string skipReason_;
  static inline std::string startError_;
  static inline std::chrono::milliseconds readyAfterApply_{0};
  static inline bool notReadyBeforeInstall_ = false;
  static inline bool conflistBeforeInstall_ = false;
  static inline std::vector<PodAddr> pods_;  // x/a x/b x/c y/a y/b y/c
};

TEST_F(RealNodeTest, InstallFromManifestsTurnsTheNodeReady) {
  EXPECT_TRUE(notReadyBeforeInstall_) << "the node was Ready before Sluice was installed";
  EXPECT_FALSE(conflistBeforeInstall_);
  EXPECT_GT(readyAfterApply_.count(), 0);
  RecordProperty("node_ready_after_apply_ms", std::to_string(readyAfterApply_.count()));
  // The DaemonSet's pod is Running and Ready, not privileged, and installed the plugin only after
  // policyd was ready.
  auto pods = node().kubectlJson({"get", "pods", "-n", "kube-system", "-l", "app=sluice"});
  ASSERT_TRUE(pods.ok()) << pods.error().message;
  ASSERT_EQ((*pods)["items"].size(), 1u);
  const json& pod = (*pods)["items"][0];
  for (const auto& c : pod["spec"]["containers"]) {
    EXPECT_FALSE(c.value("securityContext", json::object()).value("privileged", false));
  }
  std::string podName = pod["metadata"].value("name", "");
  auto logs = node().kubectl({"logs", "-n", "kube-system", podName, "-c", "install-cni"});
  ASSERT_TRUE(logs.ok());
  EXPECT_NE(logs->out.find("daemon ready; installed"), std::string::npos) << logs->out;
  EXPECT_TRUE(fs::exists("/opt/cni/bin/sluice"));
  EXPECT_TRUE(fs::exists("/etc/cni/net.d/10-sluice.conflist"));
  EXPECT_FALSE(fs::exists("/etc/cni/net.d/.10-sluice.conflist.tmp"));
  // The barrier objects waitEnforced() bumps.
  apply(R"(
apiVersion: v1
kind: Namespace
metadata: {name: e2e-barrier}
---
apiVersion: v1
kind: Pod
metadata: {name: barrier, namespace: e2e-barrier}
spec:
  nodeSelector: {sluice.io/e2e-barrier: never}
  automountServiceAccountToken: false
  containers: [{name: c, image: localhost/busybox:1.35}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: barrier, namespace: e2e-barrier}
spec:
  podSelector: {matchLabels: {none: none}}
)");
}

TEST_F(RealNodeTest, PodsGetDualStackAddressesAndReachEachOtherAndTheNode) {
  std::string yaml = R"(
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: "y", labels: {ns: "y"}}
)";
  // The namespaces' default ServiceAccount must exist before pods are admitted into them.
  apply(yaml);
  for (const char* ns : {"x", "y"}) {
    auto deadline = Clock::now() + 30s;
    while (Clock::now() < deadline &&
           !node().kubectlChecked({"get", "serviceaccount", "default", "-n", ns}).ok()) {
      std::this_thread::sleep_for(200ms);
    }
  }
  std::string pods;
  std::vector<std::string> keys;
  for (const char* ns : {"x", "y"}) {
    for (const char* p : {"a", "b", "c"}) {
      pods += "---\n" + serverPod(ns, p, {{"pod", p}});
      keys.push_back(std::string(ns) + "/" + p);
    }
  }
  auto t0 = Clock::now();
  apply(pods);
  pods_ = waitPodsReady(keys);
  ASSERT_EQ(pods_.size(), 6u);
  std::printf("[ node ] 6 pods Ready %.0f ms after apply\n", msSince(t0));
  // Addresses from this node's podCIDRs (Sluice IPAM, usePodCidr).
  for (const auto& p : pods_) {
    EXPECT_EQ(p.v4.rfind("10.244.", 0), 0u) << p.key << " " << p.v4;
    EXPECT_EQ(p.v6.rfind("fd00:10:244:", 0), 0u) << p.key << " " << p.v6;
  }
  // No policies: everything reaches everything, both families (and the readiness probes above
  // prove the node reaches the pods).
  waitEnforced();
  int allowed = checkMatrix(pods_, "80");
  EXPECT_EQ(allowed, 30);
  // Pods reach the node's own addresses.
  for (const auto& target : {node().ipv4(), node().ipv6()}) {
    auto r = node().kubectl({"exec", "-n", "x", "a", "--", "ping", "-c", "1", "-W", "2", target});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->exitCode, 0) << "x/a cannot ping the node at " << target << ": " << r->out
                              << r->err;
  }
}

// The upstream-style conformance subset: each step changes the policies through kubectl, waits
// until the daemon has applied the cluster's state, then probes every pair by kubectl exec and
// compares with sluicectl matrix on the same live objects.
TEST_F(RealNodeTest, ConformanceSubsetMatchesSluicectlMatrix) {
  ASSERT_EQ(pods_.size(), 6u) << "needs the pods of the previous test";
  struct Step {
    const char* name;
    std::string yaml;    // applied (empty: none)
    std::string remove;  // "kind/name -n ns" deleted (empty: none)
    std::string port = "80";
    std::string portName;
    int allowedAtMost = 30;  // sanity: a deny must really deny something
  };
  std::vector<Step> steps = {
      {"deny all ingress in x", R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
)",
       "", "80", "", 18},
      {"pod selector: x/b may reach x/a", R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
)",
       "", "80", "", 19},
      {"namespace selector: all of y may reach x/a (policy update)", R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]
)",
       "", "80", "", 21},
      {"namespace AND pod selector: only y/c may reach x/a", R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: c}}}]
)",
       "", "80", "", 19},
      {"ports: x/a admits anyone on 81 only, probed on 80", R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 81}]}]
)",
       "", "80", "", 18},
      {"ports: the same, probed on 81", "", "", "81", "", 23},
      {"named port serve-81 (resolved on x/a's container ports)", R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: serve-81}]}]
)",
       "", "81", "serve-81", 23},
      {"ipBlock with except: the pod CIDR except y/b may reach x/a", "IPBLOCK", "", "80", "", 22},
      {"egress: y/a may only open connections to x on 81", R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-a, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}], ports: [{port: 81}]}]
)",
       "", "80", "", 21},
      {"relabel: x/c becomes pod=a and is selected by allow-a", "RELABEL", "", "80", "", 22},
      {"policy delete: allow-a removed", "", "networkpolicy/allow-a -n x", "80", "", 18},
      {"policy delete: deny-all and egress-a removed", "", "DELETE-REST", "80", "", 30},
  };
  const PodAddr* yb = nullptr;
  for (const auto& p : pods_) {
    if (p.key == "y/b") yb = &p;
  }
  ASSERT_NE(yb, nullptr);
  for (auto& s : steps) {
    SCOPED_TRACE(s.name);
    if (s.yaml == "IPBLOCK") {
      s.yaml = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{ipBlock: {cidr: 10.244.0.0/16, except: [)" +
               yb->v4 + R"(/32]}},
           {ipBlock: {cidr: "fd00:10:244::/56", except: [")" +
               yb->v6 + R"(/128"]}}]
)";
    }
    auto t0 = Clock::now();
    if (s.yaml == "RELABEL") {
      auto st = node().kubectlChecked({"label", "--overwrite", "pod", "c", "-n", "x", "pod=a"});
      ASSERT_TRUE(st.ok()) << st.error().message;
    } else if (!s.yaml.empty()) {
      apply(s.yaml);
    }
    if (s.remove == "DELETE-REST") {
      ASSERT_TRUE(node().kubectlChecked({"delete", "networkpolicy", "deny-all", "-n", "x"}).ok());
      ASSERT_TRUE(node().kubectlChecked({"delete", "networkpolicy", "egress-a", "-n", "y"}).ok());
      ASSERT_TRUE(
          node().kubectlChecked({"label", "--overwrite", "pod", "c", "-n", "x", "pod=c"}).ok());
    } else if (!s.remove.empty()) {
      std::istringstream r(s.remove);
      std::vector<std::string> args = {"delete"};
      std::string w;
      while (r >> w) args.push_back(w);
      ASSERT_TRUE(node().kubectlChecked(args).ok());
    }
    waitEnforced();
    double enforcedMs = msSince(t0);
    int allowed = checkMatrix(pods_, s.port, s.portName);
    EXPECT_LE(allowed, s.allowedAtMost);
    std::printf("[ node ] step \"%s\": enforced after %.0f ms, %d/30 pairs allowed\n", s.name,
                enforcedMs, allowed);
    if (HasFailure()) break;
  }
}

// A pod created into a namespace whose policy denies all ingress must never answer a packet, not
// even in the moments its sandbox is being wired: a prober that starts before the pod exists
// connects to every address the pod could get, over and over. A SYN that reached the pod would be
// answered (accepted, or refused before its server starts); a dropped one times out.
TEST_F(RealNodeTest, PodCreatedIntoDefaultDenyNamespaceNeverReceivesAPacket) {
  apply(R"(
apiVersion: v1
kind: Namespace
metadata: {name: deny, labels: {ns: deny}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: deny}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: v1
kind: Namespace
metadata: {name: prober, labels: {ns: prober}}
)");
  for (const char* ns : {"deny", "prober"}) {
    auto deadline = Clock::now() + 30s;
    while (Clock::now() < deadline &&
           !node().kubectlChecked({"get", "serviceaccount", "default", "-n", ns}).ok()) {
      std::this_thread::sleep_for(200ms);
    }
  }
  apply(serverPod("prober", "p", {{"pod", "p"}}));
  auto prober = waitPodsReady({"prober/p"});
  ASSERT_EQ(prober.size(), 1u);
  waitEnforced();
  // Every IPv4 the next pod can get: the allocator hands out addresses of this node's /24.
  std::string script =
      "i=0; while [ $i -lt 150 ]; do i=$((i+1)); for h in $(seq 2 40); do "
      "(out=$(timeout 1 wget -q -O - http://10.244.0.$h:80/ 2>&1); rc=$?; "
      "case \"$out\" in *refused*) echo \"$(date +%s) 10.244.0.$h refused\";; esac; "
      "[ $rc -eq 0 ] && echo \"$(date +%s) 10.244.0.$h accepted\"; "
      "[ $rc -eq 143 ] && echo \"$(date +%s) 10.244.0.$h dropped\") & done; wait; done "
      ">/tmp/probes 2>&1";
  auto start = node().kubectl({"exec", "-n", "prober", "p", "--", "sh", "-c",
                               "(" + script + ") </dev/null >/dev/null 2>&1 &"});
  ASSERT_TRUE(start.ok() && start->exitCode == 0) << (start.ok() ? start->err : "");
  std::this_thread::sleep_for(2s);
  apply(serverPod("deny", "target", {{"pod", "target"}}));
  auto target = waitPodsReady({"deny/target"});
  ASSERT_EQ(target.size(), 1u);
  std::printf("[ node ] deny/target got %s while probed\n", target[0].v4.c_str());
  // Keep probing the running pod a few seconds more.
  std::this_thread::sleep_for(4s);
  auto log = node().kubectl({"exec", "-n", "prober", "p", "--", "cat", "/tmp/probes"});
  ASSERT_TRUE(log.ok() && log->exitCode == 0);
  int hits = 0;
  std::istringstream s(log->out);
  std::string line;
  std::set<std::string> answered;
  int dropped = 0;
  while (std::getline(s, line)) {
    if (line.find(" " + target[0].v4 + " ") == std::string::npos) continue;
    if (line.ends_with(" dropped")) {
      ++dropped;
    } else {
      ++hits;
      answered.insert(line);
    }
  }
  std::string answers;
  for (const auto& a : answered) answers += "  " + a + "\n";
  EXPECT_EQ(hits, 0) << "deny/target (" << target[0].v4 << ") answered probes:\n" << answers;
  // The probes did arrive at its address while it was being wired and after (each dropped
  // one is a SYN the datapath discarded; one probe a second).
  EXPECT_GE(dropped, 3) << "the prober hardly probed " << target[0].v4;
  std::printf("[ node ] deny/target: %d probes dropped, %d answered\n", dropped, hits);
  // The prober really reached the pods it may reach (its probes work), e.g. x/b.
  bool reachedOthers = false;
  for (const auto& p : pods_) {
    if (p.key == "x/b" && log->out.find(" " + p.v4 + " accepted") != std::string::npos) {
      reachedOthers = true;
    }
  }
  EXPECT_TRUE(reachedOthers) << "the prober never reached x/b: it did not probe at all?\n"
                             << log->out.substr(0, 2000);
}

// A deleted daemon pod (the DaemonSet recreates it), a restarted kubelet and a restarted
// containerd: pinned programs and maps keep enforcing, no verdict is ever wrong, every pod keeps
// its addresses, and a pod created afterwards is wired and enforced.
TEST_F(RealNodeTest, DaemonPodDeletionAndKubeletAndContainerdRestartsKeepEveryVerdict) {
  ASSERT_EQ(pods_.size(), 6u) << "needs the pods of the earlier tests";
  apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]
)");
  waitEnforced();
  // 15 pairs into the three y pods, and y's three into x/a.
  constexpr int kAllowed = 18;
  EXPECT_EQ(checkMatrix(pods_, "80"), kAllowed);

  auto daemonPod = [&]() -> std::pair<std::string, bool> {
    auto pods = node().kubectlJson({"get", "pods", "-n", "kube-system", "-l", "app=sluice"});
    if (!pods.ok() || (*pods)["items"].empty()) return {"", false};
    const json& p = (*pods)["items"][0];
    bool ready = false;
    for (const auto& c : p["status"].value("conditions", json::array())) {
      if (c.value("type", "") == "Ready" && c.value("status", "") == "True") ready = true;
    }
    bool deleting = p["metadata"].contains("deletionTimestamp");
    return {p["metadata"].value("name", ""), ready && !deleting};
  };
  auto [oldPod, oldReady] = daemonPod();
  ASSERT_TRUE(oldReady);
  ASSERT_TRUE(
      node().kubectlChecked({"delete", "pod", "-n", "kube-system", oldPod, "--wait=false"}).ok());
  // Probe while the daemon is away and until its replacement is Ready.
  int rounds = 0;
  auto deadline = Clock::now() + 120s;
  while (Clock::now() < deadline) {
    EXPECT_EQ(checkMatrix(pods_, "80"), kAllowed)
        << "round " << rounds << " of the daemon's restart";
    ++rounds;
    auto [name, ready] = daemonPod();
    if (!name.empty() && name != oldPod && ready) break;
  }
  auto [newPod, newReady] = daemonPod();
  EXPECT_TRUE(newReady && newPod != oldPod) << "the DaemonSet did not bring a new daemon up";
  std::printf("[ node ] daemon pod %s -> %s: %d probe rounds, all verdicts checked\n",
              oldPod.c_str(), newPod.c_str(), rounds);
  waitEnforced();
  EXPECT_EQ(checkMatrix(pods_, "80"), kAllowed);

  auto sameAddresses = [&](const char* after) {
    std::vector<std::string> keys;
    for (const auto& p : pods_) keys.push_back(p.key);
    auto now = waitPodsReady(keys);
    ASSERT_EQ(now.size(), pods_.size());
    for (size_t i = 0; i < now.size(); ++i) {
      EXPECT_EQ(now[i].v4, pods_[i].v4) << pods_[i].key << " after " << after;
      EXPECT_EQ(now[i].v6, pods_[i].v6) << pods_[i].key << " after " << after;
    }
  };
  // A restarted kubelet serves exec for a pod once it has synced it from the API server, and
  // kubelet redials a restarted containerd with a backoff: probes need both.
  auto waitExecWorks = [&](const char* after) {
    auto deadline = Clock::now() + 60s;
    for (const auto& p : pods_) {
      auto slash = p.key.find('/');
      bool ok = false;
      while (!ok && Clock::now() < deadline) {
        auto r = node().kubectl(
            {"exec", "-n", p.key.substr(0, slash), p.key.substr(slash + 1), "--", "true"});
        ok = r.ok() && r->exitCode == 0;
        if (!ok) std::this_thread::sleep_for(300ms);
      }
      ASSERT_TRUE(ok) << "kubectl exec into " << p.key << " does not work 60 s after " << after;
    }
  };
  auto t0 = Clock::now();
  auto st = node().restartKubelet();
  ASSERT_TRUE(st.ok()) << st.error().message;
  waitExecWorks("kubelet restarted");
  EXPECT_EQ(checkMatrix(pods_, "80"), kAllowed) << "right after kubelet restarted";
  sameAddresses("kubelet restart");
  std::printf("[ node ] kubelet restarted, pods checked in %.0f ms\n", msSince(t0));
  t0 = Clock::now();
  st = node().restartContainerd();
  ASSERT_TRUE(st.ok()) << st.error().message;
  waitExecWorks("containerd restarted");
  EXPECT_EQ(checkMatrix(pods_, "80"), kAllowed) << "right after containerd restarted";
  sameAddresses("containerd restart");
  std::printf("[ node ] containerd restarted, pods checked in %.0f ms\n", msSince(t0));

  // A pod created after all that is wired and enforced (x/d is isolated by deny-all).
  apply(serverPod("x", "d", {{"pod", "d"}}));
  auto d = waitPodsReady({"x/d"});
  ASSERT_EQ(d.size(), 1u);
  std::vector<PodAddr> withD = pods_;
  withD.push_back(d[0]);
  waitEnforced();
  EXPECT_EQ(checkMatrix(withD, "80"), 21) << "18 into y, 3 from y into x/a";
  ASSERT_TRUE(node().kubectlChecked({"delete", "pod", "d", "-n", "x", "--wait=true"}).ok());
  ASSERT_TRUE(
      node().kubectlChecked({"delete", "networkpolicy", "deny-all", "allow-a", "-n", "x"}).ok());
}

// kubelet's CNI DEL (via containerd) gives back the pod's addresses and removes its host veth
// and routes.
TEST_F(RealNodeTest, DeletingAPodReleasesItsAddressesAndHostVeth) {
  ASSERT_EQ(pods_.size(), 6u);
  const PodAddr victim = pods_.back();  // y/c
  ASSERT_EQ(victim.key, "y/c");
  auto route = run(Command{{"ip", "-o", "route", "get", victim.v4}}, 10s);
  ASSERT_TRUE(route.ok() && route->exitCode == 0);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(route->out, m, std::regex(R"(dev (sl[0-9a-f]{11}))")))
      << "no route via a Sluice host veth to " << victim.v4 << ": " << route->out;
  const std::string veth = m[1];
  const fs::path ipam = "/var/lib/cni/networks/sluice";
  EXPECT_TRUE(fs::exists(ipam / victim.v4)) << "no IPAM record " << (ipam / victim.v4);
  EXPECT_TRUE(fs::exists(ipam / victim.v6)) << "no IPAM record " << (ipam / victim.v6);
  ASSERT_TRUE(
      node().kubectlChecked({"delete", "pod", "c", "-n", "y", "--wait=true"}, "", 90s).ok());
  pods_.pop_back();
  // kubelet runs the sandbox teardown shortly after the API object is gone.
  auto deadline = Clock::now() + 30s;
  bool gone = false;
  while (Clock::now() < deadline && !gone) {
    gone = !fs::exists("/sys/class/net/" + veth) && !fs::exists(ipam / victim.v4) &&
           !fs::exists(ipam / victim.v6);
    if (!gone) std::this_thread::sleep_for(200ms);
  }
  EXPECT_FALSE(fs::exists("/sys/class/net/" + veth)) << "host veth " << veth << " left behind";
  EXPECT_FALSE(fs::exists(ipam / victim.v4)) << "address " << victim.v4 << " still allocated";
  EXPECT_FALSE(fs::exists(ipam / victim.v6)) << "address " << victim.v6 << " still allocated";
  auto routes = run(Command{{"ip", "route", "show", victim.v4}}, 10s);
  ASSERT_TRUE(routes.ok());
  EXPECT_EQ(routes->out, "") << "route to the deleted pod left behind";
}

// Histogram sums and counts by series (metric name and labels) of a Prometheus text.
std::map<std::string, std::pair<double, double>> histograms(const std::string& text) {
  std::map<std::string, std::pair<double, double>> out;
  std::istringstream s(text);
  std::string line;
  std::regex re(R"(^(\w+)_(sum|count)(\{[^}]*\})? ([0-9.eE+-]+)$)");
  while (std::getline(s, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, re)) continue;
    auto& e = out[m[1].str() + m[3].str()];
    (m[2] == "sum" ? e.first : e.second) += std::stod(m[4]);
  }
  return out;
}

// CNI ADD and DEL as containerd times them, and sandbox creation as kubelet and containerd time
// it, for Sluice and for the reference ptp + host-local conflist on the same node, pods created
// the same way.
TEST_F(RealNodeTest, CniAddDelAndSandboxTimesSluiceVersusPtp) {
  constexpr int kPods = 6;
  struct Series {
    const char* label;
    std::string key;
    bool kubelet;
  };
  const std::vector<Series> series = {
      {"CNI ADD (containerd)",
       "containerd_cri_network_plugin_operations_duration_seconds_seconds{operation_type=\"set_up_"
       "pod\"}",
       false},
      {"CNI DEL (containerd, each call)",
       "containerd_cri_network_plugin_operations_duration_seconds_seconds{operation_type=\"tear_"
       "down_pod\"}",
       false},
      {"sandbox network setup (containerd)", "containerd_cri_sandbox_create_network_seconds",
       false},
      {"RunPodSandbox (kubelet)",
       "kubelet_runtime_operations_duration_seconds{operation_type=\"run_podsandbox\"}", true},
  };
  auto scrape = [&]() -> std::map<std::string, std::pair<double, double>> {
    auto c = node().containerdMetrics();
    auto k = node().kubeletMetrics();
    EXPECT_TRUE(c.ok() && k.ok()) << (c.ok() ? "" : c.error().message)
                                  << (k.ok() ? "" : k.error().message);
    auto h = histograms(c.ok() ? *c : "");
    for (const auto& [key, v] : histograms(k.ok() ? *k : "")) h[key] = v;
    return h;
  };
  auto measure = [&](const std::string& ns) -> std::map<std::string, double> {
    std::map<std::string, double> mean;
    apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + ns + "}\n");
    auto deadline = Clock::now() + 30s;
    while (Clock::now() < deadline &&
           !node().kubectlChecked({"get", "serviceaccount", "default", "-n", ns}).ok()) {
      std::this_thread::sleep_for(200ms);
    }
    auto before = scrape();
    std::string yaml;
    std::vector<std::string> keys;
    for (int i = 0; i < kPods; ++i) {
      yaml += "---\n" + serverPod(ns, "p" + std::to_string(i), {{"pod", "p"}});
      keys.push_back(ns + "/p" + std::to_string(i));
    }
    auto t0 = Clock::now();
    apply(yaml);
    auto ready = waitPodsReady(keys);
    double readyMs = msSince(t0);
    if (ready.size() != keys.size()) return mean;
    auto st = node().kubectlChecked({"delete", "pods", "--all", "-n", ns, "--wait=true"}, "", 120s);
    EXPECT_TRUE(st.ok()) << st.error().message;
    // DEL runs after the API objects are gone; wait until containerd counted one per pod.
    std::map<std::string, std::pair<double, double>> delta;
    deadline = Clock::now() + 30s;
    while (Clock::now() < deadline) {
      auto after = scrape();
      for (const auto& s : series) {
        delta[s.key] = {after[s.key].first - before[s.key].first,
                        after[s.key].second - before[s.key].second};
      }
      if (delta[series[1].key].second >= kPods) break;
      std::this_thread::sleep_for(500ms);
    }
    for (const auto& s : series) {
      EXPECT_GE(delta[s.key].second, kPods) << s.key << " counted too few operations in " << ns;
      if (delta[s.key].second > 0) mean[s.key] = 1000 * delta[s.key].first / delta[s.key].second;
    }
    mean["pods_ready_ms"] = readyMs;
    return mean;
  };

  auto sluice = measure("perf-sluice");
  // The reference plugins, same node, same pods, the same chained portmap and bandwidth as
  // Sluice's conflist: ptp's conflist sorts first, so containerd (one network config) uses it
  // while it is there. ptp turns on global forwarding; put it back.
  const std::string fwd4 = "/proc/sys/net/ipv4/ip_forward";
  const std::string fwd6 = "/proc/sys/net/ipv6/conf/all/forwarding";
  auto f4 = readFile(fwd4), f6 = readFile(fwd6);
  ASSERT_TRUE(f4.ok() && f6.ok());
  const fs::path ptpConf = "/etc/cni/net.d/00-e2e-ptp.conflist";
  {
    std::ofstream f(ptpConf);
    f << R"({"cniVersion": "0.4.0", "name": "e2e-ptp", "plugins": [{"type": "ptp", "mtu": 1500,
  "ipam": {"type": "host-local", "dataDir": "/var/lib/cni/networks",
           "ranges": [[{"subnet": "10.245.0.0/24"}], [{"subnet": "fd00:10:245::/64"}]],
           "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "bandwidth", "capabilities": {"bandwidth": true}}]})";
  }
  std::this_thread::sleep_for(2s);  // containerd reloads the conf dir on change
  auto ptp = measure("perf-ptp");
  std::error_code ec;
  fs::remove(ptpConf, ec);
  std::this_thread::sleep_for(2s);
  for (const auto& [path, value] : {std::pair{fwd4, *f4}, std::pair{fwd6, *f6}}) {
    std::ofstream f(path);
    f << value;
  }
  for (const auto& sr : series) {
    double a = sluice[sr.key], b = ptp[sr.key];
    std::printf("[ node ] %-36s sluice %7.1f ms  ptp %7.1f ms  ratio %.2f\n", sr.label, a, b,
                b > 0 ? a / b : 0.0);
    RecordProperty(std::string("sluice ") + sr.label + " ms", std::to_string(a));
    RecordProperty(std::string("ptp ") + sr.label + " ms", std::to_string(b));
  }
  std::printf("[ node ] %d pods Ready after apply: sluice %.0f ms, ptp %.0f ms\n", kPods,
              sluice["pods_ready_ms"], ptp["pods_ready_ms"]);
}

// Last: the whole node is taken down (pods deleted first so every CNI DEL runs, the install
// deleted, the Node object deleted, processes stopped) and the machine is as it was found.
TEST_F(RealNodeTest, StopLeavesTheMachineAsFound) {
  auto problems = node().stop();
  std::string all;
  for (const auto& p : problems) all += "  " + p + "\n";
  EXPECT_TRUE(problems.empty()) << all;
  auto diffs = node().hostState().differences();
  std::string d;
  for (const auto& x : diffs) d += "  " + x + "\n";
  EXPECT_TRUE(diffs.empty()) << "the machine differs from how it was found:\n" << d;
  auto links = run(Command{{"ip", "-o", "link", "show"}}, 10s);
  ASSERT_TRUE(links.ok());
  EXPECT_FALSE(std::regex_search(links->out, std::regex(R"(: sl[0-9a-f]{11}@)")))
      << "Sluice host veths left behind:\n"
      << links->out;
  // Logs (control plane, containerd, kubelet) stay for a failed run.
  std::error_code ec;
  if (!HasFailure() &&
      ::testing::UnitTest::GetInstance()->current_test_suite()->failed_test_count() == 0) {
    fs::remove_all(node().runDir(), ec);
  } else {
    std::printf("[ node ] logs kept in %s\n", node().runDir().c_str());
  }
  delete node_;
  node_ = nullptr;
}

}  // namespace
}  // namespace sluice::e2e
