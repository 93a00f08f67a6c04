// common/status.h: the control-path error vocabulary of pxd.
//
// Control operations (create, snapshot, open, ...) return Status or Result<T>. A Status
// is a code from the small set below plus a human message. Callers decide on the code,
// never on the message text. The I/O path does not use Status: it returns negative errno.
//
// Thread safety: values; no shared state.
#pragma once

#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/terminate.hpp>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace pxd {

// Persisted in no file, but sent over the control API: do not change these values.
enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,     // the request itself is malformed or out of range
  kNotFound = 2,            // a named volume, snapshot or file does not exist
  kAlreadyExists = 3,       // a name is taken by something with a different spec
  kFailedPrecondition = 4,  // the object is in a state that forbids the operation
  kNoSpace = 5,             // the pool has no free chunk
  kIoError = 6,             // a backing device or the metadata store failed
  kCorruption = 7,          // persisted state fails a check
  kUnsupported = 8,         // valid request this build or format cannot serve
  kBusy = 9,                // held by another user (lock, attached volume)
  kInternal = 10,           // a bug: an invariant did not hold
};

std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "not-found: volume 'db' does not exist"
  std::string to_string() const;

  // Prefixes context: Status(kIoError, "read failed").with_context("pool a.img") gives
  // "pool a.img: read failed".
  Status with_context(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

std::ostream& operator<<(std::ostream& os, const Status& status);

inline Status invalid_argument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status not_found(std::string m) {
  return {StatusCode::kNotFound, std::move(m)};
}
inline Status already_exists(std::string m) {
  return {StatusCode::kAlreadyExists, std::move(m)};
}
inline Status failed_precondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status no_space(std::string m) {
  return {StatusCode::kNoSpace, std::move(m)};
}
inline Status io_error(std::string m) {
  return {StatusCode::kIoError, std::move(m)};
}
inline Status corruption(std::string m) {
  return {StatusCode::kCorruption, std::move(m)};
}
inline Status unsupported(std::string m) {
  return {StatusCode::kUnsupported, std::move(m)};
}
inline Status busy(std::string m) {
  return {StatusCode::kBusy, std::move(m)};
}
inline Status internal_error(std::string m) {
  return {StatusCode::kInternal, std::move(m)};
}

// "open /x: No such file or directory" from an errno value.
Status errno_status(int err, std::string_view what);

// Result<T> holds a T or a non-ok Status. Accessing the wrong side terminates.
template <class T>
using Result = boost::outcome_v2::basic_result<T, Status, boost::outcome_v2::policy::terminate>;

}  // namespace pxd

// PXD_TRY(decl, expr): evaluates a Result, returns its Status from the enclosing function on
// error, else initializes `decl` (e.g. `auto x` or `uint64_t size`) with the value.
// PXD_RETURN_IF_ERROR(expr): same for a plain Status.
#define PXD_CONCAT_INNER(a, b) a##b
#define PXD_CONCAT(a, b) PXD_CONCAT_INNER(a, b)
#define PXD_TRY_IMPL(tmp, decl, expr)                 \
  auto tmp = (expr);                                  \
  if (tmp.has_error()) return std::move(tmp).error(); \
  decl = std::move(tmp).value()
#define PXD_TRY(decl, expr) PXD_TRY_IMPL(PXD_CONCAT(pxd_try_, __LINE__), decl, expr)
#define PXD_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::pxd::Status pxd_status_ = (expr);           \
    if (!pxd_status_.is_ok()) return pxd_status_; \
  } while (0)
