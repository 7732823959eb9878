#include "policyd/model/json_filter.h"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

namespace sluice::model::detail {

namespace {

using Json = nlohmann::json;

// How a container's members are filtered, decided from its key and its parent's role.
enum class Role : uint8_t {
  Generic,        // keep everything
  Metadata,       // keep name, namespace, labels, annotations (see below)
  Annotations,    // keep sluice.io/enforcement
  Status,         // keep podIP, podIPs
  Spec,           // keep everything; Pod-only bulk fields become null (key kept)
  ContainerList,  // spec.containers / spec.initContainers
  Container,      // keep name, ports, restartPolicy
  Drop,           // not stored at all
  NullValue,      // key stored with a null value
};

template <size_t N>
bool in(const std::array<std::string_view, N>& set, std::string_view key) {
  return std::find(set.begin(), set.end(), key) != set.end();
}

constexpr std::array<std::string_view, 4> kMetadataKeep = {"name", "namespace", "labels",
                                                           "annotations"};
// Of the annotations, only the one the decoder reads (kEnforcementAnnotation in types.h).
constexpr std::array<std::string_view, 1> kAnnotationsKeep = {"sluice.io/enforcement"};
constexpr std::array<std::string_view, 2> kStatusKeep = {"podIP", "podIPs"};
constexpr std::array<std::string_view, 3> kContainerKeep = {"name", "ports", "restartPolicy"};
// Pod spec fields with large values. Their keys stay so that, were they to appear in a
// NetworkPolicy spec, the unknown-field check still reports them.
constexpr std::array<std::string_view, 14> kSpecBulk = {"volumes",
                                                        "affinity",
                                                        "tolerations",
                                                        "securityContext",
                                                        "hostAliases",
                                                        "dnsConfig",
                                                        "readinessGates",
                                                        "ephemeralContainers",
                                                        "imagePullSecrets",
                                                        "resourceClaims",
                                                        "schedulingGates",
                                                        "overhead",
                                                        "topologySpreadConstraints",
                                                        "os"};

Role childRole(Role parent, bool inArray, std::string_view key) {
  if (inArray) return parent == Role::ContainerList ? Role::Container : Role::Generic;
  switch (parent) {
    case Role::Metadata:
      if (key == "annotations") return Role::Annotations;
      return in(kMetadataKeep, key) ? Role::Generic : Role::Drop;
    case Role::Annotations:
      return in(kAnnotationsKeep, key) ? Role::Generic : Role::Drop;
    case Role::Status:
      return in(kStatusKeep, key) ? Role::Generic : Role::Drop;
    case Role::Container:
      return in(kContainerKeep, key) ? Role::Generic : Role::Drop;
    case Role::Spec:
      if (key == "containers" || key == "initContainers") return Role::ContainerList;
      return in(kSpecBulk, key) ? Role::NullValue : Role::Generic;
    default:
      break;
  }
  if (key == "metadata") return Role::Metadata;
  if (key == "spec") return Role::Spec;
  if (key == "status") return Role::Status;
  return Role::Generic;
}

class FilteringBuilder final : public nlohmann::json_sax<Json> {
 public:
  explicit FilteringBuilder(const ItemSink& onItem) : onItem_(onItem) {}

  Json root;
  std::string error;
  // Duplicate keys outside streamed items, as paths from the root.
  std::vector<std::string> duplicates;

  bool null() override { return scalar(Json()); }
  bool boolean(bool v) override { return scalar(Json(v)); }
  bool number_integer(number_integer_t v) override { return scalar(Json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return scalar(Json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return scalar(Json(v)); }
  bool string(string_t& v) override {
    if (skipDepth_ > 0) return true;
    return scalar(Json(std::move(v)));
  }
  bool binary(binary_t&) override { return scalar(Json()); }  // not produced by JSON text
  bool key(string_t& k) override {
    if (skipDepth_ == 0) key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) override { return open(Json::value_t::object); }
  bool start_array(std::size_t) override { return open(Json::value_t::array); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = e.what();
    return false;
  }

 private:
  struct Frame {
    Json* value;
    Role role;
    bool streamed;  // its object elements go to onItem_
    // Where the container sits in its parent, for duplicate-key paths: the key (owned by the
    // parent map, whose nodes do not move) or the array index.
    const std::string* key;
    size_t index;
    size_t dupMark;  // duplicates.size() when it opened
  };

  // "spec.ingress[0].from" for the frames from `first` on, then `leaf`.
  std::string pathOf(size_t first, const std::string& leaf) const {
    std::string out;
    for (size_t i = first; i < stack_.size(); ++i) {
      if (stack_[i].key) {
        if (!out.empty()) out += '.';
        out += *stack_[i].key;
      } else if (i > 0) {
        out += '[' + std::to_string(stack_[i].index) + ']';
      }
    }
    if (!out.empty()) out += '.';
    return out + leaf;
  }

  Role roleHere() const {
    if (stack_.empty()) return Role::Generic;
    const Frame& f = stack_.back();
    return childRole(f.role, f.value->is_array(), key_);
  }

  struct Placed {
    Json* value;
    const std::string* key;
    size_t index;
  };

  Placed place(Json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return {&root, nullptr, 0};
    }
    Json* parent = stack_.back().value;
    if (parent->is_array()) {
      auto& arr = parent->get_ref<Json::array_t&>();
      arr.push_back(std::move(v));
      return {&arr.back(), nullptr, arr.size() - 1};
    }
    auto& obj = parent->get_ref<Json::object_t&>();
    auto [it, inserted] = obj.try_emplace(std::move(key_));
    if (!inserted) duplicates.push_back(pathOf(0, it->first));
    it->second = std::move(v);
    return {&it->second, &it->first, 0};
  }

  bool scalar(Json&& v) {
    if (skipDepth_ > 0) return true;
    switch (roleHere()) {
      case Role::Drop:
        return true;
      case Role::NullValue:
        place(Json());
        return true;
      default:
        place(std::move(v));
        return true;
    }
  }

  bool open(Json::value_t type) {
    if (skipDepth_ > 0) {
      ++skipDepth_;
      return true;
    }
    Role role = roleHere();
    if (role == Role::Drop || role == Role::NullValue) {
      if (role == Role::NullValue) place(Json());
      skipDepth_ = 1;
      return true;
    }
    bool streamed = false;
    if (type == Json::value_t::array && onItem_) {
      streamed =
          stack_.empty() || (stack_.size() == 1 && stack_[0].value->is_object() && key_ == "items");
    }
    Placed at = place(Json(type));
    stack_.push_back({at.value, role, streamed, at.key, at.index, duplicates.size()});
    return true;
  }

  bool close() {
    if (skipDepth_ > 0) {
      --skipDepth_;
      return true;
    }
    const Frame done = stack_.back();
    if (stack_.size() >= 2 && stack_[stack_.size() - 2].streamed && done.value->is_object()) {
      // Paths relative to the item: drop the prefix of the frames above it.
      std::vector<std::string> itemDups;
      const size_t strip = done.dupMark < duplicates.size() ? pathOf(0, "").size() : 0;
      for (size_t i = done.dupMark; i < duplicates.size(); ++i) {
        // Each path recorded inside the item starts with its own ("items[3]." or "[3].").
        itemDups.push_back(duplicates[i].substr(std::min(strip, duplicates[i].size())));
      }
      stack_.pop_back();
      if (onItem_(*done.value, stack_.size() == 1, itemDups)) {
        stack_.back().value->get_ref<Json::array_t&>().pop_back();
        duplicates.resize(done.dupMark);
      }
      return true;
    }
    stack_.pop_back();
    return true;
  }

  const ItemSink& onItem_;
  std::vector<Frame> stack_;

  std::string key_;
  int skipDepth_ = 0;
};

}  // namespace

Result<nlohmann::json> parseJsonFiltered(std::string_view text, const ItemSink& onItem,
                                         std::vector<std::string>* duplicateKeys) {
  FilteringBuilder builder(onItem);
  bool ok = Json::sax_parse(text.begin(), text.end(), &builder);
  if (!ok) {
    // what() is "[json.exception.parse_error.101] parse error at line 3, column 5: ...".
    std::string msg = builder.error.empty() ? "parse error" : builder.error;
    if (auto close = msg.find("] "); msg.starts_with("[json.") && close != std::string::npos)
      msg.erase(0, close + 2);
    return makeError(msg);
  }
  if (duplicateKeys) *duplicateKeys = std::move(builder.duplicates);
  return std::move(builder.root);
}

}  // namespace sluice::model::detail
