#include "policyd/model/validate.h"

namespace sluice::model {

namespace {

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

std::string validateDnsLabel(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 63) return "must be no more than 63 characters";
  for (char c : s) {
    if (!isLowerAlnum(c) && c != '-')
      return "must consist of lowercase alphanumeric characters or '-' (RFC 1123 label)";
  }
  if (!isLowerAlnum(s.front()) || !isLowerAlnum(s.back()))
    return "must start and end with a lowercase alphanumeric character (RFC 1123 label)";
  return "";
}

std::string validateDnsSubdomain(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 253) return "must be no more than 253 characters";
  for (char c : s) {
    if (!isLowerAlnum(c) && c != '-' && c != '.')
      return "must consist of lowercase alphanumeric characters, '-' or '.' (RFC 1123 subdomain)";
  }
  // Each dot-separated part must itself start and end alphanumeric ("a..b", "a.-b" are invalid).
  size_t start = 0;
  while (start <= s.size()) {
    size_t dot = s.find('.', start);
    std::string_view part = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (part.empty() || !isLowerAlnum(part.front()) || !isLowerAlnum(part.back()))
      return "each '.'-separated part must start and end with a lowercase alphanumeric "
             "character (RFC 1123 subdomain)";
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return "";
}

std::string validatePortName(std::string_view s) {
  if (s.empty() || s.size() > 15) return "must be 1-15 characters (IANA_SVC_NAME)";
  bool hasLetter = false;
  for (char c : s) {
    if (!isLowerAlnum(c) && c != '-')
      return "must contain only lowercase alphanumeric characters or '-' (IANA_SVC_NAME)";
    if (c >= 'a' && c <= 'z') hasLetter = true;
  }
  if (!hasLetter) return "must contain at least one letter (IANA_SVC_NAME)";
  if (s.front() == '-' || s.back() == '-') return "must not begin or end with '-' (IANA_SVC_NAME)";
  if (s.find("--") != std::string_view::npos)
    return "must not contain consecutive '-' (IANA_SVC_NAME)";
  return "";
}

}  // namespace sluice::model
