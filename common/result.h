// Result<T> and Status: errors that carry context (what, which object, which field) up through
// the layers without exceptions. CNI main and sluicectl map them to exit codes at the top.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace sluice {

struct Error {
  std::string message;
  // Optional machine-readable code. Layers that own a code space (CNI spec codes, errno)
  // set it; 0 means "unspecified".
  int code = 0;

  // Prepends context: Error{"bad CIDR"}.wrap("ipam.ranges[0][1].subnet") ->
  // "ipam.ranges[0][1].subnet: bad CIDR".
  Error wrap(const std::string& context) const& { return Error{context + ": " + message, code}; }
  Error wrap(const std::string& context) && {
    message = context + ": " + message;
    return std::move(*this);
  }
};

inline Error makeError(std::string message, int code = 0) { return Error{std::move(message), code}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design
  static Status Ok() { return Status(); }

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *error_; }

 private:
  std::optional<Error> error_;
};

}  // namespace sluice

// Early-return helpers. Kept as macros because a function cannot return from its caller.
#define SLUICE_CONCAT_INNER(a, b) a##b
#define SLUICE_CONCAT(a, b) SLUICE_CONCAT_INNER(a, b)

#define SLUICE_RETURN_IF_ERROR(expr)               \
  do {                                             \
    auto _sluice_st = (expr);                      \
    if (!_sluice_st.ok()) return _sluice_st.error(); \
  } while (0)

#define SLUICE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).error();      \
  lhs = std::move(tmp).value()

#define SLUICE_ASSIGN_OR_RETURN(lhs, expr) \
  SLUICE_ASSIGN_OR_RETURN_IMPL(SLUICE_CONCAT(_sluice_res_, __LINE__), lhs, expr)
