#include "cni/wiring.h"

#include <fcntl.h>
#include <linux/neighbour.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "cni/sha256.h"
#include "common/netns.h"
#include "common/sysctl.h"

namespace sluice::cni {

namespace {

using netlink::Mac;
using netlink::Socket;

Error internal(Error e, const std::string& ctx) {
  return withCode(std::move(e).wrap(ctx), kErrInternal);
}

Mac randomMac() {
  Mac m{};
  if (::getrandom(m.data(), m.size(), 0) != static_cast<ssize_t>(m.size())) {
    // getrandom on 6 bytes only fails before the pool is initialised; any unique-ish value
    // will do for a point-to-point link.
    uint64_t t = static_cast<uint64_t>(::time(nullptr)) ^ static_cast<uint64_t>(::getpid()) << 20;
    for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<uint8_t>(t >> (8 * i));
  }
  m[0] = static_cast<uint8_t>((m[0] & 0xfe) | 0x02);  // unicast, locally administered
  return m;
}

IpAddr gatewayFor(Family f) {
  return IpAddr::parse(f == Family::V4 ? kGatewayV4 : kGatewayV6).value();
}

// Opens a netlink socket inside the pod's namespace and returns straight to the host one: the
// socket keeps acting on the pod, the thread does not stay there.
Result<Socket> podSocket(const std::string& netnsPath) {
  auto guard = NetnsGuard::enter(netnsPath);
  if (!guard.ok()) {
    return withCode(std::move(guard).error(), kErrUnknownContainer);
  }
  auto s = Socket::open();
  if (!s.ok()) return internal(std::move(s).error(), "pod netns");
  return s;
}

Status hostSysctls(const std::string& veth, bool v6) {
  // Per interface only: the node's global settings stay the operator's. Forwarding for IPv4
  // is decided by the input interface's flag, so pod egress is forwarded even where the
  // operator keeps conf.default.forwarding off; rp_filter=0 because asymmetric paths
  // (pod -> veth, reply via another uplink) are normal on a routed node.
  const std::string v4 = "net/ipv4/conf/" + veth + "/";
  for (auto [key, value] : {std::pair{"forwarding", "1"}, std::pair{"rp_filter", "0"},
                            std::pair{"send_redirects", "0"}}) {
    SLUICE_RETURN_IF_ERROR(sysctl::write(v4 + key, value));
  }
  if (!v6) return Status::Ok();
  const std::string v6p = "net/ipv6/conf/" + veth + "/";
  // accept_dad=0: the veth's link-local must be usable at once, it is the source of the
  // host's neighbour solicitations to the pod. accept_ra=0: routers do not live in pods.
  for (auto [key, value] : {std::pair{"disable_ipv6", "0"}, std::pair{"accept_dad", "0"},
                            std::pair{"accept_ra", "0"}, std::pair{"forwarding", "1"}}) {
    SLUICE_RETURN_IF_ERROR(sysctl::write(v6p + key, value));
  }
  // Linux 6.17+ can forward IPv6 per interface; older kernels need conf.all.forwarding, which
  // is the node operator's decision, so a missing knob is not an error.
  auto st = sysctl::write(v6p + "force_forwarding", "1");
  if (!st.ok() && st.error().code != ENOENT) return st;
  return Status::Ok();
}

}  // namespace

std::string hostVethName(const Attachment& a) {
  return "sl" + sha256Hex(a.containerId + "/" + a.ifname).substr(0, 11);
}

Mac hostVethMac(const Attachment& a) {
  auto d = sha256(a.containerId + "/" + a.ifname);
  Mac m{};
  for (size_t i = 0; i < m.size(); ++i) m[i] = d[8 + i];
  m[0] = static_cast<uint8_t>((m[0] & 0xfe) | 0x02);
  return m;
}

std::string vethAlias(const std::string& network, const Attachment& a) {
  return "sluice:" + network + ":" + a.ifname + ":" + a.containerId;
}

std::optional<Attachment> parseVethAlias(const std::string& network, const std::string& alias) {
  std::string prefix = "sluice:" + network + ":";
  if (alias.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  std::string rest = alias.substr(prefix.size());
  auto colon = rest.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= rest.size()) return std::nullopt;
  return Attachment{rest.substr(colon + 1), rest.substr(0, colon)};
}

Result<Wired> wire(const WiringSpec& spec, const StepHook& hook) {
  const Attachment& a = spec.attachment;
  Wired w;
  w.hostVeth = hostVethName(a);
  w.hostMac = hostVethMac(a);
  w.podMac = spec.podMac ? *spec.podMac : randomMac();
  w.mtu = spec.mtu;
  bool v6 =
      std::any_of(spec.ips.begin(), spec.ips.end(), [](const IpAddr& i) { return !i.isV4(); });

  auto hostNlR = Socket::open();
  if (!hostNlR.ok()) return internal(std::move(hostNlR).error(), "host netns");
  Socket hostNl = std::move(hostNlR).value();
  SLUICE_ASSIGN_OR_RETURN(Socket podNl, podSocket(spec.netnsPath));
  auto podNsR = openNetns(spec.netnsPath);
  if (!podNsR.ok()) return withCode(std::move(podNsR).error(), kErrUnknownContainer);
  UniqueFd podNs = std::move(podNsR).value();

  SLUICE_RETURN_IF_ERROR(hook("veth"));
  netlink::VethSpec vs{w.hostVeth, a.ifname, podNs.get(), spec.mtu, w.hostMac, w.podMac};
  auto created = hostNl.createVeth(vs);
  if (!created.ok() && created.error().code == EEXIST) {
    // A veth from an earlier ADD of this attachment (repeated ADD, or a crash before the
    // runtime's DEL): replace it. If the name is taken in the pod instead, report that.
    auto old = hostNl.link(w.hostVeth);
    if (old.ok()) {
      spdlog::info("veth={} replacing leftover host veth", w.hostVeth);
      SLUICE_RETURN_IF_ERROR(unwire(a));
      created = hostNl.createVeth(vs);
    }
    if (!created.ok() && created.error().code == EEXIST) {
      return makeError("interface " + a.ifname + " already exists in " + spec.netnsPath +
                           " (or host interface " + w.hostVeth + " exists)",
                       kErrInternal);
    }
  }
  if (!created.ok()) return internal(created.error(), "wire");

  // From here on every failure removes the veth; its routes and the pod end go with it.
  struct VethGuard {
    Socket& nl;
    std::string name;
    bool armed = true;
    ~VethGuard() {
      if (!armed) return;
      auto l = nl.link(name);
      if (l.ok()) (void)nl.deleteLink(l->index);
    }
  } guard{hostNl, w.hostVeth};

  auto host = hostNl.link(w.hostVeth);
  if (!host.ok()) return internal(host.error(), "wire");
  w.hostIfindex = host->index;

  SLUICE_RETURN_IF_ERROR(hook("host-sysctl"));
  if (auto st = hostSysctls(w.hostVeth, v6); !st.ok())
    return internal(st.error(), "host veth " + w.hostVeth);

  if (auto st = hostNl.setLinkAlias(w.hostIfindex, vethAlias(spec.network, a)); !st.ok()) {
    return internal(st.error(), "host veth " + w.hostVeth);
  }

  SLUICE_RETURN_IF_ERROR(hook("pod-addr"));
  auto pod = podNl.link(a.ifname);
  if (!pod.ok()) return internal(pod.error(), "pod");
  int podIndex = pod->index;
  for (const auto& ip : spec.ips) {
    // NODAD: the /128 is ours alone on a point-to-point link; waiting ~1 s for DAD would only
    // delay the pod's first packet.
    if (auto st = podNl.addAddress(podIndex, Prefix::host(ip), ip, !ip.isV4()); !st.ok()) {
      return internal(st.error(), "pod " + a.ifname);
    }
  }
  if (auto st = podNl.setLinkUp(podIndex, true); !st.ok())
    return internal(st.error(), "pod " + a.ifname);

  SLUICE_RETURN_IF_ERROR(hook("pod-routes"));
  for (Family f : {Family::V4, Family::V6}) {
    if (std::none_of(spec.ips.begin(), spec.ips.end(),
                     [f](const IpAddr& i) { return i.family() == f; })) {
      continue;
    }
    IpAddr gw = gatewayFor(f);
    if (auto st = podNl.setNeighbour(podIndex, gw, w.hostMac, NUD_PERMANENT); !st.ok()) {
      return internal(st.error(), "pod " + a.ifname);
    }
    netlink::RouteSpec def{Prefix(f == Family::V4 ? IpAddr::v4(0) : IpAddr::v6({}), 0), gw,
                           podIndex, /*onlink=*/f == Family::V4, false};
    if (auto st = podNl.addRoute(def); !st.ok()) return internal(st.error(), "pod " + a.ifname);
  }

  guard.armed = false;
  return w;
}

Status activate(const WiringSpec& spec, const Wired& w, const StepHook& hook) {
  auto hostNlR = Socket::open();
  if (!hostNlR.ok()) return internal(std::move(hostNlR).error(), "host netns");
  Socket hostNl = std::move(hostNlR).value();
  SLUICE_RETURN_IF_ERROR(hook("host-up"));
  if (auto st = hostNl.setLinkUp(w.hostIfindex, true); !st.ok()) {
    return internal(st.error(), "host veth " + w.hostVeth);
  }
  SLUICE_RETURN_IF_ERROR(hook("host-routes"));
  for (const auto& ip : spec.ips) {
    netlink::RouteSpec r{Prefix::host(ip), std::nullopt, w.hostIfindex, false, true};
    if (auto st = hostNl.addRoute(r); !st.ok()) return internal(st.error(), "host");
    if (auto st = hostNl.setNeighbour(w.hostIfindex, ip, w.podMac, NUD_STALE); !st.ok()) {
      return internal(st.error(), "host");
    }
  }
  return Status::Ok();
}

namespace {
// Returns true when a detached child took over destroying link `index`.
bool destroyInBackground(int index) {
  pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid > 0) return true;
  // Child: leave the runtime's session and its pipes, or the runtime would wait for us.
  ::setsid();
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
  }
  auto nl = Socket::open();
  if (nl.ok()) (void)nl->deleteLink(index);
  ::_exit(0);
}
}  // namespace

Status unwire(const Attachment& a, bool deferDestroy) {
  auto nl = Socket::open();
  if (!nl.ok()) return internal(std::move(nl).error(), "host netns");
  std::string name = hostVethName(a);
  auto l = nl->link(name);
  if (!l.ok()) {
    if (l.error().code == ENODEV) return Status::Ok();  // already gone: netns deleted, or DEL twice
    return internal(l.error(), "unwire");
  }
  if (deferDestroy) {
    auto down = nl->setLinkUp(l->index, false);
    if (down.ok()) {
      std::fflush(nullptr);  // nothing buffered may be written twice by the child
      if (destroyInBackground(l->index)) return Status::Ok();
    } else if (down.error().code == ENODEV) {
      return Status::Ok();
    }
  }
  auto st = nl->deleteLink(l->index);
  if (!st.ok() && st.error().code != ENODEV) return internal(st.error(), "unwire " + name);
  return Status::Ok();
}

Status checkWiring(const WiringSpec& spec, const CniResult& prev) {
  const Attachment& a = spec.attachment;
  std::vector<std::string> problems;
  auto hostNl = Socket::open();
  if (!hostNl.ok()) return internal(std::move(hostNl).error(), "host netns");
  std::string name = hostVethName(a);
  auto host = hostNl->link(name);
  std::string prevHostMac, prevPodMac;
  for (const auto& i : prev.interfaces) {
    if (i.sandbox.empty() && i.name == name) prevHostMac = i.mac;
    if (!i.sandbox.empty() && i.name == a.ifname) prevPodMac = i.mac;
  }
  if (!host.ok()) {
    problems.push_back("host veth " + name + " is missing");
  } else {
    if (!host->up) problems.push_back("host veth " + name + " is down");
    if (!prevHostMac.empty() && netlink::macToString(host->mac) != prevHostMac) {
      problems.push_back("host veth " + name + " has MAC " + netlink::macToString(host->mac) +
                         ", prevResult says " + prevHostMac);
    }
    for (Family f : {Family::V4, Family::V6}) {
      auto routes = hostNl->routes(f);
      if (!routes.ok()) return internal(routes.error(), "check");
      for (const auto& ip : spec.ips) {
        if (ip.family() != f) continue;
        bool found = std::any_of(routes->begin(), routes->end(), [&](const netlink::RouteInfo& r) {
          return r.dst == Prefix::host(ip) && r.oif == host->index;
        });
        if (!found)
          problems.push_back("host route " + Prefix::host(ip).toString() + " dev " + name +
                             " is missing");
      }
    }
  }

  auto podNl = podSocket(spec.netnsPath);
  if (!podNl.ok()) return std::move(podNl).error();
  auto pod = podNl->link(a.ifname);
  if (!pod.ok()) {
    problems.push_back("interface " + a.ifname + " is missing in " + spec.netnsPath);
  } else {
    if (!pod->up) problems.push_back("interface " + a.ifname + " is down");
    if (!prevPodMac.empty() && netlink::macToString(pod->mac) != prevPodMac) {
      problems.push_back("interface " + a.ifname + " has MAC " + netlink::macToString(pod->mac) +
                         ", prevResult says " + prevPodMac);
    }
    if (spec.mtu > 0 && pod->mtu != spec.mtu) {
      problems.push_back("interface " + a.ifname + " has MTU " + std::to_string(pod->mtu) +
                         ", config says " + std::to_string(spec.mtu));
    }
    auto addrs = podNl->addresses(pod->index);
    if (!addrs.ok()) return internal(addrs.error(), "check");
    for (const auto& ip : prev.ips) {
      bool found = std::any_of(addrs->begin(), addrs->end(), [&](const netlink::AddrInfo& x) {
        return x.address == ip.address && x.prefix.len() == ip.prefixLen;
      });
      if (!found) {
        problems.push_back("address " + ip.address.toString() + "/" + std::to_string(ip.prefixLen) +
                           " is missing on " + a.ifname);
      }
    }
    for (Family f : {Family::V4, Family::V6}) {
      if (std::none_of(spec.ips.begin(), spec.ips.end(),
                       [f](const IpAddr& i) { return i.family() == f; })) {
        continue;
      }
      auto routes = podNl->routes(f);
      if (!routes.ok()) return internal(routes.error(), "check");
      IpAddr gw = gatewayFor(f);
      bool found = std::any_of(routes->begin(), routes->end(), [&](const netlink::RouteInfo& r) {
        return r.dst.len() == 0 && r.gateway == gw && r.oif == pod->index;
      });
      if (!found)
        problems.push_back("default route via " + gw.toString() + " is missing in the pod");
    }
  }
  if (problems.empty()) return Status::Ok();
  std::string msg = "CHECK failed: ";
  for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
  return makeError(msg, kErrCheckFailed);
}

Status gcVeths(const std::string& network, const std::vector<Attachment>& valid) {
  auto nl = Socket::open();
  if (!nl.ok()) return internal(std::move(nl).error(), "host netns");
  auto links = nl->links();
  if (!links.ok()) return internal(links.error(), "gc");
  for (const auto& l : *links) {
    if (l.kind != "veth") continue;
    auto att = parseVethAlias(network, l.alias);
    // Only veths this network made, named as we name them: never an operator's interface.
    if (!att || l.name != hostVethName(*att)) continue;
    if (std::find(valid.begin(), valid.end(), *att) != valid.end()) continue;
    spdlog::info("veth={} container={} ifname={} gc: removing stale veth", l.name, att->containerId,
                 att->ifname);
    auto st = nl->deleteLink(l.index);
    if (!st.ok() && st.error().code != ENODEV) return internal(st.error(), "gc " + l.name);
  }
  return Status::Ok();
}

}  // namespace sluice::cni
