#include "e2e/datapath/tcp_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "common/netns.h"

namespace sluice::e2e {

namespace {
bool isV6(const char* ip) { return std::strchr(ip, ':') != nullptr; }
}  // namespace

SockAddr addrOf(const char* ip, uint16_t port) {
  SockAddr a;
  if (isV6(ip)) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &s6->sin6_addr);
    a.len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s4->sin_addr);
    a.len = sizeof(sockaddr_in);
  }
  return a;
}

UniqueFd tcpSocketIn(const std::string& ns, const char* ip) {
  auto guard = NetnsGuard::enter(ns);
  if (!guard.ok()) return UniqueFd();
  return UniqueFd(
      ::socket(isV6(ip) ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
}

UniqueFd connectFrom(const std::string& ns, const char* ip, uint16_t port, int timeoutMs,
                     const char* src) {
  UniqueFd fd = tcpSocketIn(ns, ip);
  if (!fd) return fd;
  if (src != nullptr) {
    SockAddr local = addrOf(src, 0);
    if (::bind(fd.get(), local.get(), local.len) != 0) return UniqueFd();
  }
  SockAddr a = addrOf(ip, port);
  if (::connect(fd.get(), a.get(), a.len) != 0 && errno != EINPROGRESS) return UniqueFd();
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, timeoutMs) != 1) return UniqueFd();
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0 ? std::move(fd) : UniqueFd();
}

bool echo(const UniqueFd& fd, int timeoutMs) {
  const char msg[] = "ping";
  if (::send(fd.get(), msg, sizeof(msg), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(msg))) {
    return false;
  }
  size_t got = 0;
  char buf[sizeof(msg)];
  while (got < sizeof(msg)) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, timeoutMs) != 1) return false;
    ssize_t n = ::recv(fd.get(), buf + got, sizeof(buf) - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return std::memcmp(buf, msg, sizeof(msg)) == 0;
}

bool canConnect(const std::string& ns, const char* ip, uint16_t port) {
  UniqueFd fd = connectFrom(ns, ip, port, kDeniedWaitMs);
  return fd.valid() && echo(fd, kAllowedWaitMs);
}

EchoServer::EchoServer(const std::string& ns, const char* ip, std::vector<uint16_t> ports) {
  for (uint16_t port : ports) {
    UniqueFd fd = tcpSocketIn(ns, ip);
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    SockAddr a = addrOf(ip, port);
    if (!fd || ::bind(fd.get(), a.get(), a.len) != 0 || ::listen(fd.get(), 16) != 0) return;
    listeners_.push_back(std::move(fd));
  }
  ok_ = true;
  thread_ = std::thread([this] { loop(); });
}

EchoServer::~EchoServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void EchoServer::loop() {
  std::vector<UniqueFd> clients;
  while (!stop_) {
    std::vector<pollfd> fds;
    for (const auto& l : listeners_) fds.push_back({l.get(), POLLIN, 0});
    for (const auto& c : clients) fds.push_back({c.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (i < listeners_.size()) {
        int c = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c >= 0) clients.emplace_back(c);
        continue;
      }
      char buf[256];
      ssize_t n = ::recv(fds[i].fd, buf, sizeof(buf), 0);
      if (n > 0) {
        (void)::send(fds[i].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
      } else if (n == 0) {
        clients[i - listeners_.size()].reset();
      }
    }
    std::erase_if(clients, [](const UniqueFd& c) { return !c.valid(); });
  }
}

}  // namespace sluice::e2e
