#include "policyd/ctl/matrix.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "policyd/ctl/endpoint.h"

namespace sluice::ctl {

using engine::Direction;
using engine::Evaluator;

namespace {

struct CompiledPeer {
  const model::IPBlock* block = nullptr;  // an ipBlock peer, matched on the pair's address
  std::vector<uint64_t> members;          // a selector peer: one bit per matrix pod
};

struct CompiledRule {
  const model::Rule* rule = nullptr;
  std::vector<CompiledPeer> peers;  // empty = every peer
};

using CompiledSide = std::vector<CompiledRule>;

class PairEvaluator {
 public:
  PairEvaluator(const Evaluator& ev, const std::vector<const model::Pod*>& pods,
                const PortQuery& query, engine::View view)
      : ev_(ev), pods_(pods), query_(query), view_(view) {
    const size_t n = pods_.size();
    words_ = (n + 63) / 64;
    addrs_.reserve(n);
    ports_.reserve(n);
    egress_.resize(n);
    ingress_.resize(n);
    egressIsolated_.resize(n);
    ingressIsolated_.resize(n);
    for (size_t k = 0; k < n; ++k) {
      const auto& pod = *pods_[k];
      addrs_.push_back(AddressSet::of(pod.ips));
      ports_.push_back(resolveQueryPort(query_, &pod));
      collect(pod, Direction::Egress, egress_[k], egressIsolated_[k]);
      collect(pod, Direction::Ingress, ingress_[k], ingressIsolated_[k]);
    }
  }

  bool allowed(size_t i, size_t j) const {
    if (!ports_[j]) return false;
    const uint16_t port = *ports_[j];
    auto [srcIp, dstIp] = pairAddresses(addrs_[i], addrs_[j]);
    if (egressIsolated_[i] &&
        !sideAllows(egress_[i], Direction::Egress, j, dstIp, pods_[j], port)) {
      return false;
    }
    return !ingressIsolated_[j] ||
           sideAllows(ingress_[j], Direction::Ingress, i, srcIp, pods_[j], port);
  }

 private:
  void collect(const model::Pod& pod, Direction dir, std::vector<const CompiledRule*>& rules,
               uint8_t& isolated) {
    auto policies = ev_.selectingPolicies(pod, dir, view_);
    isolated = policies.empty() ? 0 : 1;
    for (const auto* pol : policies) {
      for (const auto& rule : compiled(*pol, dir)) rules.push_back(&rule);
    }
  }

  const CompiledSide& compiled(const model::NetworkPolicy& pol, Direction dir) {
    auto& cache = dir == Direction::Ingress ? ingressCache_ : egressCache_;
    auto [it, inserted] = cache.try_emplace(&pol);
    if (!inserted) return it->second;
    const auto& rules = engine::rulesOf(pol, dir);
    for (const auto& rule : rules) {
      CompiledRule cr;
      cr.rule = &rule;
      for (const auto& peer : rule.peers) {
        CompiledPeer cp;
        if (peer.ipBlock) {
          cp.block = &*peer.ipBlock;
        } else {
          cp.members.assign(words_, 0);
          for (size_t k = 0; k < pods_.size(); ++k) {
            if (ev_.peerMatches(pol, peer, engine::FlowEnd{pods_[k], std::nullopt})) {
              cp.members[k / 64] |= uint64_t{1} << (k % 64);
            }
          }
        }
        cr.peers.push_back(std::move(cp));
      }
      it->second.push_back(std::move(cr));
    }
    return it->second;
  }

  // Mirrors Evaluator::evaluateSide: the union over the selecting policies' rules; a rule
  // allows when a peer matches and a port matches. Named ports resolve against the destination
  // pod, and never match when the egress peer that matched is an ipBlock.
  bool sideAllows(const std::vector<const CompiledRule*>& rules, Direction dir, size_t other,
                  const std::optional<IpAddr>& otherIp, const model::Pod* dst,
                  uint16_t port) const {
    for (const auto* cr : rules) {
      if (cr->peers.empty()) {
        if (portsMatch(*cr->rule, dir, false, dst, port)) return true;
        continue;
      }
      for (const auto& peer : cr->peers) {
        bool match = peer.block ? (otherIp && peer.block->contains(*otherIp))
                                : ((peer.members[other / 64] >> (other % 64)) & 1) != 0;
        if (!match) continue;
        if (portsMatch(*cr->rule, dir, peer.block != nullptr, dst, port)) return true;
      }
    }
    return false;
  }

  bool portsMatch(const model::Rule& rule, Direction dir, bool viaIpBlock, const model::Pod* dst,
                  uint16_t port) const {
    return engine::matchingPort(rule, dir, viaIpBlock, query_.protocol, port, dst).has_value();
  }

  const Evaluator& ev_;
  const std::vector<const model::Pod*>& pods_;
  const PortQuery& query_;
  const engine::View view_;
  size_t words_ = 0;
  std::vector<AddressSet> addrs_;
  std::vector<std::optional<uint16_t>> ports_;
  std::vector<std::vector<const CompiledRule*>> egress_, ingress_;
  std::vector<uint8_t> egressIsolated_, ingressIsolated_;
  std::unordered_map<const model::NetworkPolicy*, CompiledSide> ingressCache_, egressCache_;
};

}  // namespace

std::vector<std::string> Matrix::podsWithoutPort() const {
  std::vector<std::string> out;
  if (!query.isNamed()) return out;
  for (const auto* pod : pods) {
    if (!resolveQueryPort(query, pod)) out.push_back(pod->key());
  }
  return out;
}

Matrix computeMatrix(const Evaluator& ev, const PortQuery& query) {
  Matrix m;
  m.query = query;
  for (const auto& pod : ev.cluster().pods) {
    if (!pod.hostNetwork) m.pods.push_back(&pod);
  }
  std::sort(m.pods.begin(), m.pods.end(), [](const model::Pod* a, const model::Pod* b) {
    return a->namespace_ != b->namespace_ ? a->namespace_ < b->namespace_ : a->name < b->name;
  });
  m.keys.reserve(m.pods.size());
  for (const auto* pod : m.pods) m.keys.push_back(pod->key());
  const size_t n = m.pods.size();
  auto fill = [&](engine::View view, std::vector<uint8_t>& cells) {
    cells.assign(n * n, 0);
    PairEvaluator pe(ev, m.pods, query, view);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) cells[i * n + j] = pe.allowed(i, j) ? 1 : 0;
    }
  };
  fill(engine::View::Enforced, m.allowed);
  if (ev.hasAuditedPolicies()) {
    fill(engine::View::OnceEnforced, m.onceEnforced);
    for (const auto& pol : ev.cluster().policies) {
      if (pol.audited()) m.auditedPolicies.push_back(pol.key());
    }
    std::sort(m.auditedPolicies.begin(), m.auditedPolicies.end());
  }
  return m;
}

Mark Matrix::mark(size_t i, size_t j) const {
  const bool now = at(i, j);
  const bool once = atOnceEnforced(i, j);
  if (now != once) return now ? Mark::AuditDeny : Mark::AuditAllow;
  return now ? Mark::Allowed : Mark::Denied;
}

MarkGrid Matrix::grid() const {
  MarkGrid g;
  g.labels = keys;
  const size_t n = size();
  g.cells.reserve(n * n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) g.cells.push_back(mark(i, j));
  }
  return g;
}

std::string portJson(const PortQuery& query) {
  if (query.isNamed()) return nlohmann::json(std::get<std::string>(query.port)).dump();
  return std::to_string(std::get<uint16_t>(query.port));
}

void renderMatrixJson(std::ostream& out, const Matrix& m) {
  // Written by hand rather than through a json value: a 1,000-pod matrix is a million booleans.
  std::string s;
  const size_t n = m.size();
  s.reserve(64 + n * 32 + n * n * 6);
  s += "{\"port\":" + portJson(m.query) + ",\"protocol\":\"" +
       model::protocolName(m.query.protocol) + "\",\"pods\":[";
  for (size_t i = 0; i < n; ++i) {
    if (i) s += ',';
    s += nlohmann::json(m.keys[i]).dump();
  }
  auto booleans = [&](const char* key, auto&& cell) {
    s += "],\"";
    s += key;
    s += "\":[";
    for (size_t i = 0; i < n; ++i) {
      s += i ? ",[" : "[";
      for (size_t j = 0; j < n; ++j) {
        if (j) s += ',';
        s += cell(i, j) ? "true" : "false";
      }
      s += ']';
    }
  };
  booleans("allowed", [&](size_t i, size_t j) { return m.at(i, j); });
  if (m.hasAudit()) {
    s += "],\"auditedPolicies\":[";
    for (size_t i = 0; i < m.auditedPolicies.size(); ++i) {
      if (i) s += ',';
      s += nlohmann::json(m.auditedPolicies[i]).dump();
    }
    booleans("allowedOnceEnforced", [&](size_t i, size_t j) { return m.atOnceEnforced(i, j); });
  }
  s += "]}\n";
  out << s;
}

void renderMatrixText(std::ostream& out, const Matrix& m) {
  const size_t n = m.size();
  out << "Reachability for " << m.query.label()
      << ": row = from (source), column = to (destination)\n";
  if (n == 0) {
    out << "(no pods)\n";
    return;
  }
  if (m.hasAudit()) {
    out << "Audited policies (sluice.io/enforcement: audit, not enforced):";
    for (const auto& k : m.auditedPolicies) out << " " << k;
    out << "\n";
  }
  out << "\n";
  const MarkGrid g = m.grid();
  renderPodIndex(out, g.labels);
  out << "\n";
  renderGridText(out, g);
  out << legendLine(g) << "\n";
  size_t allowedCount = 0, auditDeny = 0, auditAllow = 0;
  for (Mark c : g.cells) {
    allowedCount += c == Mark::Allowed || c == Mark::AuditDeny;
    auditDeny += c == Mark::AuditDeny;
    auditAllow += c == Mark::AuditAllow;
  }
  out << "\n" << allowedCount << " of " << n * n << " pairs allowed";
  if (m.hasAudit()) {
    out << "; once the audited policies are enforced: " << auditDeny << " of them denied, "
        << auditAllow << " denied pair(s) allowed";
  }
  out << ".\n";
  auto missing = m.podsWithoutPort();
  if (!missing.empty()) {
    out << "No " << model::protocolName(m.query.protocol) << " container port named "
        << m.query.portText() << " (connections to them are denied):";
    for (const auto& k : missing) out << " " << k;
    out << "\n";
  }
}

void renderMatrixSvg(std::ostream& out, const Matrix& m) {
  SvgOptions o;
  o.title = "Reachability for " + m.query.label() + " (row = from, column = to)";
  size_t allowed = 0;
  for (uint8_t a : m.allowed) allowed += a;
  o.subtitle = std::to_string(m.size()) + " pods, " + std::to_string(allowed) + " of " +
               std::to_string(m.size() * m.size()) + " pairs allowed";
  if (m.hasAudit()) o.subtitle += "; audited policies: " + std::to_string(m.auditedPolicies.size());
  renderSvg(out, m.grid(), o);
}

}  // namespace sluice::ctl
