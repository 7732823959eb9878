#include "common/endpoint_api.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/unique_fd.h"

namespace sluice::endpoint_api {

using json = nlohmann::json;

namespace {

// A reply or request longer than this is garbage, not a message; stops a confused peer from
// making us buffer without bound.
constexpr size_t kMaxLine = 64 * 1024;

// Typed field access that reports the field by name instead of throwing.
Result<std::string> stringField(const json& j, const char* key, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return makeError(std::string("missing field \"") + key + "\"");
    return std::string();
  }
  if (!it->is_string()) return makeError(std::string("field \"") + key + "\" must be a string");
  return it->get<std::string>();
}

}  // namespace

namespace {

// Quoted for a message: control bytes (a newline in an id is the attack) are shown escaped.
std::string quoted(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

bool isAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

Status validateContainerId(std::string_view id) {
  // libcni's ValidateContainerID: ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$. The id names IPAM records
  // and veth aliases, so anything else (a newline, a '/') could forge or orphan a record.
  if (id.empty()) return makeError("must not be empty");
  if (id.size() > kMaxContainerIdBytes) {
    return makeError("longer than " + std::to_string(kMaxContainerIdBytes) + " bytes");
  }
  if (!isAsciiAlnum(id[0])) return makeError(quoted(id) + " must start with a letter or digit");
  for (char c : id) {
    if (!isAsciiAlnum(c) && c != '_' && c != '.' && c != '-') {
      return makeError(quoted(id) + " may contain only letters, digits, '_', '.' and '-'");
    }
  }
  return Status::Ok();
}

Status validateIfname(std::string_view name) {
  // libcni's ValidateInterfaceName, which is the kernel's dev_valid_name.
  if (name.empty()) return makeError("must not be empty");
  if (name.size() > 15) return makeError(quoted(name) + " is longer than 15 bytes");
  if (name == "." || name == "..") return makeError(quoted(name) + " is not an interface name");
  for (unsigned char c : name) {
    if (c == '/' || c == ':' || std::isspace(c) || c < 0x20 || c == 0x7f) {
      return makeError(quoted(name) + " must not contain '/', ':', whitespace or control bytes");
    }
  }
  return Status::Ok();
}

const char* opName(Op op) {
  switch (op) {
    case Op::Add:
      return "add";
    case Op::Del:
      return "del";
    case Op::Check:
      return "check";
    case Op::Status:
      return "status";
  }
  return "unknown";
}

std::string encode(const Request& r) {
  if (r.op == Op::Status) return R"({"op":"status"})";
  json j = {{"op", opName(r.op)}, {"containerID", r.containerId},   {"ifname", r.ifname},
            {"netns", r.netns},   {"hostVeth", r.hostVeth},         {"hostIfindex", r.hostIfindex},
            {"ips", r.ips},       {"podNamespace", r.podNamespace}, {"podName", r.podName}};
  // dump() escapes control characters, so the line never contains a raw newline.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Request> decodeRequest(std::string_view line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return makeError("request is not valid JSON");
  if (!j.is_object()) return makeError("request must be a JSON object");
  Request r;
  SLUICE_ASSIGN_OR_RETURN(std::string op, stringField(j, "op", true));
  if (op == "add") {
    r.op = Op::Add;
  } else if (op == "del") {
    r.op = Op::Del;
  } else if (op == "check") {
    r.op = Op::Check;
  } else if (op == "status") {
    r.op = Op::Status;
    return r;
  } else {
    return makeError("field \"op\": unknown operation \"" + op +
                     "\" (want add, del, check or status)");
  }
  SLUICE_ASSIGN_OR_RETURN(r.containerId, stringField(j, "containerID", true));
  if (auto st = validateContainerId(r.containerId); !st.ok()) {
    return st.error().wrap("field \"containerID\"");
  }
  SLUICE_ASSIGN_OR_RETURN(r.ifname, stringField(j, "ifname", true));
  if (auto st = validateIfname(r.ifname); !st.ok()) return st.error().wrap("field \"ifname\"");
  SLUICE_ASSIGN_OR_RETURN(r.netns, stringField(j, "netns", false));
  SLUICE_ASSIGN_OR_RETURN(r.hostVeth, stringField(j, "hostVeth", false));
  SLUICE_ASSIGN_OR_RETURN(r.podNamespace, stringField(j, "podNamespace", false));
  SLUICE_ASSIGN_OR_RETURN(r.podName, stringField(j, "podName", false));
  if (auto it = j.find("hostIfindex"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) return makeError("field \"hostIfindex\" must be an integer");
    auto v = it->get<int64_t>();
    if (v < 0 || v > INT32_MAX) return makeError("field \"hostIfindex\" out of range");
    r.hostIfindex = static_cast<int>(v);
  }
  if (auto it = j.find("ips"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return makeError("field \"ips\" must be an array of strings");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      if (!e.is_string()) {
        return makeError("field \"ips[" + std::to_string(i) + "]\" must be a string");
      }
      r.ips.push_back(e.get<std::string>());
    }
  }
  if (r.op == Op::Add && r.hostVeth.empty()) {
    return makeError("field \"hostVeth\" is required for op add");
  }
  return r;
}

std::string encode(const Reply& r) {
  json j = {{"ok", r.ok}};
  if (!r.ok) j["error"] = r.error;
  if (!r.ok && r.retry) j["retry"] = true;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Reply> decodeReply(std::string_view line) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded()) return makeError("reply is not valid JSON");
  if (!j.is_object()) return makeError("reply must be a JSON object");
  auto it = j.find("ok");
  if (it == j.end() || !it->is_boolean()) return makeError("reply field \"ok\" must be a boolean");
  Reply r;
  r.ok = it->get<bool>();
  SLUICE_ASSIGN_OR_RETURN(r.error, stringField(j, "error", false));
  if (auto rt = j.find("retry"); rt != j.end() && !rt->is_null()) {
    if (!rt->is_boolean()) return makeError("reply field \"retry\" must be a boolean");
    r.retry = !r.ok && rt->get<bool>();
  }
  if (!r.ok && r.error.empty()) r.error = "daemon refused the request without a reason";
  return r;
}

Result<Reply> call(const std::string& socketPath, const Request& r, int timeoutMs) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
  auto remainingMs = [&]() {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  };
  auto fail = [&](const std::string& what, int err) {
    return makeError("policy daemon at " + socketPath + ": " + what +
                         (err ? std::string(": ") + std::strerror(err) : std::string()),
                     kDaemonUnavailable);
  };

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socketPath.empty() || socketPath.size() >= sizeof(addr.sun_path)) {
    return makeError("policy socket path \"" + socketPath + "\" is empty or too long", kBadCall);
  }
  std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fail("socket", errno);
  // A unix stream connect either completes at once or fails (EAGAIN when the backlog is full);
  // retry the latter until the deadline so a busy daemon is not mistaken for a dead one.
  while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EINTR) continue;
    if (errno == EAGAIN && remainingMs() > 0) {
      ::poll(nullptr, 0, 5);
      continue;
    }
    return fail("connect", errno);
  }

  std::string out = encode(r);
  out.push_back('\n');
  size_t sent = 0;
  int sendErr = 0;
  while (sent < out.size()) {
    ssize_t n = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd.get(), POLLOUT, 0};
      int ms = remainingMs();
      if (ms == 0 || ::poll(&p, 1, ms) <= 0) return fail("timed out sending the request", 0);
      continue;
    }
    // The daemon may answer and close before reading us (a busy refusal): its reply is still
    // queued for us, so read it rather than report a broken pipe.
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      sendErr = errno;
      break;
    }
    return fail("send", errno);
  }

  std::string in;
  char buf[4096];
  for (;;) {
    auto nl = in.find('\n');
    if (nl != std::string::npos) {
      auto reply = decodeReply(std::string_view(in).substr(0, nl));
      if (!reply.ok()) return fail(reply.error().message, 0);
      return reply;
    }
    if (in.size() > kMaxLine) return fail("reply longer than " + std::to_string(kMaxLine), 0);
    pollfd p{fd.get(), POLLIN, 0};
    int ms = remainingMs();
    if (ms == 0) return fail("no reply within " + std::to_string(timeoutMs) + " ms", 0);
    int pr = ::poll(&p, 1, ms);
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) return fail("poll", errno);
    if (pr == 0) return fail("no reply within " + std::to_string(timeoutMs) + " ms", 0);
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return fail("recv", sendErr ? sendErr : errno);
    if (n == 0) {
      // Tolerate a peer that closes right after a reply without a trailing newline.
      if (!in.empty()) {
        auto reply = decodeReply(in);
        if (reply.ok()) return reply;
      }
      if (sendErr) return fail("send", sendErr);
      return fail("connection closed before a reply", 0);
    }
    in.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace sluice::endpoint_api
