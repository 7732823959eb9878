// The fuzz entry points: each decodes one input and checks the property every decoder owes
// us, whatever the bytes: no crash, no throw, no hang, and either a clean error or a valid
// object. Shared by the bounded GoogleTest runs (CI) and the optional libFuzzer binaries.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace sluice::fuzz {

// Called with a description when the property does not hold.
using Violation = std::function<void(const std::string&)>;

// policyd/model: decodeText (YAML or JSON, multi-document, List kinds).
void manifestOne(std::string_view input, const Violation& violation);
// cni/spec: parseNetConf for every command, and decodeResult (prevResult / IPAM results).
void netConfOne(std::string_view input, const Violation& violation);
// common/endpoint_api: decodeRequest and decodeReply, with an encode/decode round trip.
void endpointLineOne(std::string_view input, const Violation& violation);

}  // namespace sluice::fuzz
