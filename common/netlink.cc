#include "common/netlink.h"

#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if_arp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace sluice::netlink {

namespace {

// Large enough for a dump batch on a busy host; the kernel caps each recv at this size.
constexpr size_t kRecvBuf = 32 * 1024;
constexpr size_t kSendBuf = 4096;

int familyOf(Family f) { return f == Family::V4 ? AF_INET : AF_INET6; }
size_t addrLen(const IpAddr& a) { return a.isV4() ? 4 : 16; }

IpAddr addrFrom(int family, const void* data) {
  std::array<uint8_t, 16> b{};
  if (family == AF_INET) {
    std::memcpy(b.data(), data, 4);
    return IpAddr::v4((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) |
                      b[3]);
  }
  std::memcpy(b.data(), data, 16);
  return IpAddr::v6(b);
}

struct AttrTable {
  std::vector<const nlattr*> tb;
  explicit AttrTable(size_t max) : tb(max + 1, nullptr) {}
};

int collectAttr(const nlattr* attr, void* data) {
  auto* t = static_cast<AttrTable*>(data);
  uint16_t type = mnl_attr_get_type(attr);
  if (type < t->tb.size()) t->tb[type] = attr;
  return MNL_CB_OK;
}

std::string attrString(const nlattr* a) {
  if (!a) return {};
  const char* s = mnl_attr_get_str(a);
  size_t n = strnlen(s, mnl_attr_get_payload_len(a));
  return std::string(s, n);
}

void parseLink(const void* p, void* data) {
  auto* nlh = static_cast<const nlmsghdr*>(p);
  if (nlh->nlmsg_type != RTM_NEWLINK) return;
  auto* ifm = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  AttrTable t(IFLA_MAX);
  mnl_attr_parse(nlh, sizeof(*ifm), collectAttr, &t);
  LinkInfo l;
  l.index = ifm->ifi_index;
  l.up = (ifm->ifi_flags & IFF_UP) != 0;
  l.name = attrString(t.tb[IFLA_IFNAME]);
  l.alias = attrString(t.tb[IFLA_IFALIAS]);
  if (t.tb[IFLA_MTU]) l.mtu = static_cast<int>(mnl_attr_get_u32(t.tb[IFLA_MTU]));
  if (t.tb[IFLA_LINK]) l.peerIndex = static_cast<int>(mnl_attr_get_u32(t.tb[IFLA_LINK]));
  if (t.tb[IFLA_ADDRESS] && mnl_attr_get_payload_len(t.tb[IFLA_ADDRESS]) == 6) {
    std::memcpy(l.mac.data(), mnl_attr_get_payload(t.tb[IFLA_ADDRESS]), 6);
  }
  if (t.tb[IFLA_LINKINFO]) {
    AttrTable info(IFLA_INFO_MAX);
    mnl_attr_parse_nested(t.tb[IFLA_LINKINFO], collectAttr, &info);
    l.kind = attrString(info.tb[IFLA_INFO_KIND]);
  }
  static_cast<std::vector<LinkInfo>*>(data)->push_back(std::move(l));
}

void parseAddr(const void* p, void* data) {
  auto* nlh = static_cast<const nlmsghdr*>(p);
  if (nlh->nlmsg_type != RTM_NEWADDR) return;
  auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
  AttrTable t(IFA_MAX);
  mnl_attr_parse(nlh, sizeof(*ifa), collectAttr, &t);
  // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
  const nlattr* a = t.tb[IFA_LOCAL] ? t.tb[IFA_LOCAL] : t.tb[IFA_ADDRESS];
  if (!a) return;
  AddrInfo info;
  info.index = static_cast<int>(ifa->ifa_index);
  info.address = addrFrom(ifa->ifa_family, mnl_attr_get_payload(a));
  info.prefix = Prefix(info.address, ifa->ifa_prefixlen);
  static_cast<std::vector<AddrInfo>*>(data)->push_back(info);
}

void parseRoute(const void* p, void* data) {
  auto* nlh = static_cast<const nlmsghdr*>(p);
  if (nlh->nlmsg_type != RTM_NEWROUTE) return;
  auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  AttrTable t(RTA_MAX);
  mnl_attr_parse(nlh, sizeof(*rtm), collectAttr, &t);
  uint32_t table = t.tb[RTA_TABLE] ? mnl_attr_get_u32(t.tb[RTA_TABLE]) : rtm->rtm_table;
  if (table != RT_TABLE_MAIN || rtm->rtm_type != RTN_UNICAST) return;
  RouteInfo r;
  r.table = static_cast<uint8_t>(table);
  r.protocol = rtm->rtm_protocol;
  IpAddr zero = rtm->rtm_family == AF_INET ? IpAddr::v4(0) : IpAddr::v6({});
  IpAddr dst = t.tb[RTA_DST] ? addrFrom(rtm->rtm_family, mnl_attr_get_payload(t.tb[RTA_DST])) : zero;
  r.dst = Prefix(dst, rtm->rtm_dst_len);
  if (t.tb[RTA_GATEWAY]) r.gateway = addrFrom(rtm->rtm_family, mnl_attr_get_payload(t.tb[RTA_GATEWAY]));
  if (t.tb[RTA_OIF]) r.oif = static_cast<int>(mnl_attr_get_u32(t.tb[RTA_OIF]));
  static_cast<std::vector<RouteInfo>*>(data)->push_back(r);
}

void parseNeigh(const void* p, void* data) {
  auto* nlh = static_cast<const nlmsghdr*>(p);
  if (nlh->nlmsg_type != RTM_NEWNEIGH) return;
  auto* nd = static_cast<const ndmsg*>(mnl_nlmsg_get_payload(nlh));
  AttrTable t(NDA_MAX);
  mnl_attr_parse(nlh, sizeof(*nd), collectAttr, &t);
  if (!t.tb[NDA_DST]) return;
  NeighInfo n;
  n.index = nd->ndm_ifindex;
  n.state = nd->ndm_state;
  n.address = addrFrom(nd->ndm_family, mnl_attr_get_payload(t.tb[NDA_DST]));
  if (t.tb[NDA_LLADDR] && mnl_attr_get_payload_len(t.tb[NDA_LLADDR]) == 6) {
    Mac m;
    std::memcpy(m.data(), mnl_attr_get_payload(t.tb[NDA_LLADDR]), 6);
    n.mac = m;
  }
  static_cast<std::vector<NeighInfo>*>(data)->push_back(n);
}

nlmsghdr* startMsg(std::vector<char>& buf, uint16_t type, uint16_t flags) {
  buf.assign(kSendBuf, 0);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  return nlh;
}

}  // namespace

std::string macToString(const Mac& m) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                m[5]);
  return buf;
}

Result<Mac> parseMac(std::string_view text) {
  Mac m{};
  if (text.size() != 17) return makeError("invalid MAC address \"" + std::string(text) + "\"");
  for (int i = 0; i < 6; ++i) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hex(text[i * 3]), lo = hex(text[i * 3 + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':')) {
      return makeError("invalid MAC address \"" + std::string(text) + "\"");
    }
    m[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return m;
}

void Socket::Deleter::operator()(mnl_socket* s) const { mnl_socket_close(s); }

Socket::Socket(mnl_socket* s) : sock_(s), portId_(mnl_socket_get_portid(s)) {}
Socket::Socket(Socket&&) noexcept = default;
Socket& Socket::operator=(Socket&&) noexcept = default;
Socket::~Socket() = default;

Result<Socket> Socket::open() {
  mnl_socket* s = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (!s) return makeError(std::string("netlink socket: ") + std::strerror(errno), errno);
  Socket sock(s);
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) {
    return makeError(std::string("netlink bind: ") + std::strerror(errno), errno);
  }
  sock.portId_ = mnl_socket_get_portid(s);
  // Extended ACKs give the kernel's reason ("Invalid prefix for given prefix length") in logs;
  // harmless where unsupported.
  int one = 1;
  mnl_socket_setsockopt(s, NETLINK_EXT_ACK, &one, sizeof(one));
  int cap = 1;
  mnl_socket_setsockopt(s, NETLINK_CAP_ACK, &cap, sizeof(cap));
  return sock;
}

Status Socket::request(void* msgBuf, void (*cb)(const void* nlh, void* data), void* data) {
  auto* nlh = static_cast<nlmsghdr*>(msgBuf);
  nlh->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(sock_.get(), nlh, nlh->nlmsg_len) < 0) {
    return makeError(std::string("netlink send: ") + std::strerror(errno), errno);
  }
  struct Ctx {
    void (*cb)(const void*, void*);
    void* data;
  } ctx{cb, data};
  auto dataCb = [](const nlmsghdr* h, void* d) -> int {
    auto* c = static_cast<Ctx*>(d);
    if (c->cb) c->cb(h, c->data);
    return MNL_CB_OK;
  };
  std::vector<char> buf(kRecvBuf);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock_.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return makeError(std::string("netlink recv: ") + std::strerror(errno), errno);
    }
    errno = 0;
    int rc = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq_, portId_, dataCb, &ctx);
    if (rc == MNL_CB_ERROR) {
      int err = errno;
      return makeError(std::strerror(err), err);
    }
    if (rc == MNL_CB_STOP) return Status::Ok();
  }
}

Result<LinkInfo> Socket::link(const std::string& name) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_GETLINK, 0);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  std::vector<LinkInfo> out;
  auto st = request(buf.data(), parseLink, &out);
  if (!st.ok()) return st.error().wrap("link " + name);
  if (out.empty()) return makeError("link " + name + ": not found", ENODEV);
  return out.front();
}

Result<LinkInfo> Socket::link(int index) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_GETLINK, 0);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index;
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  std::vector<LinkInfo> out;
  auto st = request(buf.data(), parseLink, &out);
  if (!st.ok()) return st.error().wrap("link #" + std::to_string(index));
  if (out.empty()) return makeError("link #" + std::to_string(index) + ": not found", ENODEV);
  return out.front();
}

Result<std::vector<LinkInfo>> Socket::links() {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_GETLINK, NLM_F_DUMP);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  std::vector<LinkInfo> out;
  SLUICE_RETURN_IF_ERROR(request(buf.data(), parseLink, &out));
  return out;
}

Status Socket::createVeth(const VethSpec& spec) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, spec.name.c_str());
  if (spec.mtu > 0) mnl_attr_put_u32(nlh, IFLA_MTU, static_cast<uint32_t>(spec.mtu));
  if (spec.mac) mnl_attr_put(nlh, IFLA_ADDRESS, 6, spec.mac->data());
  nlattr* linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  // The peer's attributes follow its own ifinfomsg inside the nest.
  auto* pifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  pifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, spec.peerName.c_str());
  if (spec.peerNetnsFd >= 0) {
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, static_cast<uint32_t>(spec.peerNetnsFd));
  }
  if (spec.mtu > 0) mnl_attr_put_u32(nlh, IFLA_MTU, static_cast<uint32_t>(spec.mtu));
  if (spec.peerMac) mnl_attr_put(nlh, IFLA_ADDRESS, 6, spec.peerMac->data());
  mnl_attr_nest_end(nlh, peer);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, linkinfo);
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("create veth " + spec.name + "/" + spec.peerName);
  return Status::Ok();
}

Status Socket::setLinkUp(int index, bool up) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_NEWLINK, 0);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index;
  ifm->ifi_change = IFF_UP;
  ifm->ifi_flags = up ? IFF_UP : 0;
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("set link #" + std::to_string(index) + (up ? " up" : " down"));
  return Status::Ok();
}

Status Socket::setLinkAlias(int index, const std::string& alias) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_NEWLINK, 0);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index;
  mnl_attr_put_strz(nlh, IFLA_IFALIAS, alias.c_str());
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("set alias of link #" + std::to_string(index));
  return Status::Ok();
}

Status Socket::setLinkMtu(int index, int mtu) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_NEWLINK, 0);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index;
  mnl_attr_put_u32(nlh, IFLA_MTU, static_cast<uint32_t>(mtu));
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("set mtu of link #" + std::to_string(index));
  return Status::Ok();
}

Status Socket::deleteLink(int index) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_DELLINK, 0);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index;
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("delete link #" + std::to_string(index));
  return Status::Ok();
}

Status Socket::addAddress(int index, const Prefix& withAddr, const IpAddr& address, bool noDad) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = static_cast<uint8_t>(familyOf(address.family()));
  ifa->ifa_prefixlen = static_cast<uint8_t>(withAddr.len());
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = static_cast<uint32_t>(index);
  mnl_attr_put(nlh, IFA_LOCAL, addrLen(address), address.bytes().data());
  mnl_attr_put(nlh, IFA_ADDRESS, addrLen(address), address.bytes().data());
  if (noDad) mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("add address " + address.toString());
  return Status::Ok();
}

Result<std::vector<AddrInfo>> Socket::addresses(int index) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_GETADDR, NLM_F_DUMP);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_UNSPEC;
  std::vector<AddrInfo> all;
  SLUICE_RETURN_IF_ERROR(request(buf.data(), parseAddr, &all));
  if (index == 0) return all;
  std::vector<AddrInfo> out;
  for (auto& a : all) {
    if (a.index == index) out.push_back(a);
  }
  return out;
}

namespace {
void putRoute(nlmsghdr* nlh, const RouteSpec& r) {
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = static_cast<uint8_t>(familyOf(r.dst.family()));
  rtm->rtm_dst_len = static_cast<uint8_t>(r.dst.len());
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = r.protocol != 0 ? r.protocol : RTPROT_STATIC;
  rtm->rtm_scope = r.scopeLink ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  if (r.onlink) rtm->rtm_flags |= RTNH_F_ONLINK;
  if (r.dst.len() > 0) mnl_attr_put(nlh, RTA_DST, addrLen(r.dst.addr()), r.dst.addr().bytes().data());
  if (r.gateway) mnl_attr_put(nlh, RTA_GATEWAY, addrLen(*r.gateway), r.gateway->bytes().data());
  if (r.oif) mnl_attr_put_u32(nlh, RTA_OIF, static_cast<uint32_t>(r.oif));
}
}  // namespace

Status Socket::addRoute(const RouteSpec& r) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
  putRoute(nlh, r);
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("add route " + r.dst.toString());
  return Status::Ok();
}

Status Socket::deleteRoute(const RouteSpec& r) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_DELROUTE, 0);
  putRoute(nlh, r);
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("delete route " + r.dst.toString());
  return Status::Ok();
}

Result<std::vector<RouteInfo>> Socket::routes(Family f) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_GETROUTE, NLM_F_DUMP);
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = static_cast<uint8_t>(familyOf(f));
  std::vector<RouteInfo> out;
  SLUICE_RETURN_IF_ERROR(request(buf.data(), parseRoute, &out));
  return out;
}

Status Socket::setNeighbour(int index, const IpAddr& addr, const Mac& mac, uint16_t state) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
  auto* nd = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
  nd->ndm_family = static_cast<uint8_t>(familyOf(addr.family()));
  nd->ndm_ifindex = index;
  nd->ndm_state = state;
  mnl_attr_put(nlh, NDA_DST, addrLen(addr), addr.bytes().data());
  mnl_attr_put(nlh, NDA_LLADDR, 6, mac.data());
  auto st = request(buf.data(), nullptr, nullptr);
  if (!st.ok()) return st.error().wrap("set neighbour " + addr.toString());
  return Status::Ok();
}

Result<std::vector<NeighInfo>> Socket::neighbours(int index, Family f) {
  std::vector<char> buf;
  nlmsghdr* nlh = startMsg(buf, RTM_GETNEIGH, NLM_F_DUMP);
  auto* nd = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
  nd->ndm_family = static_cast<uint8_t>(familyOf(f));
  std::vector<NeighInfo> all;
  SLUICE_RETURN_IF_ERROR(request(buf.data(), parseNeigh, &all));
  std::vector<NeighInfo> out;
  for (auto& n : all) {
    if (index == 0 || n.index == index) out.push_back(n);
  }
  return out;
}

}  // namespace sluice::netlink
