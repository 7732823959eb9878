// Kubernetes name syntax checks used while decoding (apimachinery validation). Each returns a
// message describing the problem, or empty when the value is valid. Label syntax lives in
// label_selector.h; these are the other names the API server checks.
#pragma once

#include <string>
#include <string_view>

namespace sluice::model {

// RFC 1123 label: 1-63 lowercase alphanumerics or '-', starting and ending alphanumeric.
// Namespace names and metadata.namespace.
std::string validateDnsLabel(std::string_view s);
// RFC 1123 subdomain: 1-253 characters, dot-separated labels. Pod and NetworkPolicy names.
std::string validateDnsSubdomain(std::string_view s);
// IANA_SVC_NAME: 1-15 lowercase alphanumerics or '-', at least one letter, no leading,
// trailing or doubled '-'. Named container ports and NetworkPolicy named ports.
std::string validatePortName(std::string_view s);

}  // namespace sluice::model
