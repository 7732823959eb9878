#include "policyd/ctl/args.h"

#include <gtest/gtest.h>

namespace sluice::ctl {
namespace {

Options parseOk(std::vector<std::string> args) {
  auto r = parseArgs(args);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Options{};
}

std::string parseErr(std::vector<std::string> args) {
  auto r = parseArgs(args);
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : r.error().message;
}

TEST(ArgsTest, SeveralPathsAfterOneFlagAndRepeatedFlags) {
  auto o = parseOk({"matrix", "-f", "a", "b", "-f", "c", "--filename=d", "-fe"});
  EXPECT_EQ(o.command, Command::Matrix);
  EXPECT_EQ(o.files, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
}

TEST(ArgsTest, MatrixDefaultsToTcp80Text) {
  auto o = parseOk({"matrix", "-f", "x"});
  EXPECT_EQ(o.query.protocol, model::Protocol::TCP);
  EXPECT_EQ(o.query.label(), "TCP/80");
  EXPECT_EQ(o.output, OutputFormat::Text);
}

TEST(ArgsTest, ExplainFlags) {
  auto o = parseOk({"explain", "-f", "x", "--from", "prod/web", "--to=10.0.0.1", "--port", "http",
                    "--protocol", "udp", "-ojson"});
  EXPECT_EQ(o.from, "prod/web");
  EXPECT_EQ(o.to, "10.0.0.1");
  EXPECT_TRUE(o.query.isNamed());
  EXPECT_EQ(o.query.label(), "UDP/http");
  EXPECT_EQ(o.output, OutputFormat::Json);
}

TEST(ArgsTest, DiffTakesSeveralWithPaths) {
  auto o = parseOk({"diff", "-f", "a", "--with", "b", "c", "--port", "5432", "-o", "json"});
  EXPECT_EQ(o.with, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(o.query.portText(), "5432");
}

TEST(ArgsTest, HelpAnywhere) {
  EXPECT_EQ(parseOk({"--help"}).command, Command::Help);
  EXPECT_EQ(parseOk({"help"}).command, Command::Help);
  EXPECT_EQ(parseOk({"matrix", "-h"}).command, Command::Help);
}

TEST(ArgsTest, RejectsBadInput) {
  EXPECT_NE(parseErr({}).find("missing command"), std::string::npos);
  EXPECT_NE(parseErr({"frobnicate"}).find("unknown command"), std::string::npos);
  EXPECT_NE(parseErr({"matrix"}).find("-f is required"), std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f"}).find("needs a value"), std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f", "x", "--bogus"}).find("unknown flag '--bogus'"),
            std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f", "x", "--from", "a/b"}).find("unknown flag"),
            std::string::npos);
  EXPECT_NE(parseErr({"lint", "-f", "x", "--port", "80"}).find("unknown flag"), std::string::npos);
  EXPECT_NE(parseErr({"explain", "-f", "x", "--to", "a/b", "--port", "80"}).find("--from"),
            std::string::npos);
  EXPECT_NE(parseErr({"explain", "-f", "x", "--from", "a/b", "--to", "a/c"}).find("--port"),
            std::string::npos);
  EXPECT_NE(parseErr({"diff", "-f", "x"}).find("--with"), std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f", "x", "--port", "0"}).find("1-65535"), std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f", "x", "--port", "65536"}).find("1-65535"),
            std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f", "x", "--port", "Http_"}).find("port name"),
            std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f", "x", "--protocol", "ICMP"}).find("TCP, UDP or SCTP"),
            std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f", "x", "-o", "yaml"}).find("text or json"),
            std::string::npos);
  EXPECT_NE(parseErr({"matrix", "-f", "x", "--port", "80", "--port", "81"}).find("twice"),
            std::string::npos);
  EXPECT_NE(parseErr({"matrix", "stray", "-f", "x"}).find("unexpected argument"),
            std::string::npos);
}

TEST(ArgsTest, PortNames) {
  EXPECT_TRUE(parsePort("http").ok());
  EXPECT_TRUE(parsePort("dns-tcp").ok());
  EXPECT_TRUE(parsePort("h2c").ok());
  EXPECT_FALSE(parsePort("123456789012345x").ok());  // 16 characters
  EXPECT_FALSE(parsePort("-http").ok());
  EXPECT_FALSE(parsePort("a--b").ok());
  EXPECT_EQ(std::get<uint16_t>(*parsePort("65535")), 65535);
}

TEST(ArgsTest, LiveClusterInsteadOfFiles) {
  auto o = parseOk({"matrix", "--kubeconfig", "/k", "--context=prod"});
  EXPECT_TRUE(o.live);
  EXPECT_EQ(o.kubeconfig, "/k");
  EXPECT_EQ(o.context, "prod");
  EXPECT_TRUE(o.files.empty());
  auto d = parseOk({"diff", "--live", "--with", "x.yaml"});
  EXPECT_TRUE(d.live);
  EXPECT_FALSE(d.verbose);
  EXPECT_TRUE(d.kubeconfig.empty());
  EXPECT_NE(parseErr({"lint", "-f", "a", "--live"}).find("exclude each other"), std::string::npos);
  EXPECT_NE(parseErr({"lint"}).find("--kubeconfig, --context or --live"), std::string::npos);
}

}  // namespace
}  // namespace sluice::ctl
