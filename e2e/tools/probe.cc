// sluice-probe: the traffic end of the e2e tests and the demo.
//
//   sluice-probe serve --tcp 80,81 --udp 80,81
//       Echo servers on every address (dual-stack). TCP connections may carry many messages; each
//       line gets "ok\n" back. Runs until killed. With --log, prints one line per accepted
//       connection or datagram ("tcp from ADDR" / "udp from ADDR").
//   sluice-probe probe [--timeout-ms N] tcp:ADDR:PORT udp:[V6ADDR]:PORT ...
//       Probes all targets concurrently; prints "<target> ok|timeout|refused|error" per target.
//       ok means a request went out and its reply came back, so both directions passed.
//   sluice-probe spray --cidr 10.244.0.0/24 --port 80 --duration-ms N
//       Sends a UDP datagram and a TCP SYN to every address of an IPv4 /24 (or smaller) every
//       millisecond or so, for the duration: traffic aimed at a pod that does not exist yet.
//   sluice-probe hold [--interval-ms N] [--count N] [--timeout-ms N] tcp:ADDR:PORT
//       One TCP connection, one message every interval; prints "<i> ok|fail" for each, so a test
//       can see an open connection being cut.
//
// Single-threaded, poll-based, bounded in time: nothing here can hang a test.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int usage_error(const char* msg) {
  std::fprintf(stderr, "sluice-probe: %s\n", msg);
  return 2;
}

using Clock = std::chrono::steady_clock;

struct Target {
  std::string text;
  bool tcp = true;
  sockaddr_storage addr{};
  socklen_t addrLen = 0;
};

bool parseTarget(const std::string& t, Target* out) {
  out->text = t;
  std::string rest;
  if (t.rfind("tcp:", 0) == 0) {
    out->tcp = true;
  } else if (t.rfind("udp:", 0) == 0) {
    out->tcp = false;
  } else {
    return false;
  }
  rest = t.substr(4);
  std::string host, port;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') return false;
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return false;
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  int p = std::atoi(port.c_str());
  if (p <= 0 || p > 65535) return false;
  std::memset(&out->addr, 0, sizeof(out->addr));
  auto* s4 = reinterpret_cast<sockaddr_in*>(&out->addr);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&out->addr);
  if (inet_pton(AF_INET, host.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(static_cast<uint16_t>(p));
    out->addrLen = sizeof(*s4);
  } else if (inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(static_cast<uint16_t>(p));
    out->addrLen = sizeof(*s6);
  } else {
    return false;
  }
  return true;
}

std::vector<int> parsePorts(const char* list) {
  std::vector<int> out;
  std::string s(list);
  size_t pos = 0;
  while (pos <= s.size()) {
    auto comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (!item.empty()) out.push_back(std::atoi(item.c_str()));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

int listenOn(int type, int port) {
  int fd = socket(AF_INET6, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int zero = 0, one = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_any;
  a.sin6_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    std::fprintf(stderr, "bind %d: %s\n", port, std::strerror(errno));
    close(fd);
    return -1;
  }
  if (type == SOCK_STREAM && listen(fd, 128) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string peerName(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (a.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr, buf, sizeof(buf));
  } else if (a.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a)->sin_addr, buf, sizeof(buf));
  }
  return buf;
}

int serve(const std::vector<int>& tcpPorts, const std::vector<int>& udpPorts, bool log) {
  struct Entry {
    int fd;
    enum { kListen, kConn, kUdp } kind;
  };
  std::vector<Entry> entries;
  for (int p : tcpPorts) {
    int fd = listenOn(SOCK_STREAM, p);
    if (fd < 0) return 1;
    entries.push_back({fd, Entry::kListen});
  }
  for (int p : udpPorts) {
    int fd = listenOn(SOCK_DGRAM, p);
    if (fd < 0) return 1;
    entries.push_back({fd, Entry::kUdp});
  }
  std::printf("serving\n");
  std::fflush(stdout);
  for (;;) {
    std::vector<pollfd> pfds;
    for (auto& e : entries) pfds.push_back({e.fd, POLLIN, 0});
    if (poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    std::vector<Entry> added;
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Entry& e = entries[i];
      char buf[512];
      if (e.kind == Entry::kListen) {
        sockaddr_storage from{};
        socklen_t len = sizeof(from);
        int c = accept4(e.fd, reinterpret_cast<sockaddr*>(&from), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) added.push_back({c, Entry::kConn});
        if (c >= 0 && log) {
          std::printf("tcp from %s\n", peerName(from).c_str());
          std::fflush(stdout);
        }
      } else if (e.kind == Entry::kUdp) {
        sockaddr_storage from{};
        socklen_t len = sizeof(from);
        ssize_t n = recvfrom(e.fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n > 0) sendto(e.fd, "ok\n", 3, 0, reinterpret_cast<sockaddr*>(&from), len);
        if (n > 0 && log) {
          std::printf("udp from %s\n", peerName(from).c_str());
          std::fflush(stdout);
        }
      } else {
        ssize_t n = read(e.fd, buf, sizeof(buf));
        if (n <= 0) {
          close(e.fd);
          e.fd = -1;
        } else {
          for (ssize_t k = 0; k < n; ++k) {
            if (buf[k] == '\n' && write(e.fd, "ok\n", 3) < 0) break;
          }
        }
      }
    }
    std::erase_if(entries, [](const Entry& e) { return e.fd < 0; });
    entries.insert(entries.end(), added.begin(), added.end());
  }
}

enum class Outcome { Pending, Ok, Timeout, Refused, Error };
const char* outcomeName(Outcome o) {
  switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::Timeout: return "timeout";
    case Outcome::Refused: return "refused";
    case Outcome::Pending: return "timeout";
    case Outcome::Error: return "error";
  }
  return "error";
}

struct Attempt {
  Target target;
  int fd = -1;
  bool connected = false;  // TCP: connect finished and the request was sent
  Outcome outcome = Outcome::Pending;
  Clock::time_point lastSend{};
};

void startAttempt(Attempt& a) {
  a.fd = socket(a.target.addr.ss_family, (a.target.tcp ? SOCK_STREAM : SOCK_DGRAM) |
                                             SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (a.fd < 0) {
    a.outcome = Outcome::Error;
    return;
  }
  int rc = connect(a.fd, reinterpret_cast<sockaddr*>(&a.target.addr), a.target.addrLen);
  if (rc != 0 && errno != EINPROGRESS) {
    a.outcome = errno == ECONNREFUSED ? Outcome::Refused : Outcome::Error;
    return;
  }
  if (!a.target.tcp) {
    if (send(a.fd, "ping\n", 5, 0) < 0) a.outcome = Outcome::Error;
    a.lastSend = Clock::now();
    a.connected = true;
  }
}

int probe(const std::vector<Target>& targets, int timeoutMs) {
  std::vector<Attempt> attempts;
  for (const auto& t : targets) attempts.push_back(Attempt{t});
  for (auto& a : attempts) startAttempt(a);
  auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
  for (;;) {
    std::vector<pollfd> pfds;
    std::vector<Attempt*> owners;
    for (auto& a : attempts) {
      if (a.outcome != Outcome::Pending) continue;
      short ev = (a.target.tcp && !a.connected) ? POLLOUT : POLLIN;
      pfds.push_back({a.fd, ev, 0});
      owners.push_back(&a);
    }
    auto now = Clock::now();
    if (pfds.empty() || now >= deadline) break;
    // UDP has no handshake: resend every 200 ms in case the first datagram met an unresolved
    // neighbour.
    for (auto* a : owners) {
      if (!a->target.tcp && now - a->lastSend > std::chrono::milliseconds(200)) {
        if (send(a->fd, "ping\n", 5, 0) < 0 && errno == ECONNREFUSED) a->outcome = Outcome::Refused;
        a->lastSend = now;
      }
    }
    int wait = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
    if (wait > 100) wait = 100;
    int n = poll(pfds.data(), pfds.size(), wait);
    if (n < 0 && errno != EINTR) break;
    for (size_t i = 0; i < pfds.size(); ++i) {
      Attempt& a = *owners[i];
      if (!pfds[i].revents || a.outcome != Outcome::Pending) continue;
      if (a.target.tcp && !a.connected) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(a.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          a.outcome = err == ECONNREFUSED ? Outcome::Refused : Outcome::Error;
          if (err == ETIMEDOUT || err == EHOSTUNREACH) a.outcome = Outcome::Timeout;
          continue;
        }
        if (send(a.fd, "ping\n", 5, MSG_NOSIGNAL) < 0) {
          a.outcome = Outcome::Error;
          continue;
        }
        a.connected = true;
        continue;
      }
      char buf[64];
      ssize_t r = recv(a.fd, buf, sizeof(buf), 0);
      if (r > 0) {
        a.outcome = Outcome::Ok;
      } else if (r < 0 && errno == ECONNREFUSED) {
        a.outcome = Outcome::Refused;
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        a.outcome = Outcome::Error;
      }
    }
  }
  for (auto& a : attempts) {
    std::printf("%s %s\n", a.target.text.c_str(), outcomeName(a.outcome));
    if (a.fd >= 0) close(a.fd);
  }
  return 0;
}

int hold(const Target& t, int intervalMs, int count, int timeoutMs) {
  int fd = socket(t.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 1;
  timeval tv{timeoutMs / 1000, (timeoutMs % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&t.addr), t.addrLen) != 0) {
    std::printf("connect fail\n");
    std::fflush(stdout);
    close(fd);
    return 0;
  }
  std::printf("connect ok\n");
  std::fflush(stdout);
  for (int i = 0; i < count; ++i) {
    char buf[16];
    bool ok = send(fd, "ping\n", 5, MSG_NOSIGNAL) == 5 && recv(fd, buf, sizeof(buf), 0) > 0;
    std::printf("%d %s\n", i, ok ? "ok" : "fail");
    std::fflush(stdout);
    usleep(static_cast<useconds_t>(intervalMs) * 1000);
  }
  close(fd);
  return 0;
}

int spray(const std::string& cidr, int port, int durationMs) {
  auto slash = cidr.find('/');
  in_addr base{};
  if (slash == std::string::npos || inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &base) != 1) {
    return usage_error("spray: --cidr must be an IPv4 CIDR");
  }
  int len = std::atoi(cidr.c_str() + slash + 1);
  if (len < 24 || len > 32 || port <= 0 || port > 65535) return usage_error("spray: need a /24../32 and a port");
  uint32_t first = ntohl(base.s_addr) & (len == 32 ? 0xffffffffu : ~((1u << (32 - len)) - 1));
  uint32_t count = 1u << (32 - len);
  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udp < 0) return 1;
  auto end = Clock::now() + std::chrono::milliseconds(durationMs);
  long sent = 0;
  std::vector<int> pending;  // non-blocking connects in flight, closed every round
  while (Clock::now() < end) {
    for (uint32_t i = 1; i + 1 < count || (count == 1 && i == 1); ++i) {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port));
      a.sin_addr.s_addr = htonl(count == 1 ? first : first + i);
      sendto(udp, "spray\n", 6, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (t >= 0) {
        connect(t, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        pending.push_back(t);
      }
      ++sent;
      if (count == 1) break;
    }
    usleep(2000);
    for (int fd : pending) close(fd);
    pending.clear();
  }
  close(udp);
  std::printf("sent %ld\n", sent);
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: sluice-probe serve [--tcp P,P] [--udp P,P] [--log]\n"
               "       sluice-probe probe [--timeout-ms N] tcp:ADDR:PORT|udp:ADDR:PORT ...\n"
               "       sluice-probe spray --cidr A.B.C.D/24 --port N --duration-ms N\n"
               "       sluice-probe hold [--interval-ms N] [--count N] [--timeout-ms N] "
               "tcp:ADDR:PORT\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  std::vector<int> tcpPorts, udpPorts;
  int timeoutMs = 800, intervalMs = 100, count = 10, port = 0, durationMs = 1000;
  bool log = false;
  std::string cidr;
  std::vector<Target> targets;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--tcp") {
      tcpPorts = parsePorts(next());
    } else if (a == "--udp") {
      udpPorts = parsePorts(next());
    } else if (a == "--timeout-ms") {
      timeoutMs = std::atoi(next());
    } else if (a == "--interval-ms") {
      intervalMs = std::atoi(next());
    } else if (a == "--count") {
      count = std::atoi(next());
    } else if (a == "--log") {
      log = true;
    } else if (a == "--cidr") {
      cidr = next();
    } else if (a == "--port") {
      port = std::atoi(next());
    } else if (a == "--duration-ms") {
      durationMs = std::atoi(next());
    } else {
      Target t;
      if (!parseTarget(a, &t)) {
        std::fprintf(stderr, "sluice-probe: bad target \"%s\"\n", a.c_str());
        return 2;
      }
      targets.push_back(t);
    }
  }
  if (timeoutMs <= 0 || timeoutMs > 60000 || count < 0 || count > 100000) return usage();
  if (cmd == "serve") return serve(tcpPorts, udpPorts, log);
  if (cmd == "spray" && durationMs > 0 && durationMs <= 60000) return spray(cidr, port, durationMs);
  if (cmd == "probe") return probe(targets, timeoutMs);
  if (cmd == "hold" && targets.size() == 1 && targets[0].tcp) {
    return hold(targets[0], intervalMs, count, timeoutMs);
  }
  return usage();
}
