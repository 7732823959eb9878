#include "policyd/model/tree_node.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <iterator>

namespace sluice::model::detail {

const char* nodeTypeName(NodeType t) {
  switch (t) {
    case NodeType::Null:
      return "null";
    case NodeType::Bool:
      return "a boolean";
    case NodeType::Int:
      return "an integer";
    case NodeType::Float:
      return "a number";
    case NodeType::String:
      return "a string";
    case NodeType::Map:
      return "a map";
    case NodeType::Seq:
      return "a list";
  }
  return "?";
}

namespace {

constexpr std::array<std::string_view, 11> kTrueWords = {"y",  "Y",  "yes",  "Yes",  "YES", "on",
                                                         "On", "ON", "true", "True", "TRUE"};
constexpr std::array<std::string_view, 11> kFalseWords = {
    "n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"};

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// [-+]?[0-9]+, or 0x / 0o prefixed. Returns false when not an integer or out of int64 range.
bool parseInt(std::string_view s, int64_t& out) {
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    s.remove_prefix(2);
  }
  if (s.empty()) return false;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size()) return false;
  if (neg) {
    if (v > static_cast<uint64_t>(INT64_MAX) + 1) return false;
    out = static_cast<int64_t>(0 - v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    out = static_cast<int64_t>(v);
  }
  return true;
}

// YAML 1.1 floats (and integers beyond int64): [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
// plus .inf / .nan spellings.
bool looksLikeNumber(std::string_view s) {
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "-.inf" || s == "+.inf" || s == "-.Inf" ||
      s == "+.Inf" || s == "-.INF" || s == "+.INF" || s == ".nan" || s == ".NaN" || s == ".NAN")
    return true;
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t digits = 0;
  while (i < s.size() && isDigit(s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && isDigit(s[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp = 0;
    while (i < s.size() && isDigit(s[i])) ++i, ++exp;
    if (exp == 0) return false;
  }
  return i == s.size();
}

}  // namespace

YamlNode::YamlNode(const YAML::Node& n) : n_(n) {
  switch (n_.Type()) {
    case YAML::NodeType::Map:
      type_ = NodeType::Map;
      return;
    case YAML::NodeType::Sequence:
      type_ = NodeType::Seq;
      return;
    case YAML::NodeType::Scalar:
      break;
    default:
      type_ = NodeType::Null;
      return;  // Null, Undefined
  }
  const std::string& tag = n_.Tag();
  const std::string& s = n_.Scalar();
  // "!" marks a quoted or block scalar: always a string. Explicit core-schema tags win.
  if (tag == "!" || tag == "tag:yaml.org,2002:str") {
    type_ = NodeType::String;
    return;
  }
  if (tag != "?" && tag != "tag:yaml.org,2002:int" && tag != "tag:yaml.org,2002:bool" &&
      tag != "tag:yaml.org,2002:float") {
    type_ = NodeType::String;  // a custom tag: kubectl would reject it; treat the text as text
    return;
  }
  for (auto w : kTrueWords) {
    if (s == w) {
      type_ = NodeType::Bool;
      int_ = 1;
      return;
    }
  }
  for (auto w : kFalseWords) {
    if (s == w) {
      type_ = NodeType::Bool;
      int_ = 0;
      return;
    }
  }
  if (parseInt(s, int_)) {
    type_ = NodeType::Int;
    return;
  }
  type_ = looksLikeNumber(s) ? NodeType::Float : NodeType::String;
}

std::optional<YamlNode> YamlNode::get(std::string_view key) const {
  // Linear scan: Kubernetes maps are small, and yaml-cpp's own lookup needs a std::string key.
  // yaml-cpp keeps every entry of a duplicated key; the last one wins, as in JSON.
  std::optional<YAML::Node> found;
  for (const auto& kv : n_) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) found = kv.second;
  }
  if (!found || found->IsNull() || !found->IsDefined()) return std::nullopt;
  return YamlNode(*found);
}

bool YamlNode::supersededAt(const YAML::const_iterator& at) const {
  const std::string& key = at->first.Scalar();
  for (auto it = std::next(at); it != n_.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) return true;
  }
  return false;
}

namespace {

void collectDuplicates(const YAML::Node& n, const std::string& path, int depth,
                       std::vector<std::string>& out) {
  // Bounded like the decoder's List nesting: nothing we read is nested deeper.
  if (depth > 64) return;
  auto join = [&](const std::string& leaf) { return path.empty() ? leaf : path + "." + leaf; };
  if (n.IsMap()) {
    std::vector<std::string> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) continue;
      const std::string& key = kv.first.Scalar();
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        out.push_back(join(key));
      } else {
        seen.push_back(key);
      }
      collectDuplicates(kv.second, join(key), depth + 1, out);
    }
  } else if (n.IsSequence()) {
    size_t i = 0;
    for (const auto& item : n) {
      collectDuplicates(item, path + "[" + std::to_string(i++) + "]", depth + 1, out);
    }
  }
}

}  // namespace

std::vector<std::string> yamlDuplicateKeys(const YAML::Node& doc) {
  std::vector<std::string> out;
  collectDuplicates(doc, "", 0, out);
  return out;
}

}  // namespace sluice::model::detail
