// Live sluicectl: argument forms of status/endpoints/policy/flows and explain --node, the text
// of a flow, the client against a scripted admin socket (and without a daemon), and the
// datapath-vs-engine comparison of explain --node.
#include "policyd/ctl/live.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <thread>

#include "common/unique_fd.h"
#include "policyd/ctl/app.h"
#include "policyd/ctl/args.h"
#include "policyd/ctl/node_explain.h"

namespace sluice::ctl {
namespace {

TEST(LiveArgsTest, LiveCommandsNeedNoManifests) {
  auto o = parseArgs({"status"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->command, Command::Status);
  EXPECT_EQ(o->adminSocket, "/run/sluice/admin.sock");
  o = parseArgs({"policy", "prod/web", "-o", "json", "--admin-socket", "/tmp/a.sock"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->pod, "prod/web");
  EXPECT_EQ(o->adminSocket, "/tmp/a.sock");
  EXPECT_EQ(o->output, OutputFormat::Json);
  o = parseArgs({"flows", "--follow", "--denied", "--pod", "prod/web"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_TRUE(o->follow);
  EXPECT_TRUE(o->deniedOnly);
  EXPECT_EQ(o->pod, "prod/web");
}

TEST(LiveArgsTest, BadFormsAreRefusedWithAMessage) {
  EXPECT_FALSE(parseArgs({"policy"}).ok());
  EXPECT_FALSE(parseArgs({"policy", "web"}).ok());
  EXPECT_FALSE(parseArgs({"flows", "--pod", "web"}).ok());
  EXPECT_FALSE(parseArgs({"status", "-f", "x.yaml"}).ok());
  EXPECT_FALSE(parseArgs({"matrix", "-f", "x", "--follow"}).ok());
  auto o = parseArgs({"explain", "--node", "-f", "x", "--from", "a/b", "--to", "c/d", "--port",
                      "80", "--bpf-pin-dir", "/sys/fs/bpf/x"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_TRUE(o->node);
  EXPECT_EQ(o->pinDir, "/sys/fs/bpf/x");
}

TEST(LiveRenderTest, FlowTextNamesBothEndsTheVerdictAndWhy) {
  auto f = nlohmann::json::parse(R"({"time":"2026-11-30T06:00:00.000000001Z","direction":"ingress",
    "src":"10.1.0.9","srcPod":"dev/a","srcPort":4000,"dst":"10.1.0.5","dstPod":"prod/web",
    "dstPort":80,"protocol":6,"verdict":"denied","reason":"policy",
    "why":"denied: isolated for ingress by prod/db, whose rules do not match"})");
  EXPECT_EQ(renderFlowText(f),
            "2026-11-30T06:00:00.000000001Z DENIED  ingress 10.1.0.9:4000 (dev/a) -> "
            "10.1.0.5:80 (prod/web) TCP [policy]: denied: isolated for ingress by prod/db, whose "
            "rules do not match");
  f["engineMismatch"] = true;
  EXPECT_NE(renderFlowText(f).find("ENGINE DISAGREES"), std::string::npos);
}

// A one-shot admin socket that answers any request with `replies`, and records the request.
class ScriptedDaemon {
 public:
  explicit ScriptedDaemon(std::vector<std::string> replies) {
    path_ = (std::filesystem::temp_directory_path() /
             ("sluicectl-live-" + std::to_string(::getpid()) + ".sock"))
                .string();
    ::unlink(path_.c_str());
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_.get(), 1), 0);
    thread_ = std::jthread([this, replies = std::move(replies)] {
      UniqueFd c(::accept(fd_.get(), nullptr, nullptr));
      char buf[4096];
      ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
      if (n > 0) request_.assign(buf, static_cast<size_t>(n));
      for (const auto& r : replies) {
        std::string line = r + "\n";
        (void)!::send(c.get(), line.data(), line.size(), MSG_NOSIGNAL);
      }
    });
  }
  ~ScriptedDaemon() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  std::string request() {
    thread_.join();
    return request_;
  }

 private:
  std::string path_;
  UniqueFd fd_;
  std::string request_;
  std::jthread thread_;
};

TEST(LiveClientTest, StatusIsRendered) {
  ScriptedDaemon d({nlohmann::json::parse(R"({"ok":true,"node":"n1","source":"kube",
    "datapath":"bpf","sync":"synced","revision":12,"syncs":3,"syncErrors":0,"updates":4,
    "endpoints":2,"waitingForPod":0,"invalidObjects":0,"lastSyncSeconds":0.001,
    "lastUpdateLatencySeconds":0.25})")
                        .dump()});
  std::ostringstream out, err;
  int rc = run({"status", "--admin-socket", d.path()}, out, err);
  EXPECT_EQ(rc, 0) << err.str();
  EXPECT_NE(out.str().find("sync:        synced (revision 12"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("last update: 0.2500 s"), std::string::npos) << out.str();
  EXPECT_EQ(nlohmann::json::parse(d.request())["op"], "status");
}

TEST(LiveClientTest, FlowsStreamUntilTheEndLineAndErrorsExitFour) {
  {
    ScriptedDaemon d({R"({"flow":{"verdict":"denied","src":"10.0.0.1","dst":"10.0.0.2"}})",
                      R"({"heartbeat":true})", R"({"ok":true})"});
    std::ostringstream out, err;
    EXPECT_EQ(run({"flows", "-o", "json", "--denied", "--admin-socket", d.path()}, out, err), 0);
    EXPECT_EQ(out.str(), "{\"dst\":\"10.0.0.2\",\"src\":\"10.0.0.1\",\"verdict\":\"denied\"}\n");
    auto req = nlohmann::json::parse(d.request());
    EXPECT_EQ(req["denied"], true);
    EXPECT_EQ(req["follow"], false);
  }
  {
    ScriptedDaemon d({R"({"ok":false,"error":"policy: prod/x is not an endpoint on this node"})"});
    std::ostringstream out, err;
    EXPECT_EQ(run({"policy", "prod/x", "--admin-socket", d.path()}, out, err), kExitDaemon);
    EXPECT_NE(err.str().find("not an endpoint on this node"), std::string::npos);
  }
  std::ostringstream out, err;
  EXPECT_EQ(run({"status", "--admin-socket", "/nonexistent/admin.sock"}, out, err), kExitDaemon);
  EXPECT_NE(err.str().find("/nonexistent/admin.sock"), std::string::npos) << err.str();
}

TEST(NodeExplainTest, MismatchIsFlaggedAndNodeTrafficIsAlwaysAllowed) {
  ExplainReport r;
  r.egress.direction = engine::Direction::Egress;
  r.ingress.direction = engine::Direction::Ingress;
  r.egress.explanation.allowed = true;
  r.ingress.explanation.allowed = false;  // the engine denies the destination's ingress
  NodeVerdict v;
  v.ingress = NodeSide{true, 3, true, true, 20, false, 0};
  EXPECT_TRUE(compareWithNode(r, v).agree);
  v.ingress.allowed = true;  // the datapath admits it: a bug
  auto c = compareWithNode(r, v);
  EXPECT_FALSE(c.agree);
  ASSERT_EQ(c.mismatches.size(), 1u);
  EXPECT_EQ(c.mismatches[0], "ingress: datapath allows, engine denies");
  // From the node's own address (class host): allowed, whatever the policies say.
  v.ingress.peerClass = kNodeClassHost;
  v.ingress.rule = kNodeRuleHost;
  EXPECT_TRUE(compareWithNode(r, v).agree);
  // A side whose policy is not applied drops everything.
  v.ingress = NodeSide{true, 3, false, false, 20, false, 0};
  r.ingress.explanation.allowed = true;
  EXPECT_FALSE(compareWithNode(r, v).agree);
}

}  // namespace
}  // namespace sluice::ctl
