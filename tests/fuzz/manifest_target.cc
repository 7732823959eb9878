#include <exception>

#include "policyd/model/decode.h"
#include "policyd/model/validate.h"
#include "tests/fuzz/targets.h"

namespace sluice::fuzz {

void manifestOne(std::string_view input, const Violation& violation) {
  const std::string file = "fuzz.yaml";
  model::Decoded d;
  try {
    d = model::decodeText(input, file);
  } catch (const std::exception& e) {
    return violation(std::string("decodeText threw: ") + e.what());
  } catch (...) {
    return violation("decodeText threw a non-exception");
  }
  for (const auto& e : d.errors) {
    // An error names the file (and the object and field after it).
    if (e.message.rfind(file, 0) != 0) violation("error does not name the file: " + e.message);
  }
  // Whatever was accepted is what the API server would accept.
  for (const auto& ns : d.cluster.namespaces) {
    if (auto why = model::validateDnsLabel(ns.name); !why.empty()) {
      violation("accepted namespace with invalid name \"" + ns.name + "\": " + why);
    }
  }
  for (const auto& p : d.cluster.pods) {
    if (auto why = model::validateDnsSubdomain(p.name); !why.empty()) {
      violation("accepted pod with invalid name \"" + p.name + "\": " + why);
    }
    if (auto why = model::validateDnsLabel(p.namespace_); !why.empty()) {
      violation("accepted pod in invalid namespace \"" + p.namespace_ + "\": " + why);
    }
  }
  for (const auto& np : d.cluster.policies) {
    if (auto why = model::validateDnsSubdomain(np.name); !why.empty()) {
      violation("accepted policy with invalid name \"" + np.name + "\": " + why);
    }
  }
  // Deterministic: the same text decodes to the same thing.
  model::Decoded again = model::decodeText(input, file);
  if (again.errors.size() != d.errors.size() ||
      again.cluster.pods.size() != d.cluster.pods.size() ||
      again.cluster.policies.size() != d.cluster.policies.size() ||
      again.cluster.namespaces.size() != d.cluster.namespaces.size()) {
    violation("decoding the same input twice gave different results");
  }
}

}  // namespace sluice::fuzz
