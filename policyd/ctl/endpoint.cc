#include "policyd/ctl/endpoint.h"

namespace sluice::ctl {

std::string EndpointRef::describe() const {
  if (pod) return pod->key();
  return ip ? ip->toString() : "?";
}

Result<EndpointRef> resolveEndpoint(const engine::Evaluator& ev, const std::string& text,
                                    const std::string& flag) {
  if (auto ip = IpAddr::parse(text); ip.ok()) {
    EndpointRef ref;
    ref.ip = *ip;
    ref.pod = ev.podByIp(*ip);
    return ref;
  }
  auto slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == text.size() ||
      text.find('/', slash + 1) != std::string::npos) {
    return makeError(flag + " " + text + ": expected NS/POD or an IP address");
  }
  const auto* pod = ev.findPod(text.substr(0, slash), text.substr(slash + 1));
  if (!pod) return makeError(flag + " " + text + ": no such pod in the given manifests");
  return EndpointRef{pod, std::nullopt};
}

AddressSet AddressSet::of(const std::vector<IpAddr>& ips) {
  AddressSet s;
  for (const auto& ip : ips) {
    if (!s.first) s.first = ip;
    if (ip.isV4() && !s.v4) s.v4 = ip;
    if (!ip.isV4() && !s.v6) s.v6 = ip;
  }
  return s;
}

std::pair<std::optional<IpAddr>, std::optional<IpAddr>> pairAddresses(const AddressSet& src,
                                                                      const AddressSet& dst) {
  if (src.v4 && dst.v4) return {src.v4, dst.v4};
  if (src.v6 && dst.v6) return {src.v6, dst.v6};
  return {src.first, dst.first};
}

std::pair<std::optional<IpAddr>, std::optional<IpAddr>> pairAddresses(const EndpointRef& src,
                                                                      const EndpointRef& dst) {
  auto candidates = [](const EndpointRef& e) {
    if (e.ip) return AddressSet::of({*e.ip});
    if (e.pod) return AddressSet::of(e.pod->ips);
    return AddressSet{};
  };
  return pairAddresses(candidates(src), candidates(dst));
}

std::optional<uint16_t> resolveQueryPort(const PortQuery& q, const model::Pod* dst) {
  if (const auto* n = std::get_if<uint16_t>(&q.port)) return *n;
  if (!dst) return std::nullopt;
  return engine::Evaluator::resolveNamedPort(*dst, std::get<std::string>(q.port), q.protocol);
}

}  // namespace sluice::ctl
