// sluice-attack: the hostile pod of the adversarial e2e suite (e2e/adversarial). Run inside a
// pod's (or a node's) network namespace; it crafts whole IPv4/IPv6 packets on raw sockets, so
// the source address, hop limit and ICMP contents are whatever the test asks for.
//
//   sluice-attack send --src A --dst B --dport N [--sport N] [--proto udp|tcp] [--count N]
//                      [--marker S]
//       UDP datagrams (or TCP SYNs) from any source. The payload carries the marker.
//   sluice-attack nd --type ns|na --src A --dst B --target T [--count N] [--marker S]
//       ICMPv6 neighbour solicitation/advertisement, hop limit 255, marker appended as payload.
//   sluice-attack icmp-error --kind unreach|ptb|timex --src A --dst B --inner-src C
//                      --inner-dst D --inner-sport N --inner-dport N [--mtu N] [--count N]
//                      [--marker S]
//       An ICMP/ICMPv6 error to B quoting the UDP datagram C:sport -> D:dport.
//   sluice-attack flood --src A --dst B --flows N [--packets-per-flow N] [--duration-ms N]
//       N distinct UDP flows (source/destination ports vary), as fast as the socket takes them.
//   sluice-attack sniff --marker S [--iface eth0] [--duration-ms N]
//       Captures what arrives on the interface; prints "got <proto> <src> -> <dst>" for each
//       received packet holding the marker, then "count N". Prints "sniffing" once bound.
//   sluice-attack push-serve --port N [--interval-ms N] [--duration-ms N]
//       TCP server that writes "tick\n" every interval to each connection, unprompted.
//   sluice-attack push-read --count N [--timeout-ms N] ADDR:PORT
//       Connects and reads ticks; prints "<i> ok" per tick or "<i> fail" when one is late.
//
// Every mode is bounded in time or count: nothing here can hang a test.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<uint8_t>;

// Owns a file descriptor: every socket here is closed on every path.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoIcmp6 = 58;
constexpr int kMaxCount = 10'000'000;

struct Addr {
  bool v4 = true;
  uint8_t b[16] = {};  // v4: first 4 bytes
  static bool parse(const std::string& s, Addr* out) {
    if (inet_pton(AF_INET, s.c_str(), out->b) == 1) {
      out->v4 = true;
      return true;
    }
    if (inet_pton(AF_INET6, s.c_str(), out->b) == 1) {
      out->v4 = false;
      return true;
    }
    return false;
  }
  size_t len() const { return v4 ? 4 : 16; }
};

std::string addrText(const uint8_t* b, bool v4) {
  char buf[INET6_ADDRSTRLEN] = "?";
  inet_ntop(v4 ? AF_INET : AF_INET6, b, buf, sizeof(buf));
  return buf;
}

void put16(Bytes& p, size_t off, uint16_t v) {
  p[off] = static_cast<uint8_t>(v >> 8);
  p[off + 1] = static_cast<uint8_t>(v);
}

void put32(Bytes& p, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[off + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

uint32_t sum16(const uint8_t* d, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += static_cast<uint32_t>(d[i] << 8 | d[i + 1]);
  if (n & 1) acc += static_cast<uint32_t>(d[n - 1] << 8);
  return acc;
}

uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc);
}

// Internet checksum of an L4 segment with the pseudo-header of its family.
uint16_t l4Checksum(const Addr& src, const Addr& dst, uint8_t proto, const Bytes& seg) {
  uint32_t acc = sum16(src.b, src.len());
  acc = sum16(dst.b, dst.len(), acc);
  acc += proto;
  acc += static_cast<uint32_t>(seg.size() & 0xffff) + static_cast<uint32_t>(seg.size() >> 16);
  return fold(sum16(seg.data(), seg.size(), acc));
}

Bytes udpSegment(const Addr& src, const Addr& dst, uint16_t sport, uint16_t dport,
                 const std::string& payload) {
  Bytes s(8 + payload.size());
  put16(s, 0, sport);
  put16(s, 2, dport);
  put16(s, 4, static_cast<uint16_t>(s.size()));
  std::memcpy(s.data() + 8, payload.data(), payload.size());
  uint16_t c = l4Checksum(src, dst, kProtoUdp, s);
  put16(s, 6, c == 0 ? 0xffff : c);
  return s;
}

Bytes tcpSyn(const Addr& src, const Addr& dst, uint16_t sport, uint16_t dport,
             const std::string& payload) {
  Bytes s(20 + payload.size());
  put16(s, 0, sport);
  put16(s, 2, dport);
  put32(s, 4, 0x5a5a0000u + sport);
  s[12] = 5 << 4;
  s[13] = 0x02;  // SYN
  put16(s, 14, 64240);
  std::memcpy(s.data() + 20, payload.data(), payload.size());
  put16(s, 16, l4Checksum(src, dst, kProtoTcp, s));
  return s;
}

Bytes icmp6Message(const Addr& src, const Addr& dst, uint8_t type, uint8_t code,
                   const Bytes& body) {
  Bytes s(4 + body.size());
  s[0] = type;
  s[1] = code;
  std::memcpy(s.data() + 4, body.data(), body.size());
  put16(s, 2, l4Checksum(src, dst, kProtoIcmp6, s));
  return s;
}

Bytes icmp4Message(uint8_t type, uint8_t code, const Bytes& body) {
  Bytes s(4 + body.size());
  s[0] = type;
  s[1] = code;
  std::memcpy(s.data() + 4, body.data(), body.size());
  put16(s, 2, fold(sum16(s.data(), s.size())));
  return s;
}

// A whole IP packet (header included) around an L4 segment.
Bytes ipPacket(const Addr& src, const Addr& dst, uint8_t proto, const Bytes& seg, uint8_t ttl) {
  Bytes p;
  if (src.v4) {
    p.resize(20 + seg.size());
    p[0] = 0x45;
    put16(p, 2, static_cast<uint16_t>(p.size()));
    put16(p, 4, static_cast<uint16_t>(getpid()));
    p[8] = ttl;
    p[9] = proto;
    std::memcpy(p.data() + 12, src.b, 4);
    std::memcpy(p.data() + 16, dst.b, 4);
    put16(p, 10, fold(sum16(p.data(), 20)));
    std::memcpy(p.data() + 20, seg.data(), seg.size());
  } else {
    p.resize(40 + seg.size());
    p[0] = 0x60;
    put16(p, 4, static_cast<uint16_t>(seg.size()));
    p[6] = proto;
    p[7] = ttl;
    std::memcpy(p.data() + 8, src.b, 16);
    std::memcpy(p.data() + 24, dst.b, 16);
    std::memcpy(p.data() + 40, seg.data(), seg.size());
  }
  return p;
}

// Raw sockets with the IP header supplied by us: the kernel routes on the destination and
// sends the bytes as they are (source, TTL/hop limit included).
class RawSender {
 public:
  explicit RawSender(bool v4) : v4_(v4) {
    fd_ = Fd(socket(v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
    if (!ok()) std::fprintf(stderr, "sluice-attack: raw socket: %s\n", std::strerror(errno));
    int big = 4 << 20;
    if (ok()) setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  }
  bool ok() const { return fd_.get() >= 0; }
  // Returns false on an error other than a full buffer (which the flood expects).
  bool send(const Bytes& pkt, const Addr& dst) {
    sockaddr_storage ss{};
    socklen_t len;
    if (v4_) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      std::memcpy(&a->sin_addr, dst.b, 4);
      len = sizeof(*a);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      std::memcpy(&a->sin6_addr, dst.b, 16);
      len = sizeof(*a);
    }
    if (sendto(fd_.get(), pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) >= 0) {
      return true;
    }
    if (errno == ENOBUFS || errno == EAGAIN) return true;
    std::fprintf(stderr, "sluice-attack: sendto %s: %s\n", addrText(dst.b, dst.v4).c_str(),
                 std::strerror(errno));
    return false;
  }

 private:
  bool v4_;
  Fd fd_;
};

struct Options {
  std::map<std::string, std::string> kv;
  std::vector<std::string> positional;
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  long num(const std::string& k, long def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::strtol(it->second.c_str(), nullptr, 10);
  }
};

int fail(const std::string& msg) {
  std::fprintf(stderr, "sluice-attack: %s\n", msg.c_str());
  return 2;
}

bool needAddr(const Options& o, const std::string& key, Addr* out) {
  if (Addr::parse(o.get(key), out)) return true;
  std::fprintf(stderr, "sluice-attack: --%s: not an address: \"%s\"\n", key.c_str(),
               o.get(key).c_str());
  return false;
}

bool sendCount(RawSender& s, const Bytes& pkt, const Addr& dst, long count) {
  for (long i = 0; i < count; ++i) {
    if (!s.send(pkt, dst)) return false;
    // Spread the packets a little: a burst could meet an unresolved neighbour.
    if (count > 1) usleep(20'000);
  }
  return true;
}

int cmdSend(const Options& o) {
  Addr src, dst;
  if (!needAddr(o, "src", &src) || !needAddr(o, "dst", &dst)) return 2;
  if (src.v4 != dst.v4) return fail("send: --src and --dst must be one family");
  long dport = o.num("dport", 0), sport = o.num("sport", 40000), count = o.num("count", 1);
  if (dport <= 0 || dport > 65535 || sport <= 0 || sport > 65535) return fail("send: bad port");
  if (count < 1 || count > 1000) return fail("send: --count must be 1..1000");
  std::string proto = o.get("proto", "udp");
  if (proto != "tcp" && proto != "udp") return fail("send: --proto must be udp or tcp");
  std::string marker = o.get("marker", "sluice-attack");
  auto p16 = [](long v) { return static_cast<uint16_t>(v); };
  Bytes seg = proto == "tcp" ? tcpSyn(src, dst, p16(sport), p16(dport), marker)
                             : udpSegment(src, dst, p16(sport), p16(dport), marker);
  RawSender s(src.v4);
  if (!s.ok()) return 1;
  Bytes pkt = ipPacket(src, dst, proto == "tcp" ? kProtoTcp : kProtoUdp, seg, 64);
  if (!sendCount(s, pkt, dst, count)) return 1;
  std::printf("sent %ld\n", count);
  return 0;
}

int cmdNd(const Options& o) {
  Addr src, dst, target;
  if (!needAddr(o, "src", &src) || !needAddr(o, "dst", &dst) || !needAddr(o, "target", &target)) {
    return 2;
  }
  if (src.v4 || dst.v4 || target.v4) return fail("nd: IPv6 addresses only");
  std::string type = o.get("type", "ns");
  if (type != "ns" && type != "na") return fail("nd: --type must be ns or na");
  long count = o.num("count", 1);
  if (count < 1 || count > 1000) return fail("nd: --count must be 1..1000");
  std::string marker = o.get("marker", "sluice-attack");
  // Body after type/code/checksum: 4 bytes (reserved, or NA flags), the target, then the
  // arbitrary payload an attacker would smuggle.
  Bytes body(4 + 16 + marker.size());
  if (type == "na") body[0] = 0x60;  // solicited + override
  std::memcpy(body.data() + 4, target.b, 16);
  std::memcpy(body.data() + 20, marker.data(), marker.size());
  Bytes seg = icmp6Message(src, dst, type == "ns" ? 135 : 136, 0, body);
  RawSender s(false);
  if (!s.ok()) return 1;
  if (!sendCount(s, ipPacket(src, dst, kProtoIcmp6, seg, 255), dst, count)) return 1;
  std::printf("sent %ld\n", count);
  return 0;
}

int cmdIcmpError(const Options& o) {
  Addr src, dst, isrc, idst;
  if (!needAddr(o, "src", &src) || !needAddr(o, "dst", &dst) || !needAddr(o, "inner-src", &isrc) ||
      !needAddr(o, "inner-dst", &idst)) {
    return 2;
  }
  if (src.v4 != dst.v4 || isrc.v4 != src.v4 || idst.v4 != src.v4) {
    return fail("icmp-error: all addresses must be one family");
  }
  long isport = o.num("inner-sport", 0), idport = o.num("inner-dport", 0);
  long mtu = o.num("mtu", src.v4 ? 1400 : 1280), count = o.num("count", 1);
  if (isport <= 0 || isport > 65535 || idport <= 0 || idport > 65535) {
    return fail("icmp-error: bad inner port");
  }
  if (count < 1 || count > 1000) return fail("icmp-error: --count must be 1..1000");
  std::string kind = o.get("kind", "unreach");
  std::string marker = o.get("marker", "sluice-attack");
  // The quoted datagram: what the victim would have sent (header, UDP header, its payload).
  Bytes inner = ipPacket(
      isrc, idst, kProtoUdp,
      udpSegment(isrc, idst, static_cast<uint16_t>(isport), static_cast<uint16_t>(idport), marker),
      64);
  Bytes body(4 + inner.size());
  std::memcpy(body.data() + 4, inner.data(), inner.size());
  uint8_t type, code;
  if (src.v4) {
    if (kind == "unreach") {
      type = 3, code = 3;
    } else if (kind == "ptb") {
      type = 3, code = 4;
      put16(body, 2, static_cast<uint16_t>(mtu));
    } else if (kind == "timex") {
      type = 11, code = 0;
    } else {
      return fail("icmp-error: --kind must be unreach, ptb or timex");
    }
  } else {
    if (kind == "unreach") {
      type = 1, code = 4;
    } else if (kind == "ptb") {
      type = 2, code = 0;
      put32(body, 0, static_cast<uint32_t>(mtu));
    } else if (kind == "timex") {
      type = 3, code = 0;
    } else {
      return fail("icmp-error: --kind must be unreach, ptb or timex");
    }
  }
  Bytes seg = src.v4 ? icmp4Message(type, code, body) : icmp6Message(src, dst, type, code, body);
  RawSender s(src.v4);
  if (!s.ok()) return 1;
  if (!sendCount(s, ipPacket(src, dst, src.v4 ? kProtoIcmp : kProtoIcmp6, seg, 64), dst, count)) {
    return 1;
  }
  std::printf("sent %ld\n", count);
  return 0;
}

int cmdFlood(const Options& o) {
  Addr src, dst;
  if (!needAddr(o, "src", &src) || !needAddr(o, "dst", &dst)) return 2;
  if (src.v4 != dst.v4) return fail("flood: --src and --dst must be one family");
  long flows = o.num("flows", 0), durationMs = o.num("duration-ms", 30000);
  long perFlow = o.num("packets-per-flow", 1);
  if (flows < 1 || flows > kMaxCount) return fail("flood: --flows must be 1..10000000");
  if (durationMs < 1 || durationMs > 120000) return fail("flood: --duration-ms must be 1..120000");
  if (perFlow < 1 || perFlow > 16) return fail("flood: --packets-per-flow must be 1..16");
  RawSender s(src.v4);
  if (!s.ok()) return 1;
  auto end = Clock::now() + std::chrono::milliseconds(durationMs);
  long sent = 0;
  for (; sent < flows; ++sent) {
    if ((sent & 1023) == 0 && Clock::now() > end) break;
    // Distinct 5-tuples: source port cycles fastest, the destination port counts the rounds.
    auto sport = static_cast<uint16_t>(1024 + sent % 64000);
    auto dport = static_cast<uint16_t>(1024 + (sent / 64000) % 64000);
    Bytes pkt = ipPacket(src, dst, kProtoUdp, udpSegment(src, dst, sport, dport, "f"), 64);
    // More than one packet per flow makes each junk entry look as used as a real one, so an
    // LRU table cannot tell them from the victim's.
    for (long k = 0; k < perFlow; ++k) {
      if (!s.send(pkt, dst)) return 1;
    }
  }
  std::printf("sent %ld\n", sent);
  return 0;
}

int cmdSniff(const Options& o) {
  std::string iface = o.get("iface", "eth0");
  std::string marker = o.get("marker");
  long durationMs = o.num("duration-ms", 3000);
  if (marker.empty()) return fail("sniff: --marker is required");
  if (durationMs < 1 || durationMs > 120000) return fail("sniff: --duration-ms must be 1..120000");
  unsigned ifindex = if_nametoindex(iface.c_str());
  if (ifindex == 0) return fail("sniff: no interface " + iface);
  Fd fd(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  if (fd.get() < 0) return fail(std::string("sniff: packet socket: ") + std::strerror(errno));
  sockaddr_ll ll{};
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(ETH_P_ALL);
  ll.sll_ifindex = static_cast<int>(ifindex);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ll), sizeof(ll)) != 0) {
    return fail(std::string("sniff: bind: ") + std::strerror(errno));
  }
  std::printf("sniffing\n");
  std::fflush(stdout);
  auto end = Clock::now() + std::chrono::milliseconds(durationMs);
  long got = 0;
  uint8_t buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    sockaddr_ll from{};
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(fd.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fl);
    // Only what the pod received: its own transmissions show up here too.
    if (n < 34 || from.sll_pkttype == PACKET_OUTGOING) continue;
    std::string_view frame(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
    if (frame.find(marker) == std::string_view::npos) continue;
    const uint8_t* ip = buf + 14;
    bool v4 = (ip[0] >> 4) == 4;
    if (!v4 && n < 54) continue;
    ++got;
    std::printf("got %u %s -> %s\n", v4 ? ip[9] : ip[6],
                addrText(v4 ? ip + 12 : ip + 8, v4).c_str(),
                addrText(v4 ? ip + 16 : ip + 24, v4).c_str());
    std::fflush(stdout);
  }
  std::printf("count %ld\n", got);
  return 0;
}

int cmdPushServe(const Options& o) {
  long port = o.num("port", 0), intervalMs = o.num("interval-ms", 1000);
  long durationMs = o.num("duration-ms", 120000);
  if (port <= 0 || port > 65535 || intervalMs < 1 || intervalMs > 60000 || durationMs < 1 ||
      durationMs > 600000) {
    return fail("push-serve: bad --port, --interval-ms or --duration-ms");
  }
  Fd lfd(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int zero = 0, one = 1;
  setsockopt(lfd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  setsockopt(lfd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(static_cast<uint16_t>(port));
  if (lfd.get() < 0 || bind(lfd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(lfd.get(), 16) != 0) {
    return fail(std::string("push-serve: listen: ") + std::strerror(errno));
  }
  std::printf("serving\n");
  std::fflush(stdout);
  constexpr size_t kMaxConns = 16;
  std::vector<Fd> conns;
  auto end = Clock::now() + std::chrono::milliseconds(durationMs);
  auto next = Clock::now();
  while (Clock::now() < end) {
    pollfd p{lfd.get(), POLLIN, 0};
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count();
    if (poll(&p, 1, static_cast<int>(wait < 0 ? 0 : wait)) > 0) {
      Fd c(accept4(lfd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      // A first tick at once: the reader sees the connection work before any gap.
      if (c.get() >= 0 && conns.size() < kMaxConns &&
          send(c.get(), "tick\n", 5, MSG_NOSIGNAL) == 5) {
        conns.push_back(std::move(c));
      }
      continue;
    }
    next += std::chrono::milliseconds(intervalMs);
    for (Fd& c : conns) {
      if (send(c.get(), "tick\n", 5, MSG_NOSIGNAL) < 0 && errno != EAGAIN) c.reset();
    }
    std::erase_if(conns, [](const Fd& c) { return c.get() < 0; });
  }
  return 0;
}

int cmdPushRead(const Options& o) {
  long count = o.num("count", 10), timeoutMs = o.num("timeout-ms", 3000);
  if (o.positional.size() != 1 || count < 1 || count > 10000 || timeoutMs < 1 ||
      timeoutMs > 60000) {
    return fail("push-read: need one ADDR:PORT, --count 1..10000, --timeout-ms 1..60000");
  }
  const std::string& t = o.positional[0];
  auto colon = t.rfind(':');
  if (colon == std::string::npos) return fail("push-read: target must be ADDR:PORT");
  std::string host = t.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  Addr addr;
  if (!Addr::parse(host, &addr)) return fail("push-read: bad address " + host);
  sockaddr_storage ss{};
  socklen_t len;
  auto port = htons(static_cast<uint16_t>(std::atoi(t.c_str() + colon + 1)));
  if (addr.v4) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = port;
    std::memcpy(&a->sin_addr, addr.b, 4);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = port;
    std::memcpy(&a->sin6_addr, addr.b, 16);
    len = sizeof(*a);
  }
  Fd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{timeoutMs / 1000, static_cast<suseconds_t>((timeoutMs % 1000) * 1000)};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (fd.get() < 0 || connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    std::printf("connect fail\n");
    return 0;
  }
  std::printf("connect ok\n");
  std::fflush(stdout);
  std::string pending;
  for (long i = 0; i < count; ++i) {
    bool ok = false;
    while (!ok) {
      if (auto nl = pending.find('\n'); nl != std::string::npos) {
        pending.erase(0, nl + 1);
        ok = true;
        break;
      }
      char buf[64];
      ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
      if (n <= 0) break;
      pending.append(buf, static_cast<size_t>(n));
    }
    std::printf("%ld %s\n", i, ok ? "ok" : "fail");
    std::fflush(stdout);
    if (!ok) break;
  }
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: sluice-attack send|nd|icmp-error|flood|sniff|push-serve|push-read "
               "[--key value ...] (see the comment at the top of attack.cc)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  Options o;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0) {
      if (i + 1 >= argc) return fail("missing value for " + a);
      o.kv[a.substr(2)] = argv[++i];
    } else {
      o.positional.push_back(a);
    }
  }
  if (cmd == "send") return cmdSend(o);
  if (cmd == "nd") return cmdNd(o);
  if (cmd == "icmp-error") return cmdIcmpError(o);
  if (cmd == "flood") return cmdFlood(o);
  if (cmd == "sniff") return cmdSniff(o);
  if (cmd == "push-serve") return cmdPushServe(o);
  if (cmd == "push-read") return cmdPushRead(o);
  return usage();
}
