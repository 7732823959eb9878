// Shared helpers for the model tests.
#pragma once

#include <string>
#include <string_view>

#include "policyd/model/decode.h"

namespace sluice::model::testing {

// A canonical text form of a cluster, for comparing models decoded from different inputs.
std::string describe(const Cluster& c);

// All errors joined by newlines (for assertion messages).
std::string joinErrors(const Decoded& d);
std::string joinNotes(const Decoded& d);

// A NetworkPolicy prod/allow-web in YAML with the given spec body (already indented by 2).
std::string policyYaml(std::string_view specBody);

}  // namespace sluice::model::testing
