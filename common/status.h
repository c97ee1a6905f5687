#pragma once

#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bulkhead {

// Error codes at component boundaries. They mirror the reasons of the Kubernetes API server so a
// Status read from the API maps one to one.
enum class StatusCode {
  kOk,
  kInvalid,          // 400/422: the input is malformed or fails validation
  kUnauthorized,     // 401: no or expired credentials
  kForbidden,        // 403
  kNotFound,         // 404
  kAlreadyExists,    // 409 AlreadyExists
  kConflict,         // 409 Conflict (resourceVersion precondition)
  kGone,             // 410: resourceVersion too old; relist
  kTooLarge,         // 413
  kTooManyRequests,  // 429
  kTimeout,          // 408/504
  kUnavailable,      // 503, connection refused or reset: try again later
  kCancelled,        // shutting down
  kInternal,         // 500 or a bug in a peer
};

std::string_view statusCodeName(StatusCode code);

// Status is the result of an operation that can fail: a code and a human-readable message.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status okStatus() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "NotFound: namespaces \"x\" not found"
  std::string toString() const;

  // Returns a copy whose message is prefixed with context ("reading kubeconfig: ...").
  Status withContext(std::string_view context) const;

  bool operator==(const Status& other) const = default;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status okStatus() { return Status(); }
inline Status invalidError(std::string m) { return {StatusCode::kInvalid, std::move(m)}; }
inline Status notFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status conflictError(std::string m) { return {StatusCode::kConflict, std::move(m)}; }
inline Status goneError(std::string m) { return {StatusCode::kGone, std::move(m)}; }
inline Status forbiddenError(std::string m) { return {StatusCode::kForbidden, std::move(m)}; }
inline Status unavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status internalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status cancelledError(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }

std::ostream& operator<<(std::ostream& os, const Status& status);

// StatusOr<T> holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design
  StatusOr(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(data_).ok()) {
      std::cerr << "StatusOr constructed from an OK Status\n";
      std::abort();
    }
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(data_);
  }

  // Precondition: ok(). Violating it is a bug and aborts.
  T& value() & { return checked(); }
  const T& value() const& { return const_cast<StatusOr*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }
  T& operator*() & { return checked(); }
  const T& operator*() const& { return const_cast<StatusOr*>(this)->checked(); }
  T* operator->() { return &checked(); }
  const T* operator->() const { return &const_cast<StatusOr*>(this)->checked(); }

 private:
  T& checked() {
    if (!ok()) {
      std::cerr << "StatusOr::value() on an error: " << std::get<Status>(data_) << "\n";
      std::abort();
    }
    return std::get<T>(data_);
  }

  std::variant<Status, T> data_;
};

}  // namespace bulkhead

#define BULKHEAD_CONCAT_INNER(a, b) a##b
#define BULKHEAD_CONCAT(a, b) BULKHEAD_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::bulkhead::Status _bh_status = (expr);    \
    if (!_bh_status.ok()) return _bh_status;   \
  } while (false)

// `lhs = value of expr`, or returns its Status from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(BULKHEAD_CONCAT(_bh_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
