#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "policyd/datapath/nft/nflog.h"

namespace sluice::datapath::nft {

namespace {

int64_t wallNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string errnoText(int e) { return std::strerror(e); }

struct MnlSocketDeleter {
  void operator()(mnl_socket* s) const noexcept { mnl_socket_close(s); }
};
using MnlSocket = std::unique_ptr<mnl_socket, MnlSocketDeleter>;

class NflogReader final : public FlowEventReader {
 public:
  NflogReader(MnlSocket sock, uint16_t group)
      : sock_(std::move(sock)), group_(group), buf_(MNL_SOCKET_BUFFER_SIZE * 4) {}

  ~NflogReader() override {
    // Unbind so the group is free for the next binder at once (closing would do it too).
    (void)config(NFULNL_CFG_CMD_UNBIND, false);
  }

  Status configure() {
    SLUICE_RETURN_IF_ERROR(config(NFULNL_CFG_CMD_BIND, true));
    return Status::Ok();
  }

  Result<int> poll(int timeoutMs, const Callback& cb) override {
    pollfd p{mnl_socket_get_fd(sock_.get()), POLLIN, 0};
    int r = ::poll(&p, 1, timeoutMs);
    if (r < 0) {
      if (errno == EINTR) return 0;
      return makeError("nflog group " + std::to_string(group_) + ": poll: " + errnoText(errno),
                       errno);
    }
    int handled = 0;
    // Bounded: what is queued now, at most 64 reads per call.
    for (int i = 0; i < 64 && r > 0; ++i) {
      ssize_t n = ::recv(mnl_socket_get_fd(sock_.get()), buf_.data(), buf_.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        if (errno == ENOBUFS) {
          // The socket overran: events were lost (the rate limit keeps this rare). Keep going.
          ++overruns_;
          continue;
        }
        return makeError("nflog group " + std::to_string(group_) + ": recv: " + errnoText(errno),
                         errno);
      }
      const int64_t now = wallNowNs();
      int left = static_cast<int>(n);
      for (const nlmsghdr* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data());
           mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
        auto e = parseNflogMessage(
            {reinterpret_cast<const uint8_t*>(nlh), static_cast<size_t>(nlh->nlmsg_len)}, now);
        if (e) {
          cb(*e);
          ++handled;
        }
      }
    }
    return handled;
  }

 private:
  // One config message (command, and with bind the copy mode and prompt delivery), acked.
  Status config(uint8_t command, bool withMode) {
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = ++seq_;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(group_);
    nfulnl_msg_config_cmd cmd{command};
    mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof(cmd), &cmd);
    if (withMode) {
      nfulnl_msg_config_mode mode{};
      mode.copy_range = htonl(kNflogCopyBytes);
      mode.copy_mode = NFULNL_COPY_PACKET;
      mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof(mode), &mode);
      // Deliver each packet at once (defaults batch up to 100 packets or 1 s).
      mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(1));
      mnl_attr_put_u32(nlh, NFULA_CFG_TIMEOUT, htonl(1));
    }
    const std::string what = "nflog group " + std::to_string(group_) +
                             (command == NFULNL_CFG_CMD_BIND ? " bind" : " unbind");
    if (mnl_socket_sendto(sock_.get(), nlh, nlh->nlmsg_len) < 0) {
      return makeError(what + ": send: " + errnoText(errno), errno);
    }
    // The ack (packets of the group may arrive before it after a bind: skipped, bounded).
    const unsigned portid = mnl_socket_get_portid(sock_.get());
    for (int i = 0; i < 16; ++i) {
      ssize_t n = mnl_socket_recvfrom(sock_.get(), buf.data(), buf.size());
      if (n < 0) return makeError(what + ": recv: " + errnoText(errno), errno);
      const auto* h = reinterpret_cast<const nlmsghdr*>(buf.data());
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      int rc = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq_, portid, nullptr, nullptr);
      if (rc < 0) {
        const int e = errno;
        return makeError(
            what + ": " + errnoText(e) +
                (e == EBUSY ? " (another process in this network namespace has it)" : ""),
            e);
      }
      return Status::Ok();
    }
    return makeError(what + ": no acknowledgement");
  }

  MnlSocket sock_;
  const uint16_t group_;
  uint32_t seq_ = 0;
  uint64_t overruns_ = 0;
  std::vector<char> buf_;
};

}  // namespace

Result<std::unique_ptr<FlowEventReader>> openNflogReader(uint16_t group) {
  MnlSocket sock(mnl_socket_open(NETLINK_NETFILTER));
  if (!sock) return makeError("nflog: netlink socket: " + errnoText(errno), errno);
  if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return makeError("nflog: bind netlink socket: " + errnoText(errno), errno);
  }
  int rcvbuf = 1 << 20;
  (void)setsockopt(mnl_socket_get_fd(sock.get()), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  // Bounds the wait for a config ack (poll() reads without blocking).
  timeval timeout{2, 0};
  (void)setsockopt(mnl_socket_get_fd(sock.get()), SOL_SOCKET, SO_RCVTIMEO, &timeout,
                   sizeof(timeout));
  auto reader = std::make_unique<NflogReader>(std::move(sock), group);
  SLUICE_RETURN_IF_ERROR(reader->configure());
  return std::unique_ptr<FlowEventReader>(std::move(reader));
}

}  // namespace sluice::datapath::nft
