// Real TCP between network namespaces for the privileged datapath tests (bpf and nft): sockets
// created inside a namespace, echo servers, and connect/echo checks with bounded waits.
// IPv4 and IPv6 (an address with a ':' is IPv6).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

namespace sluice::e2e {

// A dropped SYN is never answered: do not wait for retransmits. Allowed traffic gets longer.
inline constexpr int kDeniedWaitMs = 700;
inline constexpr int kAllowedWaitMs = 2000;

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&ss); }
};
SockAddr addrOf(const char* ip, uint16_t port);

// A non-blocking TCP socket of `ip`'s family, created inside the namespace at path `ns`.
UniqueFd tcpSocketIn(const std::string& ns, const char* ip);

// A connection to ip:port from a socket made in `ns` (bound to `src` when given); invalid when
// it does not connect within `timeoutMs`.
UniqueFd connectFrom(const std::string& ns, const char* ip, uint16_t port, int timeoutMs,
                     const char* src = nullptr);
// One message there and back on an open connection.
bool echo(const UniqueFd& fd, int timeoutMs);
// Connects (kDeniedWaitMs) and echoes once (kAllowedWaitMs).
bool canConnect(const std::string& ns, const char* ip, uint16_t port);

// Echo servers on ports of one namespace; a thread polls them until destroyed (bounded by the
// 100 ms poll timeout).
class EchoServer {
 public:
  EchoServer(const std::string& ns, const char* ip, std::vector<uint16_t> ports);
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;
  bool ok() const { return ok_; }

 private:
  void loop();

  std::vector<UniqueFd> listeners_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool ok_ = false;
};

}  // namespace sluice::e2e
