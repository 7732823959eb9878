#include <gtest/gtest.h>

#include "cni/sha256.h"
#include "cni/spec.h"
#include "cni/wiring.h"

namespace sluice::cni {
namespace {

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(WiringNamesTest, HostVethNameIsStable) {
  // Pinned: changing it would orphan every veth on upgraded nodes.
  EXPECT_EQ(hostVethName(Attachment{"c1", "eth0"}), "sl" + sha256Hex("c1/eth0").substr(0, 11));
  EXPECT_EQ(hostVethName(Attachment{"c1", "eth0"}), "sld72e032fedd");
  EXPECT_EQ(hostVethName(Attachment{"c1", "eth0"}).size(), 13u);
  auto mac = hostVethMac(Attachment{"c1", "eth0"});
  EXPECT_EQ(mac[0] & 0x03, 0x02);  // unicast, locally administered
  auto att = parseVethAlias("net", vethAlias("net", Attachment{"abc:def", "eth1"}));
  ASSERT_TRUE(att.has_value());
  EXPECT_EQ(att->containerId, "abc:def");
  EXPECT_EQ(att->ifname, "eth1");
  EXPECT_FALSE(parseVethAlias("other", vethAlias("net", Attachment{"x", "eth0"})).has_value());
}

Result<Env> envOf(std::map<std::string, std::string> vars) {
  return parseEnv([&](const char* k) -> const char* {
    auto it = vars.find(k);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(SpecEnvTest, RequiredVariablesAndArgs) {
  std::map<std::string, std::string> full = {{"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", "c"},
                                             {"CNI_NETNS", "/n"},     {"CNI_IFNAME", "eth0"},
                                             {"CNI_PATH", "/opt/cni/bin"},
                                             {"CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u"}};
  auto e = envOf(full);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->podNamespace, "ns");
  EXPECT_EQ(e->podName, "p");
  EXPECT_EQ(e->podUid, "u");
  for (const char* k : {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"}) {
    auto vars = full;
    vars.erase(k);
    auto r = envOf(vars);
    ASSERT_FALSE(r.ok()) << k;
    EXPECT_EQ(r.error().code, kErrInvalidEnv);
    EXPECT_NE(r.error().message.find(k), std::string::npos);
  }
  auto del = full;
  del["CNI_COMMAND"] = "DEL";
  del.erase("CNI_NETNS");
  EXPECT_TRUE(envOf(del).ok()) << "DEL without a netns is allowed";
  auto bad = full;
  bad["CNI_IFNAME"] = "a/b";
  EXPECT_FALSE(envOf(bad).ok());
  bad = full;
  bad["CNI_ARGS"] = "novalue";
  EXPECT_FALSE(envOf(bad).ok());
}

TEST(SpecConfTest, VersionNegotiationAndErrors) {
  auto c = parseNetConf(R"({"cniVersions":["0.3.1","1.0.0","1.1.0","2.0.0"],"name":"n","ipam":{"type":"sluice"}})",
                        Command::Add);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->cniVersion, "1.1.0");
  auto none = parseNetConf(R"({"cniVersions":["0.2.0"],"name":"n","ipam":{"type":"sluice"}})", Command::Add);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, kErrIncompatibleVersion);
  EXPECT_EQ(parseNetConf("nope", Command::Add).error().code, kErrDecode);
  auto check = parseNetConf(R"({"cniVersion":"1.0.0","name":"n","ipam":{"type":"sluice"}})", Command::Check);
  ASSERT_FALSE(check.ok());
  EXPECT_NE(check.error().message.find("prevResult"), std::string::npos);
  auto gc = parseNetConf(R"({"cniVersion":"1.1.0","name":"n","ipam":{"type":"sluice"},
                             "cni.dev/valid-attachments":[{"containerID":"c"}]})", Command::Gc);
  ASSERT_FALSE(gc.ok());
  EXPECT_NE(gc.error().message.find("cni.dev/valid-attachments[0].ifname"), std::string::npos);
  auto defaults = parseNetConf(R"({"cniVersion":"1.1.0","name":"n","ipam":{"type":"host-local"}})", Command::Add);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->policySocket, "/run/sluice/policyd.sock");
  EXPECT_TRUE(defaults->policyRequired);
  EXPECT_EQ(defaults->policyTimeoutMs, 10000);
}

TEST(SpecResultTest, EncodesPerVersionAndRoundTrips) {
  CniResult r;
  r.interfaces.push_back(Interface{"slabc", "02:00:00:00:00:01", 1400, ""});
  r.interfaces.push_back(Interface{"eth0", "02:00:00:00:00:02", 1400, "/run/netns/x"});
  r.ips.push_back(IpConfig{IpAddr::parse("10.0.0.5").value(), 32, IpAddr::parse("169.254.1.1").value(), 1});
  r.routes.push_back(Route{Prefix::parse("0.0.0.0/0").value(), IpAddr::parse("169.254.1.1").value()});
  auto v04 = encodeResult(r, "0.4.0");
  EXPECT_EQ(v04["ips"][0]["version"], "4");
  EXPECT_FALSE(v04["interfaces"][0].contains("mtu"));
  auto v11 = encodeResult(r, "1.1.0");
  EXPECT_FALSE(v11["ips"][0].contains("version"));
  EXPECT_EQ(v11["interfaces"][1]["mtu"], 1400);
  auto back = decodeResult(v11, "prevResult");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->ips[0].address.toString(), "10.0.0.5");
  EXPECT_EQ(back->interfaces[1].sandbox, "/run/netns/x");
  auto bad = decodeResult(json::parse(R"({"ips":[{"address":5}]})"), "prevResult");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("prevResult.ips[0].address"), std::string::npos);
}

}  // namespace
}  // namespace sluice::cni
