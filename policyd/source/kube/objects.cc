#include "policyd/source/kube/objects.h"

#include <nlohmann/json.hpp>

#include "policyd/model/object_decoder.h"
#include "policyd/model/tree_node.h"

namespace sluice::source::kube {

namespace {

using model::detail::JsonNode;
using model::detail::ObjectDecoder;
using model::detail::Problems;

constexpr const char* kOrigin = "kube-apiserver";

std::string stringAt(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Error problemsError(const char* kind, const std::string& key, const Problems& p) {
  std::string msg = std::string(kOrigin) + ": " + kind + " " + key + ": ";
  const auto& list = p.list();
  for (size_t i = 0; i < list.size(); ++i) msg += (i ? "; " : "") + list[i];
  if (p.count() > list.size()) msg += "; and " + std::to_string(p.count() - list.size()) + " more";
  return makeError(std::move(msg));
}

Node decodeNode(const nlohmann::json& item, const std::string& name, std::optional<Error>& error) {
  Node n;
  n.name = name;
  auto addError = [&](const std::string& what) {
    if (!error) error = makeError(std::string(kOrigin) + ": Node " + name + ": " + what);
  };
  auto status = item.find("status");
  if (status != item.end() && status->is_object()) {
    auto addrs = status->find("addresses");
    if (addrs != status->end() && addrs->is_array()) {
      for (const auto& a : *addrs) {
        if (!a.is_object() || stringAt(a, "type") != "InternalIP") continue;
        auto ip = IpAddr::parse(stringAt(a, "address"));
        if (!ip.ok()) {
          addError("status.addresses: " + ip.error().message);
          continue;
        }
        n.internalIps.push_back(*ip);
      }
    }
  }
  auto spec = item.find("spec");
  if (spec != item.end() && spec->is_object()) {
    std::vector<std::string> cidrs;
    auto list = spec->find("podCIDRs");
    if (list != spec->end() && list->is_array()) {
      for (const auto& c : *list)
        if (c.is_string()) cidrs.push_back(c.get<std::string>());
    }
    if (cidrs.empty()) {
      std::string one = stringAt(*spec, "podCIDR");
      if (!one.empty()) cidrs.push_back(one);
    }
    for (const auto& c : cidrs) {
      auto p = Prefix::parse(c);
      if (!p.ok()) {
        addError("spec.podCIDRs: " + p.error().message);
        continue;
      }
      n.podCidrs.push_back(*p);
    }
  }
  return n;
}

}  // namespace

const char* kindName(Kind k) {
  switch (k) {
    case Kind::Namespace:
      return "Namespace";
    case Kind::Pod:
      return "Pod";
    case Kind::NetworkPolicy:
      return "NetworkPolicy";
    case Kind::Node:
      return "Node";
  }
  return "?";
}

const char* resourceName(Kind k) {
  switch (k) {
    case Kind::Namespace:
      return "namespaces";
    case Kind::Pod:
      return "pods";
    case Kind::NetworkPolicy:
      return "networkpolicies.networking.k8s.io";
    case Kind::Node:
      return "nodes";
  }
  return "?";
}

const char* collectionPath(Kind k) {
  switch (k) {
    case Kind::Namespace:
      return "/api/v1/namespaces";
    case Kind::Pod:
      return "/api/v1/pods";
    case Kind::NetworkPolicy:
      return "/apis/networking.k8s.io/v1/networkpolicies";
    case Kind::Node:
      return "/api/v1/nodes";
  }
  return "/";
}

Result<Object> decodeObject(Kind kind, const nlohmann::json& item) {
  if (!item.is_object()) return makeError(std::string(kindName(kind)) + ": not a JSON object");
  auto md = item.find("metadata");
  if (md == item.end() || !md->is_object())
    return makeError(std::string(kindName(kind)) + ": metadata missing");
  std::string name = stringAt(*md, "name");
  std::string ns = stringAt(*md, "namespace");
  if (name.empty()) return makeError(std::string(kindName(kind)) + ": metadata.name missing");
  Object out;
  bool namespaced = kind == Kind::Pod || kind == Kind::NetworkPolicy;
  out.key = namespaced ? ns + "/" + name : name;
  out.resourceVersion = stringAt(*md, "resourceVersion");

  if (kind == Kind::Node) {
    out.value = decodeNode(item, name, out.error);
    if (out.error) out.value.reset();
    return out;
  }

  Problems problems;
  std::vector<std::string> notes;  // informational only; the API server already accepted it
  ObjectDecoder<JsonNode> d(problems, notes);
  JsonNode node(item);
  model::Origin origin{kOrigin, 0};
  switch (kind) {
    case Kind::Namespace: {
      model::Namespace v;
      std::string unused;
      d.metadata(node, false, true, unused, v.name, v.labels);
      d.namespaceBody(node, v);
      v.origin = origin;
      if (!problems.any()) out.value = std::move(v);
      break;
    }
    case Kind::Pod: {
      // A finished pod's IPs go back to the pool and may be handed to a new pod at once.
      auto status = item.find("status");
      if (status != item.end() && status->is_object()) {
        std::string phase = stringAt(*status, "phase");
        if (phase == "Succeeded" || phase == "Failed") return out;
      }
      model::Pod v;
      d.metadata(node, true, false, v.namespace_, v.name, v.labels);
      d.podBody(node, v);
      v.origin = origin;
      if (!problems.any()) out.value = std::move(v);
      break;
    }
    case Kind::NetworkPolicy: {
      model::NetworkPolicy v;
      d.metadata(node, true, false, v.namespace_, v.name, v.podSelector.matchLabels);
      v.podSelector.matchLabels.clear();  // metadata() filled it only to validate the labels
      d.policyBody(node, v);
      v.origin = origin;
      if (!problems.any()) out.value = std::move(v);
      break;
    }
    case Kind::Node:
      break;
  }
  if (problems.any()) out.error = problemsError(kindName(kind), out.key, problems);
  return out;
}

}  // namespace sluice::source::kube
