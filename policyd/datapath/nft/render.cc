#include "policyd/datapath/nft/render.h"

#include <sstream>

namespace sluice::datapath::nft {

namespace {

const std::string kTable = std::string(kTableFamily) + " " + kTableName;

bool isMap(const Set& s) { return s.type.find(" : ") != std::string::npos; }

std::string element(const Element& e) { return e.value.empty() ? e.key : e.key + " : " + e.value; }

template <typename It>
std::string elementList(It first, It last, bool keysOnly) {
  std::string out;
  for (It it = first; it != last; ++it) {
    if (!out.empty()) out += ", ";
    out += keysOnly ? it->key : element(*it);
  }
  return out;
}

std::string setBody(const Set& s) {
  std::string b = "type " + s.type + ";";
  if (s.interval) b += " flags interval;";
  return b;
}

std::string limitSpec(const NftOptions& opts) {
  return "rate " + std::to_string(opts.logRatePerSec) + "/second burst " +
         std::to_string(opts.logBurst) + " packets";
}

// Element lists are split so no single command grows without bound (nft reads the whole file
// into one batch either way).
constexpr size_t kElementsPerCommand = 256;

void addElements(std::ostringstream& o, const std::string& name, const std::vector<Element>& es,
                 bool add) {
  for (size_t i = 0; i < es.size(); i += kElementsPerCommand) {
    const size_t end = std::min(es.size(), i + kElementsPerCommand);
    o << (add ? "add" : "delete") << " element " << kTable << " " << name << " { "
      << elementList(es.begin() + i, es.begin() + end, !add) << " }\n";
  }
}

void addChainDecl(std::ostringstream& o, const std::string& name, const Chain& c) {
  o << "add chain " << kTable << " " << name;
  if (!c.base.empty()) o << " { " << c.base << " }";
  o << "\n";
}

void addRules(std::ostringstream& o, const std::string& name, const Chain& c) {
  for (const std::string& r : c.rules)
    o << "add rule " << kTable << " " << name << " " << r << "\n";
}

}  // namespace

std::string renderTable(const Table& t, const NftOptions& opts) {
  std::ostringstream o;
  o << "table " << kTable << " {\n";
  for (const std::string& c : t.counters) o << "\tcounter " << c << " {\n\t}\n";
  o << "\tlimit drop_log {\n\t\t" << limitSpec(opts) << "\n\t}\n";
  for (const auto& [name, s] : t.sets) {
    o << "\t" << (isMap(s) ? "map " : "set ") << name << " {\n\t\ttype " << s.type << "\n";
    if (s.interval) o << "\t\tflags interval\n";
    if (!s.elements.empty()) {
      o << "\t\telements = {";
      bool first = true;
      for (const Element& e : s.elements) {
        o << (first ? " " : ",\n\t\t\t     ") << element(e);
        first = false;
      }
      o << " }\n";
    }
    o << "\t}\n";
  }
  for (const auto& [name, c] : t.chains) {
    o << "\tchain " << name << " {\n";
    if (!c.base.empty()) o << "\t\t" << c.base << "\n";
    for (const std::string& r : c.rules) o << "\t\t" << r << "\n";
    o << "\t}\n";
  }
  o << "}\n";
  return o.str();
}

std::string renderOps(const TableOps& ops) {
  std::ostringstream o;
  for (const std::string& c : ops.addCounters) o << "add counter " << kTable << " " << c << "\n";
  for (const auto& [name, s] : ops.addSets) {
    o << "add " << (isMap(s) ? "map " : "set ") << kTable << " " << name << " { " << setBody(s)
      << " }\n";
  }
  for (const auto& [name, c] : ops.addChains) addChainDecl(o, name, c);
  for (const auto& [name, es] : ops.deleteElements) addElements(o, name, es, false);
  for (const auto& [name, es] : ops.addElements) addElements(o, name, es, true);
  for (const auto& [name, s] : ops.addSets) {
    addElements(o, name, std::vector<Element>(s.elements.begin(), s.elements.end()), true);
  }
  for (const auto& [name, c] : ops.rewriteChains)
    o << "flush chain " << kTable << " " << name << "\n";
  for (const std::string& name : ops.deleteChains)
    o << "flush chain " << kTable << " " << name << "\n";
  for (const auto& [name, c] : ops.rewriteChains) addRules(o, name, c);
  for (const auto& [name, c] : ops.addChains) addRules(o, name, c);
  for (const std::string& name : ops.deleteChains)
    o << "delete chain " << kTable << " " << name << "\n";
  for (const auto& [name, s] : ops.deleteSets) {
    o << "delete " << (isMap(s) ? "map " : "set ") << kTable << " " << name << "\n";
  }
  for (const std::string& c : ops.deleteCounters)
    o << "delete counter " << kTable << " " << c << "\n";
  return o.str();
}

std::string renderReplace(const TableNames& have, const Table& want, const NftOptions& opts) {
  std::ostringstream o;
  o << "add table " << kTable << "\n";
  o << "add limit " << kTable << " drop_log { " << limitSpec(opts) << " }\n";
  for (const std::string& c : have.chains) o << "flush chain " << kTable << " " << c << "\n";
  for (const std::string& s : have.sets) {
    o << "flush " << (have.maps.contains(s) ? "map " : "set ") << kTable << " " << s << "\n";
  }
  for (const std::string& c : have.chains) {
    if (!want.chains.contains(c)) o << "delete chain " << kTable << " " << c << "\n";
  }
  for (const std::string& s : have.sets) {
    if (!want.sets.contains(s)) {
      o << "delete " << (have.maps.contains(s) ? "map " : "set ") << kTable << " " << s << "\n";
    }
  }
  for (const std::string& c : have.counters) {
    if (!want.counters.contains(c)) o << "delete counter " << kTable << " " << c << "\n";
  }
  for (const std::string& c : want.counters) {
    if (!have.counters.contains(c)) o << "add counter " << kTable << " " << c << "\n";
  }
  for (const auto& [name, s] : want.sets) {
    if (!have.sets.contains(name)) {
      o << "add " << (isMap(s) ? "map " : "set ") << kTable << " " << name << " { " << setBody(s)
        << " }\n";
    }
  }
  for (const auto& [name, c] : want.chains) {
    if (!have.chains.contains(name)) addChainDecl(o, name, c);
  }
  for (const auto& [name, s] : want.sets) {
    addElements(o, name, std::vector<Element>(s.elements.begin(), s.elements.end()), true);
  }
  for (const auto& [name, c] : want.chains) addRules(o, name, c);
  return o.str();
}

std::string renderDelete() { return "delete table " + kTable + "\n"; }

}  // namespace sluice::datapath::nft
