// Command-line parsing for sluicectl (DESIGN.md §7). Pure: argv in, Options or a usage error out,
// so every flag form is unit-testable without running a command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/result.h"
#include "policyd/model/types.h"

namespace sluice::ctl {

// Status, Endpoints, Policy and Flows ask the local daemon over its admin socket (live.h).
enum class Command { Explain, Matrix, Diff, Lint, Help, Status, Endpoints, Policy, Flows };
enum class OutputFormat { Text, Json, Svg };  // svg: matrix and diff only

// The port a question is about: a number, or a container port name resolved per destination.
struct PortQuery {
  model::Protocol protocol = model::Protocol::TCP;
  std::variant<uint16_t, std::string> port = uint16_t{80};

  bool isNamed() const { return std::holds_alternative<std::string>(port); }
  // "80" or "http".
  std::string portText() const;
  // "TCP/80" or "TCP/http".
  std::string label() const;
};

struct Options {
  Command command = Command::Help;
  std::vector<std::string> files;  // -f
  std::vector<std::string> with;   // --with (diff)
  // The live cluster instead of -f: --kubeconfig / --context, or --live for the defaults
  // ($KUBECONFIG, else in-cluster).
  bool live = false;
  std::string kubeconfig;
  std::string context;
  std::string from;  // --from NS/POD|IP (explain)
  std::string to;    // --to NS/POD|IP (explain)
  PortQuery query;
  bool portGiven = false;
  OutputFormat output = OutputFormat::Text;
  bool verbose = false;  // -v: print decode notes on stderr
  // The daemon's admin socket (live commands, explain --node).
  std::string adminSocket = "/run/sluice/admin.sock";
  std::string pod;          // policy NS/POD; flows --pod NS/POD
  bool follow = false;      // flows --follow
  bool deniedOnly = false;  // flows --denied
  // explain --node: also answer from this node's realized datapath (pinned maps under pinDir).
  bool node = false;
  std::string pinDir = "/sys/fs/bpf/sluice";
};

// True for the commands that talk to the local daemon instead of reading manifests.
bool isLiveCommand(Command c);

// Parses the arguments after the program name. The error message is meant for stderr, followed
// by the usage text.
Result<Options> parseArgs(const std::vector<std::string>& args);

// Parses "80", "http"; the port must be 1-65535 or an IANA service name (as the API server
// validates container port names).
Result<std::variant<uint16_t, std::string>> parsePort(const std::string& text);

std::string usage();

}  // namespace sluice::ctl
