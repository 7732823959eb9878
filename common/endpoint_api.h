// Messages on the endpoint socket between the CNI plugin and sluice-policyd (DESIGN.md §4):
// newline-delimited JSON, one request and one reply per line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sluice::endpoint_api {

// Status asks whether the daemon is ready (its first snapshot compiled and applied); it carries
// no endpoint fields. CNI STATUS uses it.
enum class Op { Add, Del, Check, Status };

// The CNI spec's rules (libcni): a container id is [a-zA-Z0-9][a-zA-Z0-9_.-]*, an interface
// name 1..15 bytes, not "." or "..", without '/', ':', whitespace or control bytes. The plugin
// checks them on its environment and the daemon again on every request: both key state (IPAM
// records, the registry, veth aliases) on them. Messages quote the value escaped.
constexpr size_t kMaxContainerIdBytes = 1024;
Status validateContainerId(std::string_view id);
Status validateIfname(std::string_view name);

// The op's name on the wire ("add", "del", "check", "status"); also used in logs and metrics.
const char* opName(Op op);

struct Request {
  Op op = Op::Add;
  std::string containerId;
  std::string ifname;    // CNI_IFNAME, inside the pod
  std::string netns;     // CNI_NETNS path (may be empty on DEL)
  std::string hostVeth;  // host-side interface name
  int hostIfindex = 0;
  std::vector<std::string> ips;  // pod addresses, no prefix length
  std::string podNamespace;      // K8S_POD_NAMESPACE
  std::string podName;           // K8S_POD_NAME
};

struct Reply {
  bool ok = false;
  std::string error;
  // With ok=false: the refusal is transient (daemon busy, starting, timed out waiting for a
  // sync); the same request may succeed later. CNI reports it as 11, "try again later".
  bool retry = false;
};

// A refusal the client should retry: {"ok":false,"error":...,"retry":true}.
inline Reply retryReply(std::string error) { return Reply{false, std::move(error), true}; }

// The code call() errors carry when the daemon could not be asked (not running, no reply in
// time, garbage reply): the caller may try again later. A caller's own mistake (a bad socket
// path) carries kBadCall.
constexpr int kDaemonUnavailable = 11;
constexpr int kBadCall = 22;

std::string encode(const Request& r);  // one line, no trailing newline
Result<Request> decodeRequest(std::string_view line);
std::string encode(const Reply& r);
Result<Reply> decodeReply(std::string_view line);

// Client side: connect to `socketPath`, send one request, wait up to `timeoutMs` for the reply.
// Connection failures carry kDaemonUnavailable; an {"ok":false} reply is a Reply, not an error.
Result<Reply> call(const std::string& socketPath, const Request& r, int timeoutMs);

}  // namespace sluice::endpoint_api
