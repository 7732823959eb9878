#include "policyd/datapath/nft/element_writer.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

namespace sluice::datapath::nft {

namespace {

enum class Field { Ip4, Ip6, Proto, Service, Ifname, Mark, NfProto };
enum class Value { None, Counter, Verdict, Mark };

struct SetLayout {
  std::vector<Field> key;
  Value value = Value::None;
  bool interval = false;
};

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t i = 0;
  while (true) {
    size_t j = s.find(sep, i);
    out.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
    if (j == std::string::npos) return out;
    i = j + sep.size();
  }
}

std::optional<SetLayout> layoutOf(const Set& s) {
  SetLayout l;
  l.interval = s.interval;
  const auto kv = split(s.type, " : ");
  for (const std::string& f : split(kv[0], " . ")) {
    if (f == "ipv4_addr")
      l.key.push_back(Field::Ip4);
    else if (f == "ipv6_addr")
      l.key.push_back(Field::Ip6);
    else if (f == "inet_proto")
      l.key.push_back(Field::Proto);
    else if (f == "inet_service")
      l.key.push_back(Field::Service);
    else if (f == "ifname")
      l.key.push_back(Field::Ifname);
    else if (f == "mark")
      l.key.push_back(Field::Mark);
    else if (f == "nf_proto")
      l.key.push_back(Field::NfProto);
    else
      return std::nullopt;
  }
  if (kv.size() == 2) {
    if (kv[1] == "counter")
      l.value = Value::Counter;
    else if (kv[1] == "verdict")
      l.value = Value::Verdict;
    else if (kv[1] == "mark")
      l.value = Value::Mark;
    else
      return std::nullopt;
  }
  // Single-field intervals are start/end element pairs in the kernel (rbtree): not ours.
  if (l.interval && l.key.size() < 2) return std::nullopt;
  return l;
}

size_t fieldLen(Field f) {
  switch (f) {
    case Field::Ip4:
    case Field::Mark:
      return 4;
    case Field::Ip6:
    case Field::Ifname:
      return 16;
    case Field::Service:
      return 2;
    case Field::Proto:
    case Field::NfProto:
      return 1;
  }
  return 0;
}

std::string unquote(const std::string& s) {
  return s.size() >= 2 && s.front() == '"' && s.back() == '"' ? s.substr(1, s.size() - 2) : s;
}

// One value of a field in its netlink byte order (addresses and ports network order, marks host
// order, as nft does).
Result<std::vector<uint8_t>> encodeField(Field f, const std::string& text) {
  std::vector<uint8_t> b(fieldLen(f), 0);
  switch (f) {
    case Field::Ip4:
      if (inet_pton(AF_INET, text.c_str(), b.data()) != 1) return makeError("bad ipv4 " + text);
      break;
    case Field::Ip6:
      if (inet_pton(AF_INET6, text.c_str(), b.data()) != 1) return makeError("bad ipv6 " + text);
      break;
    case Field::Proto:
      if (text == "tcp")
        b[0] = 6;
      else if (text == "udp")
        b[0] = 17;
      else if (text == "sctp")
        b[0] = 132;
      else
        return makeError("bad protocol " + text);
      break;
    case Field::Service: {
      const uint16_t port = htons(static_cast<uint16_t>(std::stoul(text)));
      std::memcpy(b.data(), &port, 2);
      break;
    }
    case Field::Ifname: {
      const std::string name = unquote(text);
      if (name.size() >= b.size()) return makeError("ifname too long " + name);
      std::memcpy(b.data(), name.data(), name.size());
      break;
    }
    case Field::Mark: {
      const uint32_t v = static_cast<uint32_t>(std::stoul(text));
      std::memcpy(b.data(), &v, 4);
      break;
    }
    case Field::NfProto:
      if (text == "ipv4")
        b[0] = NFPROTO_IPV4;
      else if (text == "ipv6")
        b[0] = NFPROTO_IPV6;
      else
        return makeError("bad nf_proto " + text);
      break;
  }
  return b;
}

// The key (and the key end for intervals) of one element. In a concatenation every field takes
// a multiple of 4 bytes (one 32-bit register each).
Status encodeKey(const SetLayout& l, const std::string& text, std::vector<uint8_t>& key,
                 std::vector<uint8_t>& keyEnd) {
  const auto fields = split(text, " . ");
  if (fields.size() != l.key.size()) return makeError("key " + text + " has the wrong field count");
  const bool concat = l.key.size() > 1;
  for (size_t i = 0; i < fields.size(); ++i) {
    std::string first = fields[i], last = fields[i];
    const bool rangeable =
        l.key[i] == Field::Ip4 || l.key[i] == Field::Ip6 || l.key[i] == Field::Service;
    if (rangeable) {
      if (size_t dash = fields[i].find('-'); dash != std::string::npos) {
        first = fields[i].substr(0, dash);
        last = fields[i].substr(dash + 1);
      }
    }
    auto a = encodeField(l.key[i], first);
    auto b = encodeField(l.key[i], last);
    if (!a.ok()) return a.error().wrap("key " + text);
    if (!b.ok()) return b.error().wrap("key " + text);
    if (concat) {
      a->resize((a->size() + 3) / 4 * 4, 0);
      b->resize((b->size() + 3) / 4 * 4, 0);
    }
    key.insert(key.end(), a->begin(), a->end());
    keyEnd.insert(keyEnd.end(), b->begin(), b->end());
  }
  return Status::Ok();
}

struct SetDeleter {
  void operator()(nftnl_set* s) const { nftnl_set_free(s); }
};
using SetPtr = std::unique_ptr<nftnl_set, SetDeleter>;

Result<SetPtr> buildSet(const std::string& name, const SetLayout& l,
                        const std::vector<Element>& elements, bool withData) {
  SetPtr s(nftnl_set_alloc());
  if (!s) return makeError("nftnl_set_alloc failed");
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, kTableName);
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, name.c_str());
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
  for (const Element& e : elements) {
    std::vector<uint8_t> key, keyEnd;
    SLUICE_RETURN_IF_ERROR(encodeKey(l, e.key, key, keyEnd));
    nftnl_set_elem* el = nftnl_set_elem_alloc();
    if (!el) return makeError("nftnl_set_elem_alloc failed");
    nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, key.data(), static_cast<uint32_t>(key.size()));
    if (l.interval) {
      nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY_END, keyEnd.data(),
                         static_cast<uint32_t>(keyEnd.size()));
    }
    if (withData && l.value == Value::Counter) {
      nftnl_set_elem_set_str(el, NFTNL_SET_ELEM_OBJREF, unquote(e.value).c_str());
    } else if (withData && l.value == Value::Verdict) {
      const auto parts = split(e.value, " ");
      if (parts.size() != 2 || (parts[0] != "jump" && parts[0] != "goto")) {
        nftnl_set_elem_free(el);
        return makeError("set " + name + ": unsupported verdict " + e.value);
      }
      nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_VERDICT,
                             static_cast<uint32_t>(parts[0] == "jump" ? NFT_JUMP : NFT_GOTO));
      nftnl_set_elem_set_str(el, NFTNL_SET_ELEM_CHAIN, parts[1].c_str());
    } else if (withData && l.value == Value::Mark) {
      const uint32_t v = static_cast<uint32_t>(std::stoul(e.value));
      nftnl_set_elem_set(el, NFTNL_SET_ELEM_DATA, &v, sizeof(v));
    }
    nftnl_set_elem_add(s.get(), el);
  }
  return s;
}

struct SocketDeleter {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

// Elements per netlink message, so one message stays well under the 64 KiB netlink limit.
constexpr size_t kElementsPerMessage = 200;

}  // namespace

bool elementOpsSupported(const TableOps& ops, const std::map<std::string, Set>& sets) {
  if (!ops.addCounters.empty() || !ops.deleteCounters.empty() || !ops.addSets.empty() ||
      !ops.deleteSets.empty() || !ops.addChains.empty() || !ops.rewriteChains.empty() ||
      !ops.deleteChains.empty()) {
    return false;
  }
  for (const auto* m : {&ops.addElements, &ops.deleteElements}) {
    for (const auto& [name, es] : *m) {
      auto it = sets.find(name);
      if (it == sets.end() || !layoutOf(it->second)) return false;
    }
  }
  return true;
}

Status writeElements(const TableOps& ops, const std::map<std::string, Set>& sets) {
  // Messages: batch begin, element deletes, element adds, batch end.
  std::vector<std::pair<uint16_t, SetPtr>> messages;
  for (const auto& [isAdd, m] : {std::pair{false, &ops.deleteElements}, {true, &ops.addElements}}) {
    for (const auto& [name, es] : *m) {
      auto it = sets.find(name);
      auto layout = it == sets.end() ? std::nullopt : layoutOf(it->second);
      if (!layout) return makeError("set " + name + ": element encoding not supported");
      for (size_t i = 0; i < es.size(); i += kElementsPerMessage) {
        std::vector<Element> chunk(es.begin() + i,
                                   es.begin() + std::min(es.size(), i + kElementsPerMessage));
        SLUICE_ASSIGN_OR_RETURN(SetPtr s, buildSet(name, *layout, chunk, isAdd));
        messages.emplace_back(isAdd ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, std::move(s));
      }
    }
  }
  if (messages.empty()) return Status::Ok();

  std::unique_ptr<mnl_socket, SocketDeleter> nl(mnl_socket_open(NETLINK_NETFILTER));
  if (!nl) return makeError(std::string("netlink socket: ") + std::strerror(errno), errno);
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return makeError(std::string("netlink bind: ") + std::strerror(errno), errno);
  }
  const size_t bufSize = (messages.size() + 2) * 65536;
  std::vector<char> buf(bufSize);
  mnl_nlmsg_batch* batch = mnl_nlmsg_batch_start(buf.data(), bufSize);
  uint32_t seq = static_cast<uint32_t>(time(nullptr));
  const uint32_t firstSeq = seq;
  nftnl_batch_begin(static_cast<char*>(mnl_nlmsg_batch_current(batch)), seq++);
  mnl_nlmsg_batch_next(batch);
  for (const auto& [type, s] : messages) {
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(
        static_cast<char*>(mnl_nlmsg_batch_current(batch)), type, NFPROTO_INET,
        static_cast<uint16_t>(NLM_F_ACK | (type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0)), seq++);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    mnl_nlmsg_batch_next(batch);
  }
  nftnl_batch_end(static_cast<char*>(mnl_nlmsg_batch_current(batch)), seq++);
  mnl_nlmsg_batch_next(batch);
  const size_t size = mnl_nlmsg_batch_size(batch);
  const int sndbuf = static_cast<int>(size + 4096);
  setsockopt(mnl_socket_get_fd(nl.get()), SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
  timeval tv{5, 0};  // a kernel that never answers must not hang the daemon
  setsockopt(mnl_socket_get_fd(nl.get()), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const ssize_t sent = mnl_socket_sendto(nl.get(), mnl_nlmsg_batch_head(batch), size);
  mnl_nlmsg_batch_stop(batch);
  if (sent < 0) return makeError(std::string("netlink send: ") + std::strerror(errno), errno);

  // One ack per element message; the first error aborts the whole batch in the kernel.
  size_t acks = 0;
  std::vector<char> rbuf(MNL_SOCKET_BUFFER_SIZE);
  while (acks < messages.size()) {
    const ssize_t n = mnl_socket_recvfrom(nl.get(), rbuf.data(), rbuf.size());
    if (n < 0) return makeError(std::string("netlink receive: ") + std::strerror(errno), errno);
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(rbuf.data()); mnl_nlmsg_ok(h, len);
         h = mnl_nlmsg_next(h, &len)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
      if (err->error != 0) {
        const size_t index = h->nlmsg_seq - firstSeq - 1;
        std::string what = "message " + std::to_string(index);
        if (index < messages.size()) {
          what = std::string(messages[index].first == NFT_MSG_NEWSETELEM ? "add" : "delete") +
                 " elements of set " +
                 nftnl_set_get_str(messages[index].second.get(), NFTNL_SET_NAME);
        }
        return makeError("netlink batch: " + what + ": " + std::strerror(-err->error), -err->error);
      }
      ++acks;
    }
  }
  return Status::Ok();
}

}  // namespace sluice::datapath::nft
