// Bounded fuzzing of the CNI config decoder (cni/spec): mutated network configurations,
// including prevResult and GC's valid-attachments; see targets.h for the property.
#include "cni/spec.h"
#include "tests/fuzz/fuzz_test_util.h"

namespace sluice::fuzz {
namespace {

std::vector<std::string> netConfSeeds() {
  using cni::json;
  json base = {{"cniVersion", "1.1.0"},
               {"name", "slnet"},
               {"type", "sluice"},
               {"mtu", 1400},
               {"policy", "required"},
               {"policySocket", "/run/sluice/policyd.sock"},
               {"policyTimeoutMs", 5000},
               {"logLevel", "debug"},
               {"ipam",
                {{"type", "sluice"},
                 {"dataDir", "/var/lib/cni/networks"},
                 {"ranges", json::array({json::array({{{"subnet", "10.77.0.0/24"},
                                                       {"rangeStart", "10.77.0.10"},
                                                       {"gateway", "10.77.0.1"}}}),
                                         json::array({{{"subnet", "fd00:77::/64"}}})})}}}};
  json prev = {
      {"cniVersion", "1.0.0"},
      {"interfaces", json::array({{{"name", "sl0123456789a"}, {"mac", "02:00:00:00:00:01"}},
                                  {{"name", "eth0"}, {"sandbox", "/run/netns/x"}}})},
      {"ips",
       json::array({{{"address", "10.77.0.5/32"}, {"gateway", "169.254.1.1"}, {"interface", 1}},
                    {{"address", "fd00:77::5/128"}, {"interface", 1}}})},
      {"routes", json::array({{{"dst", "0.0.0.0/0"}, {"gw", "169.254.1.1"}}})},
      {"dns", {{"nameservers", json::array({"10.96.0.10"})}}}};
  std::vector<std::string> seeds;
  seeds.push_back(base.dump());
  json withPrev = base;
  withPrev["prevResult"] = prev;
  withPrev["runtimeConfig"] = {{"ips", json::array({"10.77.0.9/24", "fd00:77::9"})},
                               {"mac", "02:11:22:33:44:55"}};
  seeds.push_back(withPrev.dump(2));
  json gc = base;
  gc["cni.dev/valid-attachments"] = json::array({{{"containerID", "abc"}, {"ifname", "eth0"}},
                                                 {{"containerID", "d.e-f_1"}, {"ifname", "net1"}}});
  seeds.push_back(gc.dump());
  json delegated = base;
  delegated["cniVersion"] = "0.4.0";
  delegated["ipam"] = {{"type", "host-local"}, {"subnet", "10.1.0.0/16"}};
  seeds.push_back(delegated.dump());
  json podCidr = base;
  podCidr["cniVersion"] = "1.0.0";
  podCidr["ipam"] = {{"type", "sluice"}, {"usePodCidr", true}};
  seeds.push_back(podCidr.dump());
  seeds.push_back(prev.dump());
  return seeds;
}

TEST(CniConfigFuzzTest, HostileStructuresDecodeCleanly) {
  std::vector<std::string> inputs;
  for (size_t depth : {1u, 64u, 1000u, 100000u}) {
    inputs.push_back(nestedJsonArrays(depth));
    inputs.push_back(nestedJsonObjects(depth));
    inputs.push_back(R"({"cniVersion":"1.1.0","name":"n","ipam":{"type":"sluice","ranges":)" +
                     nestedJsonArrays(depth) + "}}");
    inputs.push_back(R"({"cniVersion":"1.1.0","name":"n","ipam":{"type":"x"},"prevResult":)" +
                     nestedJsonObjects(depth) + "}");
  }
  for (const auto& h : hostileScalars()) {
    for (const char* key : {"mtu", "policyTimeoutMs", "cniVersion", "name"}) {
      inputs.push_back(R"({"cniVersion":"1.1.0","name":"n","ipam":{"type":"x"},")" +
                       std::string(key) + "\":" + h + "}");
    }
    inputs.push_back(R"({"cniVersion":"1.1.0","name":"n","ipam":{"type":"x"},"prevResult":)"
                     R"({"ips":[{"address":"10.0.0.1/32","interface":)" +
                     h + "}]}}");
  }
  inputs.push_back("{\"cniVersion\":\"1.1.0\",\"name\":\"\xff\",\"ipam\":{\"type\":\"x\"}}");
  for (const auto& in : inputs) netConfOne(in, failWith(in, 0, 0));
}

TEST(CniConfigFuzzTest, MutatedConfigsNeverCrash) { fuzzBounded(netConfSeeds(), netConfOne); }

}  // namespace
}  // namespace sluice::fuzz
