#include "policyd/model/label_selector.h"

#include <algorithm>
#include <cctype>

namespace sluice::model {

bool operator==(const SelectorRequirement& a, const SelectorRequirement& b) {
  return a.key == b.key && a.op == b.op && a.values == b.values;
}

bool LabelSelector::matches(const Labels& labels) const {
  for (const auto& [k, v] : matchLabels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  for (const auto& req : matchExpressions) {
    auto it = labels.find(req.key);
    bool has = it != labels.end();
    switch (req.op) {
      case SelectorOp::In:
        if (!has || !std::binary_search(req.values.begin(), req.values.end(), it->second))
          return false;
        break;
      case SelectorOp::NotIn:
        // A pod without the key satisfies NotIn (apimachinery labels.Selector semantics).
        if (has && std::binary_search(req.values.begin(), req.values.end(), it->second))
          return false;
        break;
      case SelectorOp::Exists:
        if (!has) return false;
        break;
      case SelectorOp::DoesNotExist:
        if (has) return false;
        break;
    }
  }
  return true;
}

std::string LabelSelector::toString() const {
  if (empty()) return "{} (all)";
  std::string out;
  auto sep = [&] {
    if (!out.empty()) out += ",";
  };
  for (const auto& [k, v] : matchLabels) {
    sep();
    out += k + "=" + v;
  }
  for (const auto& r : matchExpressions) {
    sep();
    std::string vals;
    for (const auto& v : r.values) vals += (vals.empty() ? "" : ",") + v;
    switch (r.op) {
      case SelectorOp::In: out += r.key + " in (" + vals + ")"; break;
      case SelectorOp::NotIn: out += r.key + " notin (" + vals + ")"; break;
      case SelectorOp::Exists: out += r.key; break;
      case SelectorOp::DoesNotExist: out += "!" + r.key; break;
    }
  }
  return out;
}

namespace {

bool isAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])? up to 63 chars (qualified name part / label value).
std::string checkName(std::string_view s, const char* what) {
  if (s.size() > 63) return std::string(what) + " must be no more than 63 characters";
  if (!isAlnum(s.front()) || !isAlnum(s.back()))
    return std::string(what) + " must begin and end with an alphanumeric character";
  for (char c : s) {
    if (!isAlnum(c) && c != '-' && c != '_' && c != '.')
      return std::string(what) + " may contain only alphanumerics, '-', '_' or '.'";
  }
  return "";
}

// RFC 1123 subdomain: lowercase alphanumerics, '-', '.', up to 253.
std::string checkDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return "prefix must be a DNS subdomain of 1-253 characters";
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return "prefix must be a lowercase RFC 1123 subdomain";
  }
  if (!isAlnum(s.front()) || !isAlnum(s.back()))
    return "prefix must start and end with an alphanumeric character";
  return "";
}

}  // namespace

std::string validateLabelKey(std::string_view key) {
  if (key.empty()) return "label key must not be empty";
  auto slash = key.find('/');
  std::string_view name = key;
  if (slash != std::string_view::npos) {
    if (auto e = checkDnsSubdomain(key.substr(0, slash)); !e.empty()) return "label key " + e;
    name = key.substr(slash + 1);
    if (name.empty()) return "label key name part must not be empty";
  }
  if (auto e = checkName(name, "label key name"); !e.empty()) return e;
  return "";
}

std::string validateLabelValue(std::string_view value) {
  if (value.empty()) return "";
  return checkName(value, "label value");
}

}  // namespace sluice::model
