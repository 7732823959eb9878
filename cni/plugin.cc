#include "cni/plugin.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "cni/ipam/ipam.h"
#include "common/endpoint_api.h"
#include "common/unique_fd.h"

namespace sluice::cni {

namespace {

namespace api = endpoint_api;

// Undo actions run in reverse order unless the ADD completed.
class Rollback {
 public:
  ~Rollback() {
    if (done_) return;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) (*it)();
  }
  void push(std::function<void()> f) { steps_.push_back(std::move(f)); }
  void commit() { done_ = true; }

 private:
  std::vector<std::function<void()>> steps_;
  bool done_ = false;
};

api::Request makeRequest(api::Op op, const Env& env) {
  api::Request r;
  r.op = op;
  r.containerId = env.containerId;
  r.ifname = env.ifname;
  r.netns = env.netns;
  r.podNamespace = env.podNamespace;
  r.podName = env.podName;
  return r;
}

// Sends one request; with `policy: optional` an unreachable daemon is only logged.
Status callDaemon(const NetConf& conf, const api::Request& req, const char* what) {
  auto reply = api::call(conf.policySocket, req, conf.policyTimeoutMs);
  if (!reply.ok()) {
    if (!conf.policyRequired) {
      spdlog::warn("container={} {}: policy daemon unavailable, continuing (policy: optional): {}",
                   req.containerId, what, reply.error().message);
      return Status::Ok();
    }
    if (reply.error().code == api::kBadCall) {
      return makeError(std::string(what) + ": " + reply.error().message, kErrInvalidConfig);
    }
    return makeError(std::string(what) + ": " + reply.error().message +
                         " (is sluice-policyd running? set \"policy\": \"optional\" to wire pods "
                         "without policy enforcement)",
                     kErrTryAgainLater);
  }
  if (!reply->ok) {
    // Busy, starting, or its sync took longer than our wait: the runtime retries the ADD.
    if (reply->retry) {
      return makeError(std::string(what) + ": policy daemon busy: " + reply->error,
                       kErrTryAgainLater);
    }
    return makeError(std::string(what) + ": policy daemon refused: " + reply->error, kErrInternal);
  }
  return Status::Ok();
}

std::vector<IpAddr> ipsOf(const CniResult& r) {
  std::vector<IpAddr> out;
  for (const auto& ip : r.ips) out.push_back(ip.address);
  return out;
}

}  // namespace

Result<json> cmdAdd(const Env& env, const NetConf& conf, const Hooks& hooks) {
  Attachment att{env.containerId, env.ifname};
  auto ipam = ipam::makeIpam(conf, env);
  Rollback rollback;  // declared after what its steps use, so it runs before they are destroyed
  SLUICE_ASSIGN_OR_RETURN(auto addrs, ipam->add());
  rollback.push([&] {
    auto st = ipam->del();
    if (!st.ok())
      spdlog::error("container={} rollback: ipam release failed: {}", att.containerId,
                    st.error().message);
  });
  SLUICE_RETURN_IF_ERROR(hooks.step("ipam"));
  // One address per family: the pod's interface is routed, extra addresses of a family would
  // have no route of their own.
  std::vector<IpAddr> ips;
  for (const auto& a : addrs) {
    bool dup = std::any_of(ips.begin(), ips.end(),
                           [&](const IpAddr& x) { return x.family() == a.ip.family(); });
    if (dup) {
      return makeError("ipam returned more than one " + std::string(a.ip.isV4() ? "IPv4" : "IPv6") +
                           " address; configure one range set per family",
                       kErrInvalidConfig);
    }
    ips.push_back(a.ip);
  }

  WiringSpec spec{att, conf.name, env.netns, conf.mtu, std::nullopt, ips};
  if (conf.runtimeMac) spec.podMac = netlink::parseMac(*conf.runtimeMac).value();
  SLUICE_ASSIGN_OR_RETURN(Wired w, wire(spec, hooks.step));
  rollback.push([&] {
    auto st = unwire(att);
    if (!st.ok())
      spdlog::error("container={} rollback: unwire failed: {}", att.containerId,
                    st.error().message);
  });

  SLUICE_RETURN_IF_ERROR(hooks.step("register"));
  api::Request req = makeRequest(api::Op::Add, env);
  req.hostVeth = w.hostVeth;
  req.hostIfindex = w.hostIfindex;
  for (const auto& ip : ips) req.ips.push_back(ip.toString());
  SLUICE_RETURN_IF_ERROR(callDaemon(conf, req, "register endpoint"));
  rollback.push([&] {
    api::Request del = makeRequest(api::Op::Del, env);
    del.hostVeth = w.hostVeth;
    del.hostIfindex = w.hostIfindex;
    auto st = callDaemon(conf, del, "deregister endpoint");
    if (!st.ok()) spdlog::error("container={} rollback: {}", att.containerId, st.error().message);
  });
  // Only now can traffic flow: enforcement is attached and the endpoint's policy applied.
  SLUICE_RETURN_IF_ERROR(activate(spec, w, hooks.step));
  rollback.commit();

  CniResult r;
  r.interfaces.push_back(Interface{w.hostVeth, netlink::macToString(w.hostMac), conf.mtu, ""});
  r.interfaces.push_back(
      Interface{env.ifname, netlink::macToString(w.podMac), conf.mtu, env.netns});
  for (const auto& ip : ips) {
    auto gw = IpAddr::parse(ip.isV4() ? kGatewayV4 : kGatewayV6).value();
    r.ips.push_back(IpConfig{ip, ip.bits(), gw, 1});
    r.routes.push_back(Route{Prefix(ip.isV4() ? IpAddr::v4(0) : IpAddr::v6({}), 0), gw});
  }
  if (conf.prevResult && conf.prevResult->contains("dns") &&
      (*conf.prevResult)["dns"].is_object()) {
    r.dns = (*conf.prevResult)["dns"];
  }
  spdlog::info("container={} ifname={} pod={}/{} veth={} ips={} add ok", env.containerId,
               env.ifname, env.podNamespace, env.podName, w.hostVeth, req.ips.size());
  return encodeResult(r, conf.cniVersion);
}

Status cmdDel(const Env& env, const NetConf& conf) {
  Attachment att{env.containerId, env.ifname};
  // Deregister first: the daemon stops enforcing for an interface that is about to vanish.
  // Kubelet must always be able to tear a pod down, so daemon trouble is only logged.
  auto reply = api::call(conf.policySocket, makeRequest(api::Op::Del, env), conf.policyTimeoutMs);
  if (!reply.ok()) {
    if (conf.policyRequired) {
      spdlog::warn("container={} del: policy daemon unreachable: {}", env.containerId,
                   reply.error().message);
    } else {
      spdlog::info("container={} del: policy daemon unreachable: {}", env.containerId,
                   reply.error().message);
    }
  } else if (!reply->ok) {
    spdlog::warn("container={} del: policy daemon: {}", env.containerId, reply->error);
  }
  // The veth goes before the addresses, so a released address is never still routed here.
  SLUICE_RETURN_IF_ERROR(unwire(att, /*deferDestroy=*/true));
  auto ipam = ipam::makeIpam(conf, env);
  SLUICE_RETURN_IF_ERROR(ipam->del());
  spdlog::info("container={} ifname={} del ok", env.containerId, env.ifname);
  return Status::Ok();
}

Status cmdCheck(const Env& env, const NetConf& conf) {
  SLUICE_ASSIGN_OR_RETURN(CniResult prev, decodeResult(*conf.prevResult, "prevResult"));
  Attachment att{env.containerId, env.ifname};
  std::vector<IpAddr> ips = ipsOf(prev);
  if (ips.empty()) return makeError("prevResult.ips: no addresses to check", kErrInvalidConfig);
  auto ipam = ipam::makeIpam(conf, env);
  SLUICE_RETURN_IF_ERROR(ipam->check(ips));
  WiringSpec spec{att, conf.name, env.netns, conf.mtu, std::nullopt, ips};
  SLUICE_RETURN_IF_ERROR(checkWiring(spec, prev));
  api::Request req = makeRequest(api::Op::Check, env);
  req.hostVeth = hostVethName(att);
  for (const auto& ip : ips) req.ips.push_back(ip.toString());
  return callDaemon(conf, req, "check endpoint");
}

Status cmdGc(const Env& env, const NetConf& conf) {
  const auto& valid = *conf.validAttachments;
  SLUICE_RETURN_IF_ERROR(gcVeths(conf.name, valid));
  auto ipam = ipam::makeIpam(conf, env);
  SLUICE_RETURN_IF_ERROR(ipam->gc());
  spdlog::info("gc ok: {} valid attachments", valid.size());
  return Status::Ok();
}

Status cmdStatus(const Env& env, const NetConf& conf) {
  auto ipam = ipam::makeIpam(conf, env);
  auto st = ipam->status();
  if (!st.ok()) return withCode(st.error(), kErrNotAvailable);
  if (!conf.policyRequired) return Status::Ok();
  // Ready means the daemon has applied its first policy snapshot: before that an ADD would
  // wait or fail, so the runtime must not schedule pods here yet (50).
  api::Request req;
  req.op = api::Op::Status;
  auto reply = api::call(conf.policySocket, req, conf.policyTimeoutMs);
  if (!reply.ok()) {
    if (reply.error().code == api::kBadCall) return withCode(reply.error(), kErrInvalidConfig);
    return makeError("policy daemon not reachable: " + reply.error().message, kErrNotAvailable);
  }
  if (!reply->ok) return makeError("policy daemon: " + reply->error, kErrNotAvailable);
  return Status::Ok();
}

json cmdVersion(const std::string& requested) {
  return json{{"cniVersion", requested.empty() ? kLatestVersion : requested},
              {"supportedVersions", supportedVersions()}};
}

}  // namespace sluice::cni
