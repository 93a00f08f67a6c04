#include "common/status.h"

#include <cerrno>
#include <cstring>

namespace pxd {

std::string_view status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid-argument";
    case StatusCode::kNotFound:
      return "not-found";
    case StatusCode::kAlreadyExists:
      return "already-exists";
    case StatusCode::kFailedPrecondition:
      return "failed-precondition";
    case StatusCode::kNoSpace:
      return "no-space";
    case StatusCode::kIoError:
      return "io-error";
    case StatusCode::kCorruption:
      return "corruption";
    case StatusCode::kUnsupported:
      return "unsupported";
    case StatusCode::kBusy:
      return "busy";
    case StatusCode::kInternal:
      return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  std::string s(status_code_name(code_));
  s += ": ";
  s += message_;
  return s;
}

Status Status::with_context(std::string_view context) const {
  if (is_ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

std::ostream& operator<<(std::ostream& os, const Status& status) {
  return os << status.to_string();
}

Status errno_status(int err, std::string_view what) {
  if (err < 0) err = -err;
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  StatusCode code = StatusCode::kIoError;
  switch (err) {
    case ENOENT:
      code = StatusCode::kNotFound;
      break;
    case ENOSPC:
      code = StatusCode::kNoSpace;
      break;
    case EINVAL:
      code = StatusCode::kInvalidArgument;
      break;
    case EEXIST:
      code = StatusCode::kAlreadyExists;
      break;
    case EBUSY:
    case EAGAIN:
      code = StatusCode::kBusy;
      break;
    case EOPNOTSUPP:
      code = StatusCode::kUnsupported;
      break;
    default:
      break;
  }
  return Status(code, std::move(m));
}

}  // namespace pxd
