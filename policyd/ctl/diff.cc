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
  for (const auto& [bi, ai] : common) {
    for (const auto& [bj, aj] : common) {
      bool was = before.at(bi, bj);
      bool now = after.at(ai, aj);
      if (was != now) d.changes.push_back({before.keys[bi], before.keys[bj], was, now});
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

}  // namespace sluice::ctl
