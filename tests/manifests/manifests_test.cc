// What `kubectl apply -f manifests/` (or `-k .` with an image override) installs, checked without a cluster: least-privilege RBAC,
// an unprivileged DaemonSet with the mounts, probes and tolerations a node agent needs, the
// conflist the install step writes, and daemon flags that the built binary really accepts.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "common/file_util.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kManifests = fs::path(SLUICE_SOURCE_DIR) / "manifests";
// The image override (`kubectl apply -k .`); `kubectl apply -f manifests/` applies the same files.
const fs::path kKustomization = fs::path(SLUICE_SOURCE_DIR) / "kustomization.yaml";

std::string read(const fs::path& p) {
  auto r = readFile(p.string());
  EXPECT_TRUE(r.ok()) << p;
  return r.ok() ? *r : "";
}

// Every object of the install, by kind (documents of every resource the kustomization lists).
std::multimap<std::string, YAML::Node> installObjects() {
  std::multimap<std::string, YAML::Node> out;
  YAML::Node k = YAML::LoadFile(kKustomization.string());
  for (const auto& r : k["resources"]) {
    for (const auto& doc : YAML::LoadAllFromFile((kKustomization.parent_path() / r.as<std::string>()).string())) {
      if (doc.IsMap()) out.emplace(doc["kind"].as<std::string>(), doc);
    }
  }
  return out;
}

YAML::Node only(const std::multimap<std::string, YAML::Node>& objs, const std::string& kind) {
  EXPECT_EQ(objs.count(kind), 1u) << "want exactly one " << kind;
  auto it = objs.find(kind);
  return it == objs.end() ? YAML::Node() : it->second;
}

YAML::Node container(const YAML::Node& ds, const std::string& name) {
  for (const auto& c : ds["spec"]["template"]["spec"]["containers"]) {
    if (c["name"].as<std::string>() == name) return c;
  }
  ADD_FAILURE() << "no container " << name;
  return YAML::Node();
}

// --flag=value and --flag value pairs of a container command, by flag.
std::map<std::string, std::string> flagsOf(const YAML::Node& c) {
  std::map<std::string, std::string> f;
  for (const auto& a : c["command"]) {
    std::string s = a.as<std::string>();
    if (s.rfind("--", 0) != 0) continue;
    auto eq = s.find('=');
    f[s.substr(0, eq)] = eq == std::string::npos ? "" : s.substr(eq + 1);
  }
  return f;
}

TEST(ManifestsTest, KustomizationInstallsEveryManifestAndSetsTheDaemonSetImage) {
  YAML::Node k = YAML::LoadFile(kKustomization.string());
  ASSERT_TRUE(k["resources"].IsSequence());
  for (const auto& r : k["resources"]) {
    EXPECT_TRUE(fs::is_regular_file(kKustomization.parent_path() / r.as<std::string>()))
        << r.as<std::string>();
  }
  auto objs = installObjects();
  YAML::Node ds = only(objs, "DaemonSet");
  ASSERT_EQ(k["images"].size(), 1u);
  const std::string name = k["images"][0]["name"].as<std::string>();
  int uses = 0;
  for (const auto& c : ds["spec"]["template"]["spec"]["containers"]) {
    std::string image = c["image"].as<std::string>();
    EXPECT_EQ(image.substr(0, image.rfind(':')), name) << "the override would miss " << image;
    EXPECT_EQ(image.find("ghcr.io"), std::string::npos) << "an image nobody built: " << image;
    ++uses;
  }
  EXPECT_EQ(uses, 2);
  // The tag scripts/build-images.sh gives by default is the one the kustomization names.
  std::string script = read(fs::path(SLUICE_SOURCE_DIR) / "scripts" / "build-images.sh");
  EXPECT_NE(
      script.find("tag=${SLUICE_IMAGE_TAG:-" + k["images"][0]["newTag"].as<std::string>() + "}"),
      std::string::npos);
}

TEST(ManifestsTest, ClusterRoleOnlyListsAndWatchesWhatTheDaemonReads) {
  auto objs = installObjects();
  YAML::Node role = only(objs, "ClusterRole");
  const std::set<std::string> allowedVerbs = {"list", "watch"};
  const std::set<std::pair<std::string, std::string>> readable = {
      {"", "pods"}, {"", "namespaces"}, {"", "nodes"}, {"networking.k8s.io", "networkpolicies"}};
  std::set<std::pair<std::string, std::string>> granted;
  for (const auto& rule : role["rules"]) {
    for (const auto& v : rule["verbs"]) {
      EXPECT_TRUE(allowedVerbs.count(v.as<std::string>())) << "verb " << v.as<std::string>();
    }
    EXPECT_FALSE(rule["resourceNames"]) << "unexpected resourceNames";
    EXPECT_FALSE(rule["nonResourceURLs"]);
    for (const auto& g : rule["apiGroups"]) {
      for (const auto& r : rule["resources"]) {
        auto key = std::pair{g.as<std::string>(), r.as<std::string>()};
        EXPECT_TRUE(readable.count(key)) << "grants " << key.first << "/" << key.second;
        granted.insert(key);
      }
    }
  }
  EXPECT_EQ(granted, readable) << "the daemon's informers need all four";
  // Bound to exactly the DaemonSet's ServiceAccount.
  YAML::Node binding = only(objs, "ClusterRoleBinding");
  YAML::Node sa = only(objs, "ServiceAccount");
  YAML::Node ds = only(objs, "DaemonSet");
  EXPECT_EQ(binding["roleRef"]["name"].as<std::string>(),
            role["metadata"]["name"].as<std::string>());
  ASSERT_EQ(binding["subjects"].size(), 1u);
  EXPECT_EQ(binding["subjects"][0]["kind"].as<std::string>(), "ServiceAccount");
  EXPECT_EQ(binding["subjects"][0]["name"].as<std::string>(),
            sa["metadata"]["name"].as<std::string>());
  EXPECT_EQ(binding["subjects"][0]["namespace"].as<std::string>(),
            sa["metadata"]["namespace"].as<std::string>());
  EXPECT_EQ(ds["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>(),
            sa["metadata"]["name"].as<std::string>());
}

TEST(ManifestsTest, DaemonSetIsAnUnprivilegedNodeAgentOnEveryNode) {
  auto objs = installObjects();
  YAML::Node ds = only(objs, "DaemonSet");
  YAML::Node spec = ds["spec"]["template"]["spec"];
  EXPECT_TRUE(spec["hostNetwork"].as<bool>());
  EXPECT_EQ(spec["priorityClassName"].as<std::string>(), "system-node-critical");
  bool tolerateAll = false;
  for (const auto& t : spec["tolerations"]) {
    if (t["operator"].as<std::string>("") == "Exists" && !t["key"] && !t["effect"]) {
      tolerateAll = true;
    }
  }
  EXPECT_TRUE(tolerateAll) << "a node agent must tolerate every taint";
  EXPECT_FALSE(spec["initContainers"]) << "an init container would install the CNI before the "
                                          "daemon is ready";
  const std::set<std::string> allowedCaps = {"NET_ADMIN", "SYS_ADMIN"};
  for (const auto& c : spec["containers"]) {
    SCOPED_TRACE(c["name"].as<std::string>());
    YAML::Node sc = c["securityContext"];
    ASSERT_TRUE(sc.IsMap());
    EXPECT_FALSE(sc["privileged"].as<bool>(false));
    EXPECT_FALSE(sc["allowPrivilegeEscalation"].as<bool>(true));
    EXPECT_TRUE(sc["readOnlyRootFilesystem"].as<bool>(false));
    ASSERT_EQ(sc["capabilities"]["drop"].size(), 1u);
    EXPECT_EQ(sc["capabilities"]["drop"][0].as<std::string>(), "ALL");
    for (const auto& cap : sc["capabilities"]["add"]) {
      EXPECT_TRUE(allowedCaps.count(cap.as<std::string>())) << cap.as<std::string>();
    }
    for (const auto& m : c["volumeMounts"]) {
      // Bidirectional propagation is only allowed to privileged containers.
      EXPECT_NE(m["mountPropagation"].as<std::string>("None"), "Bidirectional");
    }
  }
  // Only the policy daemon holds any capability.
  YAML::Node install = container(ds, "install-cni");
  EXPECT_FALSE(install["securityContext"]["capabilities"]["add"]);
}

TEST(ManifestsTest, EveryMountHasAVolumeAndTheNodePathsTheDaemonAndCniUse) {
  auto objs = installObjects();
  YAML::Node ds = only(objs, "DaemonSet");
  YAML::Node spec = ds["spec"]["template"]["spec"];
  std::map<std::string, YAML::Node> volumes;
  for (const auto& v : spec["volumes"]) {
    volumes[v["name"].as<std::string>()] = static_cast<const YAML::Node&>(v);
  }
  // mountPath -> host path, per container.
  auto mounts = [&](const YAML::Node& c) {
    std::map<std::string, std::string> m;
    for (const auto& vm : c["volumeMounts"]) {
      auto it = volumes.find(vm["name"].as<std::string>());
      EXPECT_NE(it, volumes.end()) << "mount of undefined volume " << vm["name"].as<std::string>();
      if (it == volumes.end()) continue;
      m[vm["mountPath"].as<std::string>()] =
          it->second["hostPath"] ? it->second["hostPath"]["path"].as<std::string>() : "";
    }
    return m;
  };
  YAML::Node policyd = container(ds, "policyd");
  auto pm = mounts(policyd);
  auto flags = flagsOf(policyd);
  // Each directory a flag names is the same directory on the host (the CNI plugin, run by the
  // runtime on the host, reads the socket and pod CIDR file there).
  auto hostPathOf = [&](const std::string& path) -> std::string {
    for (const auto& [mp, hp] : pm) {
      if (path == mp || path.rfind(mp + "/", 0) == 0)
        return hp.empty() ? "" : hp + path.substr(mp.size());
    }
    return "";
  };
  const std::string socket = flags["--socket"];
  const std::string stateDir = flags["--state-dir"];
  const std::string pinDir = flags["--bpf-pin-dir"];
  EXPECT_EQ(hostPathOf(socket), socket);
  EXPECT_EQ(hostPathOf(stateDir), stateDir);
  EXPECT_EQ(hostPathOf(pinDir), pinDir);
  EXPECT_EQ(hostPathOf("/var/run/netns/cni-x"), "/run/netns/cni-x")
      << "the CNI passes /var/run/netns/cni-* and the daemon enters them";
  for (const auto& vm : policyd["volumeMounts"]) {
    if (vm["mountPath"].as<std::string>() == "/var/run/netns") {
      EXPECT_EQ(vm["mountPropagation"].as<std::string>(""), "HostToContainer");
    }
  }
  EXPECT_EQ(volumes["bpffs"]["hostPath"]["path"].as<std::string>(), "/sys/fs/bpf");
  auto im = mounts(container(ds, "install-cni"));
  EXPECT_EQ(im["/host/opt/cni/bin"], "/opt/cni/bin");
  EXPECT_EQ(im["/host/etc/cni/net.d"], "/etc/cni/net.d");

  // The conflist the install step writes is the one in manifests/, and it points at the
  // daemon's socket and pod CIDR file.
  YAML::Node cm;
  for (auto [it, end] = objs.equal_range("ConfigMap"); it != end; ++it) {
    if (it->second["data"]["10-sluice.conflist"]) cm = it->second;
  }
  ASSERT_TRUE(cm.IsMap());
  json fromCm = json::parse(cm["data"]["10-sluice.conflist"].as<std::string>());
  json fromFile = json::parse(read(kManifests / "10-sluice.conflist"));
  EXPECT_EQ(fromCm, fromFile);
  const json& plugin = fromFile["plugins"][0];
  EXPECT_EQ(plugin["type"], "sluice");
  EXPECT_EQ(plugin["policySocket"], socket);
  EXPECT_EQ(plugin["ipam"]["podCidrFile"], stateDir + "/podcidrs.json");
  EXPECT_EQ(plugin["policy"], "required");
  // containerd 1.6 (Debian 12's) fails every ADD whose result is 1.1.0 (e2e.node saw it).
  EXPECT_EQ(fromFile["cniVersion"], "1.0.0");
}

TEST(ManifestsTest, ProbesAndTheInstallStepUseTheDaemonsMetricsAddress) {
  auto objs = installObjects();
  YAML::Node ds = only(objs, "DaemonSet");
  YAML::Node policyd = container(ds, "policyd");
  std::string addr = flagsOf(policyd)["--metrics-addr"];
  ASSERT_FALSE(addr.empty()) << "the probes need --metrics-addr";
  const std::string host = addr.substr(0, addr.rfind(':'));
  const int port = std::stoi(addr.substr(addr.rfind(':') + 1));
  EXPECT_EQ(policyd["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/readyz");
  EXPECT_EQ(policyd["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  for (const char* probe : {"readinessProbe", "livenessProbe"}) {
    EXPECT_EQ(policyd[probe]["httpGet"]["port"].as<int>(), port) << probe;
    EXPECT_EQ(policyd[probe]["httpGet"]["host"].as<std::string>(), host) << probe;
  }
  // install-cni waits for that /readyz before it writes anything.
  YAML::Node install = container(ds, "install-cni");
  ASSERT_EQ(install["command"].size(), 1u);
  std::string cmd = install["command"][0].as<std::string>();
  EXPECT_EQ(cmd, "/usr/local/bin/sluice-install-cni");
  std::string script = read(fs::path(SLUICE_SOURCE_DIR) / "scripts" / "sluice-install-cni");
  EXPECT_NE(script.find("http://" + addr + "/readyz"), std::string::npos);
  // Written under a name the runtime ignores, then renamed: never a half-written conflist.
  std::regex renameConf(
      R"(mv -f "\$conf_dir/\.10-sluice\.conflist\.tmp" "\$conf_dir/10-sluice\.conflist")");
  EXPECT_TRUE(std::regex_search(script, renameConf));
  EXPECT_LT(script.find("until timeout 3 wget"), script.find("cp \"$conflist\""));
}

TEST(ManifestsTest, DaemonFlagsAreOnesTheBinaryAccepts) {
#ifndef SLUICE_POLICYD_BIN
  GTEST_SKIP() << "sluice-policyd is not built in this configuration";
#else
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(SLUICE_POLICYD_BIN " --help", "r"), pclose);
  ASSERT_TRUE(p);
  std::string help;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p.get())) help.append(buf.data(), n);
  ASSERT_NE(help.find("usage: sluice-policyd"), std::string::npos) << help;
  auto objs = installObjects();
  YAML::Node policyd = container(only(objs, "DaemonSet"), "policyd");
  auto flags = flagsOf(policyd);
  EXPECT_GE(flags.size(), 8u);
  for (const auto& [flag, value] : flags) {
    EXPECT_TRUE(std::regex_search(help, std::regex("\\n\\s+" + flag + "[ =]")))
        << flag << " is not in sluice-policyd --help";
  }
  EXPECT_EQ(flags["--source"], "kube");
  // Values the daemon takes from the ConfigMap are ones it accepts.
  YAML::Node cm;
  for (auto [it, end] = objs.equal_range("ConfigMap"); it != end; ++it) {
    if (it->second["metadata"]["name"].as<std::string>() == "sluice-config") cm = it->second;
  }
  ASSERT_TRUE(cm.IsMap());
  EXPECT_NE(help.find("--datapath bpf|nft"), std::string::npos);
  EXPECT_TRUE(cm["data"]["datapath"].as<std::string>() == "bpf" ||
              cm["data"]["datapath"].as<std::string>() == "nft");
  EXPECT_NE(help.find("--established recheck|keep"), std::string::npos);
  EXPECT_TRUE(cm["data"]["established"].as<std::string>() == "recheck" ||
              cm["data"]["established"].as<std::string>() == "keep");
#endif
}

}  // namespace
}  // namespace sluice
