// The API objects the kube source keeps, reduced to what the engine and the node need, and
// their decoding from the API's JSON. Namespaces, Pods and NetworkPolicies go through the
// model's object decoder (the one the directory source and `sluicectl -f` use), so an object
// the API server accepted is read the same way everywhere.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/ip.h"
#include "common/result.h"
#include "policyd/model/types.h"

namespace sluice::source::kube {

enum class Kind : uint8_t { Namespace, Pod, NetworkPolicy, Node };
inline constexpr Kind kAllKinds[] = {Kind::Namespace, Kind::Pod, Kind::NetworkPolicy, Kind::Node};
inline constexpr size_t kKindCount = 4;

const char* kindName(Kind k);      // "Pod"
const char* resourceName(Kind k);  // "pods", for RBAC messages
// The cluster-wide collection path: "/api/v1/pods", "/apis/networking.k8s.io/v1/networkpolicies".
const char* collectionPath(Kind k);

// A Node as the node agent needs it: where its pods live and how to reach them.
struct Node {
  std::string name;
  std::vector<IpAddr> internalIps;  // status.addresses[type=InternalIP]
  std::vector<Prefix> podCidrs;     // spec.podCIDRs (or spec.podCIDR)
  bool operator==(const Node&) const = default;
};

using Value = std::variant<model::Namespace, model::Pod, model::NetworkPolicy, Node>;

// One object as read from the API.
struct Object {
  std::string key;  // "ns/name", or "name" for cluster-scoped kinds
  std::string resourceVersion;
  // Absent when the object is rejected (`error` says why) or not relevant to policy (a Pod that
  // has Succeeded or Failed no longer owns its IPs).
  std::optional<Value> value;
  std::optional<Error> error;
};

// Decodes one item of a List or the `object` of a watch event. Fails only when the object has
// no name (it cannot be tracked at all); validation problems land in Object::error.
Result<Object> decodeObject(Kind kind, const nlohmann::json& item);

}  // namespace sluice::source::kube
