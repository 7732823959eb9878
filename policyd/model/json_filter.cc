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
  Metadata,       // keep name, namespace, labels
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

constexpr std::array<std::string_view, 3> kMetadataKeep = {"name", "namespace", "labels"};
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
      return in(kMetadataKeep, key) ? Role::Generic : Role::Drop;
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
  };

  Role roleHere() const {
    if (stack_.empty()) return Role::Generic;
    const Frame& f = stack_.back();
    return childRole(f.role, f.value->is_array(), key_);
  }

  Json* place(Json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    Json* parent = stack_.back().value;
    if (parent->is_array()) {
      parent->get_ref<Json::array_t&>().push_back(std::move(v));
      return &parent->get_ref<Json::array_t&>().back();
    }
    auto& obj = parent->get_ref<Json::object_t&>();
    Json& slot = obj[std::move(key_)];
    slot = std::move(v);
    return &slot;
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
    stack_.push_back({place(Json(type)), role, streamed});
    return true;
  }

  bool close() {
    if (skipDepth_ > 0) {
      --skipDepth_;
      return true;
    }
    Json* done = stack_.back().value;
    stack_.pop_back();
    if (!stack_.empty() && stack_.back().streamed && done->is_object()) {
      if (onItem_(*done, stack_.size() == 1))
        stack_.back().value->get_ref<Json::array_t&>().pop_back();
    }
    return true;
  }

  const ItemSink& onItem_;
  std::vector<Frame> stack_;
  std::string key_;
  int skipDepth_ = 0;
};

}  // namespace

Result<nlohmann::json> parseJsonFiltered(std::string_view text, const ItemSink& onItem) {
  FilteringBuilder builder(onItem);
  bool ok = Json::sax_parse(text.begin(), text.end(), &builder);
  if (!ok) {
    // what() is "[json.exception.parse_error.101] parse error at line 3, column 5: ...".
    std::string msg = builder.error.empty() ? "parse error" : builder.error;
    if (auto close = msg.find("] "); msg.starts_with("[json.") && close != std::string::npos)
      msg.erase(0, close + 2);
    return makeError(msg);
  }
  return std::move(builder.root);
}

}  // namespace sluice::model::detail
