#include "policyd/ctl/diff.h"

#include <nlohmann/json.hpp>

namespace sluice::ctl {

DiffResult diffMatrices(const Matrix& before, const Matrix& after) {
  DiffResult d;
  d.query = after.query;
  // Both key lists are sorted: walk them together to pair up the common pods.
  std::vector<std::pair<size_t, size_t>> common;  // (index in before, index in after)
  size_t a = 0, b = 0;
  while (a < before.size() || b < after.size()) {
    if (b == after.size() || (a < before.size() && before.keys[a] < after.keys[b])) {
      d.onlyBefore.push_back(before.keys[a++]);
    } else if (a == before.size() || after.keys[b] < before.keys[a]) {
      d.onlyAfter.push_back(after.keys[b++]);
    } else {
      common.emplace_back(a++, b++);
    }
  }
  d.comparedPods = common.size();
  d.grid.cells.reserve(common.size() * common.size());
  for (const auto& [bi, ai] : common) {
    d.grid.labels.push_back(before.keys[bi]);
    for (const auto& [bj, aj] : common) {
      bool was = before.at(bi, bj);
      bool now = after.at(ai, aj);
      if (was != now) d.changes.push_back({before.keys[bi], before.keys[bj], was, now});
      d.grid.cells.push_back(was == now ? (now ? Mark::Allowed : Mark::Denied)
                                        : (now ? Mark::NowAllowed : Mark::NowDenied));
    }
  }
  return d;
}

void renderDiffText(std::ostream& out, const DiffResult& d) {
  auto word = [](bool allowed) { return allowed ? "allowed" : "denied"; };
  size_t nowDenied = 0;
  for (const auto& c : d.changes) {
    out << c.from << " -> " << c.to << ": " << word(c.before) << " -> " << word(c.after) << "\n";
    nowDenied += c.before && !c.after;
  }
  const size_t pairs = d.comparedPods * d.comparedPods;
  out << d.changes.size() << " of " << pairs << " pairs changed for " << d.query.label() << " ("
      << nowDenied << " now denied, " << d.changes.size() - nowDenied << " now allowed)";
  if (!d.onlyBefore.empty() || !d.onlyAfter.empty()) {
    out << "; not compared: " << d.onlyBefore.size() << " pod(s) only in -f, "
        << d.onlyAfter.size() << " only in --with";
  }
  out << "\n";
}

void renderDiffJson(std::ostream& out, const DiffResult& d) {
  nlohmann::ordered_json j;
  if (d.query.isNamed()) {
    j["port"] = std::get<std::string>(d.query.port);
  } else {
    j["port"] = std::get<uint16_t>(d.query.port);
  }
  j["protocol"] = model::protocolName(d.query.protocol);
  j["changes"] = nlohmann::ordered_json::array();
  for (const auto& c : d.changes) {
    j["changes"].push_back(
        {{"from", c.from}, {"to", c.to}, {"before", c.before}, {"after", c.after}});
  }
  out << j.dump() << "\n";
}

void renderDiffSvg(std::ostream& out, const DiffResult& d) {
  SvgOptions o;
  o.title = "Reachability changes for " + d.query.label() + " (row = from, column = to)";
  size_t nowDenied = 0;
  for (const auto& c : d.changes) nowDenied += c.before && !c.after;
  o.subtitle = std::to_string(d.changes.size()) + " of " +
               std::to_string(d.comparedPods * d.comparedPods) + " pairs changed (" +
               std::to_string(nowDenied) + " now denied, " +
               std::to_string(d.changes.size() - nowDenied) + " now allowed)";
  if (!d.onlyBefore.empty() || !d.onlyAfter.empty()) {
    o.subtitle += "; not shown: " + std::to_string(d.onlyBefore.size()) + " pod(s) only in -f, " +
                  std::to_string(d.onlyAfter.size()) + " only in --with";
  }
  o.fadeUnchanged = true;
  renderSvg(out, d.grid, o);
}

}  // namespace sluice::ctl
