// Internal to the decoder: two thin adapters, one over yaml-cpp nodes and one over nlohmann
// JSON values, with the same small interface. The object decoder (object_decoder.h) is a
// template over this interface, so YAML and JSON share one validation walk and cannot drift.
//
// Interface of a node type N:
//   NodeType type() const;
//   const std::string& str() const;        // type() == String
//   int64_t integer() const;               // type() == Int
//   bool boolean() const;                  // type() == Bool
//   std::optional<N> get(std::string_view key) const;   // Map; nullopt if absent or null
//   size_t size() const;                   // Map or Seq
//   template <class F> void forEachItem(F f) const;      // Seq: f(size_t index, const N&)
//   template <class F> void forEachEntry(F f) const;     // Map: f(const std::string&, const N&)
//   int line() const;                      // 1-based source line, 0 when unknown
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::model::detail {

enum class NodeType { Null, Bool, Int, Float, String, Map, Seq };

const char* nodeTypeName(NodeType t);

// JSON values are already typed. Objects are std::map with a transparent comparator, so lookups
// by string_view need no temporary string.
class JsonNode {
 public:
  explicit JsonNode(const nlohmann::json& j) : j_(&j) {}

  NodeType type() const {
    using V = nlohmann::json::value_t;
    switch (j_->type()) {
      case V::null:
        return NodeType::Null;
      case V::boolean:
        return NodeType::Bool;
      case V::number_integer:
        return NodeType::Int;
      case V::number_unsigned:
        // Beyond int64 cannot be a valid port or anything else we read as an integer.
        return j_->get_ref<const nlohmann::json::number_unsigned_t&>() <= INT64_MAX
                   ? NodeType::Int
                   : NodeType::Float;
      case V::number_float:
        return NodeType::Float;
      case V::string:
        return NodeType::String;
      case V::object:
        return NodeType::Map;
      case V::array:
        return NodeType::Seq;
      default:
        return NodeType::Null;  // binary / discarded never come out of parse()
    }
  }
  const std::string& str() const { return j_->get_ref<const std::string&>(); }
  int64_t integer() const {
    if (j_->is_number_unsigned())
      return static_cast<int64_t>(j_->get_ref<const nlohmann::json::number_unsigned_t&>());
    return j_->get_ref<const nlohmann::json::number_integer_t&>();
  }
  bool boolean() const { return j_->get_ref<const bool&>(); }
  std::optional<JsonNode> get(std::string_view key) const {
    auto it = j_->find(key);
    if (it == j_->end() || it->is_null()) return std::nullopt;
    return JsonNode(*it);
  }
  size_t size() const { return j_->size(); }
  template <class F>
  void forEachItem(F f) const {
    size_t i = 0;
    for (const auto& v : *j_) f(i++, JsonNode(v));
  }
  template <class F>
  void forEachEntry(F f) const {
    for (const auto& [k, v] : j_->items()) f(k, JsonNode(v));
  }
  int line() const { return 0; }

 private:
  const nlohmann::json* j_;
};

// YAML scalars are untyped text; resolve plain (unquoted) scalars the way kubectl's YAML
// library (go-yaml v2, YAML 1.1 booleans) does, so `port: 80` is an integer, `port: "80"` a
// string and `enabled: yes` a boolean — the API server then sees the same types we check.
// Field paths ("metadata.labels.app", "items[2].spec") of the map keys a YAML document gives
// more than once. The adapters below read the last value of such a key, the way the API
// server's JSON decoding does, so YAML and JSON inputs give one answer.
std::vector<std::string> yamlDuplicateKeys(const YAML::Node& doc);

class YamlNode {
 public:
  explicit YamlNode(const YAML::Node& n);

  NodeType type() const { return type_; }
  const std::string& str() const { return n_.Scalar(); }
  int64_t integer() const { return int_; }
  bool boolean() const { return int_ != 0; }
  std::optional<YamlNode> get(std::string_view key) const;
  size_t size() const { return n_.size(); }
  template <class F>
  void forEachItem(F f) const {
    size_t i = 0;
    for (const auto& v : n_) f(i++, YamlNode(v));
  }
  // Each key once, with its last value (yaml-cpp keeps every entry of a duplicated key).
  template <class F>
  void forEachEntry(F f) const {
    for (auto it = n_.begin(); it != n_.end(); ++it) {
      if (!supersededAt(it)) f(it->first.Scalar(), YamlNode(it->second));
    }
  }
  int line() const { return n_.Mark().line >= 0 ? n_.Mark().line + 1 : 0; }

 private:
  bool supersededAt(const YAML::const_iterator& at) const;

  YAML::Node n_;
  NodeType type_ = NodeType::Null;
  int64_t int_ = 0;
};

}  // namespace sluice::model::detail
