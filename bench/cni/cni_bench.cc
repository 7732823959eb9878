// CNI latency benchmark (DESIGN.md §8: ratios measured side by side in one run): ADD and DEL
// of `sluice` vs the reference `ptp` + `host-local`, both run as a runtime would (fork/exec,
// config on stdin) inside one test-created "host" namespace, N pods each.
//
//   cni_bench [--pods N] [--dual-stack] [--min-ratio R]
//
// sluice registers every pod with a stand-in policy daemon on a unix socket, so its ADD
// includes the registration round trip the real one pays. Exit status 1 when --min-ratio is
// given and the median ADD+DEL ratio is below it.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "e2e/cni/cni_test_util.h"

using namespace sluice::cni::testing;
using Clock = std::chrono::steady_clock;

namespace {

struct Stats {
  double median = 0, p99 = 0;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return {};
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))]; };
  return {at(0.5), at(0.99)};
}

struct Run {
  std::vector<double> add, del;
  int failures = 0;
  std::string firstError;
};

Run measure(const std::string& binary, const json& conf, const std::string& hostNs,
            const std::vector<std::string>& pods, const std::string& idPrefix) {
  Run run;
  auto envFor = [&](const char* cmd, size_t i) {
    return std::map<std::string, std::string>{
        {"CNI_COMMAND", cmd},
        {"CNI_CONTAINERID", idPrefix + std::to_string(i)},
        {"CNI_NETNS", pods[i]},
        {"CNI_IFNAME", "eth0"},
        {"CNI_PATH", "/usr/lib/cni"},
        {"CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p" + std::to_string(i)}};
  };
  std::string stdinData = conf.dump();
  for (const char* cmd : {"ADD", "DEL"}) {
    for (size_t i = 0; i < pods.size(); ++i) {
      auto t0 = Clock::now();
      auto r = runPlugin(binary, envFor(cmd, i), stdinData, hostNs);
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (r.exitCode != 0) {
        if (run.failures++ == 0) run.firstError = std::string(cmd) + ": " + r.out + r.err;
        continue;
      }
      (std::strcmp(cmd, "ADD") == 0 ? run.add : run.del).push_back(ms);
    }
  }
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  int pods = 100;
  bool dual = false;
  double minRatio = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--pods" && i + 1 < argc) {
      pods = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--dual-stack") {
      dual = true;
    } else if (a == "--min-ratio" && i + 1 < argc) {
      minRatio = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--pods N] [--dual-stack] [--min-ratio R]\n", argv[0]);
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::printf("cni_bench: needs root (network namespaces); skipped\n");
    return 0;
  }
  if (::access("/usr/lib/cni/ptp", X_OK) != 0 || ::access("/usr/lib/cni/host-local", X_OK) != 0) {
    std::printf("cni_bench: /usr/lib/cni/ptp or host-local missing; skipped\n");
    return 0;
  }
  NetnsSet::preClean();
  NetnsSet ns;
  std::string host = ns.add("host");
  runCmd({"ip", "netns", "exec", ns.fullName("host"), "sysctl", "-qw", "net.ipv4.ip_forward=1"});
  std::vector<std::string> podPaths;
  for (int i = 0; i < pods; ++i) podPaths.push_back(ns.add("b" + std::to_string(i)));

  json v4 = json::array({{{"subnet", "10.200.0.0/16"}}});
  json v6 = json::array({{{"subnet", "fd00:200::/64"}}});
  json ranges = dual ? json::array({v4, v6}) : json::array({v4});
  FakePolicyd daemon(ns.tmpDir() + "/policyd.sock");
  json sluiceConf = {{"cniVersion", "1.0.0"}, {"name", "bench-sluice"}, {"type", "sluice"},
                     {"mtu", 1500},          {"policy", "required"},    {"policySocket", daemon.path()},
                     {"ipam", {{"type", "sluice"}, {"dataDir", ns.tmpDir() + "/ipam"}, {"ranges", ranges}}}};
  json ptpConf = {{"cniVersion", "1.0.0"}, {"name", "bench-ptp"}, {"type", "ptp"}, {"mtu", 1500},
                  {"ipMasq", false},
                  {"ipam", {{"type", "host-local"}, {"dataDir", ns.tmpDir() + "/ipam-ref"}, {"ranges", ranges}}}};

  // Interleave warm-up of both so page cache and kernel state favour neither.
  std::vector<std::string> warm(podPaths.begin(), podPaths.begin() + std::min(pods, 3));
  measure(std::string(SLUICE_BINARY_DIR) + "/cni/sluice", sluiceConf, host, warm, "warm-s");
  measure("/usr/lib/cni/ptp", ptpConf, host, warm, "warm-r");

  Run ref = measure("/usr/lib/cni/ptp", ptpConf, host, podPaths, "ref-");
  Run sl = measure(std::string(SLUICE_BINARY_DIR) + "/cni/sluice", sluiceConf, host, podPaths, "sl-");

  auto show = [](const char* name, const Run& r) {
    Stats a = stats(r.add), d = stats(r.del);
    std::printf("%-18s ADD median %7.2f ms  p99 %7.2f ms | DEL median %7.2f ms  p99 %7.2f ms | failures %d\n",
                name, a.median, a.p99, d.median, d.p99, r.failures);
    if (r.failures) std::printf("  first failure: %s\n", r.firstError.c_str());
  };
  std::printf("CNI latency, %d pods each, %s, same host namespace, same run\n", pods,
              dual ? "dual-stack" : "IPv4");
  show("ptp+host-local", ref);
  show("sluice", sl);
  Stats ra = stats(ref.add), rd = stats(ref.del), sa = stats(sl.add), sd = stats(sl.del);
  double ratioAdd = sa.median > 0 ? ra.median / sa.median : 0;
  double ratioDel = sd.median > 0 ? rd.median / sd.median : 0;
  double ratioBoth = (sa.median + sd.median) > 0 ? (ra.median + rd.median) / (sa.median + sd.median) : 0;
  double ratioP99 = (sa.p99 + sd.p99) > 0 ? (ra.p99 + rd.p99) / (sa.p99 + sd.p99) : 0;
  std::printf("ratio reference/sluice: ADD %.1fx  DEL %.1fx  ADD+DEL median %.1fx  ADD+DEL p99 %.1fx\n",
              ratioAdd, ratioDel, ratioBoth, ratioP99);
  if (sl.failures || ref.failures) return 1;
  if (minRatio > 0 && ratioBoth < minRatio) {
    std::printf("FAIL: median ADD+DEL ratio %.1f below --min-ratio %.1f\n", ratioBoth, minRatio);
    return 1;
  }
  return 0;
}
