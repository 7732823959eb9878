#include "policyd/ctl/live.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "common/unique_fd.h"
#include "policyd/ctl/app.h"

namespace sluice::ctl {

using nlohmann::json;

Status adminRequest(const std::string& socketPath, const json& request,
                    const std::function<bool(const json&)>& onLine) {
  const std::string what = "admin socket " + socketPath;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socketPath.empty() || socketPath.size() >= sizeof addr.sun_path) {
    return makeError(what + ": path empty or too long");
  }
  std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return makeError(what + ": socket: " + std::strerror(errno), errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    return makeError(what + ": connect: " + std::strerror(e) +
                         (e == EACCES ? " (the admin socket is root only)"
                                      : " (is sluice-policyd running? --admin-socket PATH)"),
                     e);
  }
  const std::string line = request.dump() + "\n";
  if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(line.size())) {
    return makeError(what + ": send: " + std::strerror(errno), errno);
  }
  std::string buffer;
  char chunk[65536];
  for (;;) {
    for (size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
      auto j = json::parse(std::string_view(buffer.data(), nl), nullptr, false);
      buffer.erase(0, nl + 1);
      if (j.is_discarded()) return makeError(what + ": reply line is not JSON");
      if (!onLine(j)) return Status::Ok();
    }
    ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return makeError(what + ": recv: " + std::strerror(errno), errno);
    if (n == 0) {
      if (!buffer.empty()) return makeError(what + ": reply cut off");
      return Status::Ok();
    }
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

namespace {

std::string protoName(int p) {
  switch (p) {
    case 0:
      return "any";
    case 1:
      return "ICMP";
    case 6:
      return "TCP";
    case 17:
      return "UDP";
    case 58:
      return "ICMPv6";
    case 132:
      return "SCTP";
  }
  return std::to_string(p);
}

std::string hostPort(const json& f, const char* ip, const char* port, const char* pod) {
  std::string addr = f.value(ip, std::string());
  if (addr.find(':') != std::string::npos) addr = "[" + addr + "]";
  std::string s = addr + ":" + std::to_string(f.value(port, 0));
  if (f.contains(pod)) s += " (" + f.value(pod, std::string()) + ")";
  return s;
}

void renderStatus(const json& j, std::ostream& out) {
  out << "node:        " << j.value("node", "") << "\n";
  out << "source:      " << j.value("source", "") << "\n";
  out << "datapath:    " << j.value("datapath", "") << "\n";
  out << "sync:        " << j.value("sync", "") << " (revision " << j.value("revision", 0) << ", "
      << j.value("syncs", 0) << " syncs, " << j.value("syncErrors", 0) << " errors, "
      << j.value("updates", 0) << " source updates)\n";
  if (j.contains("model")) {
    const auto& m = j["model"];
    out << "model:       " << m.value("namespaces", 0) << " namespaces, " << m.value("pods", 0)
        << " pods, " << m.value("policies", 0) << " policies (generation "
        << m.value("generation", 0) << ")\n";
  }
  out << "endpoints:   " << j.value("endpoints", 0) << " (" << j.value("waitingForPod", 0)
      << " waiting for their Pod)\n";
  out << "invalid:     " << j.value("invalidObjects", 0) << " objects rejected by the source\n";
  out << std::fixed << std::setprecision(4);
  out << "last update: " << j.value("lastUpdateLatencySeconds", 0.0) << " s (event -> applied), "
      << "last sync " << j.value("lastSyncSeconds", 0.0) << " s\n";
  if (j.contains("flowLog")) {
    const auto& f = j["flowLog"];
    out << "flow log:    " << f.value("path", "") << " (" << f.value("denied", 0) << " denied, "
        << f.value("allowed", 0) << " allowed, " << f.value("suppressed", 0) << " suppressed)\n";
  } else {
    out << "flow log:    off\n";
  }
}

void renderEndpoints(const json& j, std::ostream& out) {
  out << std::left << std::setw(5) << "ID" << std::setw(32) << "POD" << std::setw(16) << "VETH"
      << std::setw(34) << "ADDRESSES"
      << "POLICY\n";
  for (const auto& e : j.value("endpoints", json::array())) {
    std::string ips;
    for (const auto& ip : e.value("ips", json::array())) {
      ips += (ips.empty() ? "" : ",") + ip.get<std::string>();
    }
    std::string policy;
    if (!e.value("policyApplied", false)) {
      policy = "not applied (dropping)";
    } else {
      if (e.value("ingressIsolated", false)) policy += "ingress-isolated ";
      if (e.value("egressIsolated", false)) policy += "egress-isolated ";
      if (e.value("audited", false)) policy += "audited ";
      if (policy.empty()) policy = "open";
    }
    std::string pod = e.value("pod", std::string());
    out << std::setw(5) << e.value("id", 0) << std::setw(32) << (pod.empty() ? "-" : pod)
        << std::setw(16) << e.value("hostVeth", "") << std::setw(34) << ips << policy << "\n";
  }
}

void renderPolicy(const json& j, std::ostream& out) {
  out << j.value("pod", "") << " (endpoint " << j.value("endpoint", 0) << "): ingress "
      << (j.value("ingressIsolated", false) ? "isolated" : "not isolated (all allowed)")
      << ", egress "
      << (j.value("egressIsolated", false) ? "isolated" : "not isolated (all allowed)")
      << (j.value("audited", false) ? ", audited" : "") << "\n";
  const auto entries = j.value("entries", json::array());
  if (entries.empty()) {
    out << "  no allow entries\n";
    return;
  }
  for (const auto& e : entries) {
    std::string dir = e.value("direction", "");
    out << "  " << std::left << std::setw(8) << dir << (dir == "ingress" ? "from " : "to   ")
        << std::setw(10) << e.value("peer", "") << std::setw(7) << protoName(e.value("protocol", 0))
        << std::setw(12) << e.value("ports", "") << e.value("policy", "?") << " "
        << e.value("ruleField", "") << "  packets=" << e.value("packets", 0)
        << " bytes=" << e.value("bytes", 0) << "\n";
  }
}

}  // namespace

std::string renderFlowText(const json& f) {
  std::ostringstream s;
  const std::string verdict = f.value("verdict", "");
  s << f.value("time", "") << " " << (verdict == "denied" ? "DENIED " : "allowed") << " "
    << std::left << std::setw(7) << f.value("direction", "") << " "
    << hostPort(f, "src", "srcPort", "srcPod") << " -> " << hostPort(f, "dst", "dstPort", "dstPod")
    << " " << protoName(f.value("protocol", 0));
  if (verdict == "denied") s << " [" << f.value("reason", "") << "]";
  if (f.contains("why")) s << ": " << f.value("why", "");
  if (f.value("engineMismatch", false)) s << "  !! ENGINE DISAGREES";
  return s.str();
}

int runLive(const Options& opt, std::ostream& out, std::ostream& err) {
  json req;
  switch (opt.command) {
    case Command::Status:
      req = {{"op", "status"}};
      break;
    case Command::Endpoints:
      req = {{"op", "endpoints"}};
      break;
    case Command::Policy:
      req = {{"op", "policy"}, {"pod", opt.pod}};
      break;
    case Command::Flows:
      req = {{"op", "flows"}, {"follow", opt.follow}, {"denied", opt.deniedOnly}};
      if (!opt.pod.empty()) req["pod"] = opt.pod;
      break;
    default:
      return kExitBadInput;
  }
  int rc = kExitOk;
  const bool json = opt.output == OutputFormat::Json;
  auto st = adminRequest(opt.adminSocket, req, [&](const nlohmann::json& line) {
    if (line.contains("flow")) {
      if (json) {
        out << line["flow"].dump() << "\n";
      } else {
        out << renderFlowText(line["flow"]) << "\n";
      }
      out.flush();
      return true;
    }
    if (line.contains("heartbeat")) return true;
    if (!line.value("ok", false)) {
      err << "sluicectl: daemon: " << line.value("error", std::string("error")) << "\n";
      rc = kExitDaemon;
      return false;
    }
    if (opt.command == Command::Flows) return false;  // the end of the stream
    if (json) {
      auto copy = line;
      copy.erase("ok");
      out << copy.dump() << "\n";
    } else if (opt.command == Command::Status) {
      renderStatus(line, out);
    } else if (opt.command == Command::Endpoints) {
      renderEndpoints(line, out);
    } else {
      renderPolicy(line, out);
    }
    return false;
  });
  if (!st.ok()) {
    err << "sluicectl: " << st.error().message << "\n";
    return kExitDaemon;
  }
  return rc;
}

}  // namespace sluice::ctl
