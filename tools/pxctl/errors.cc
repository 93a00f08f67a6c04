#include "tools/pxctl/errors.h"

namespace pxd::pxctl {

using Code = proto::Status::Code;

int exit_code_for(Code code) {
  switch (code) {
    case Code::OK:
      return kExitOk;
    case Code::INVALID_ARGUMENT:
      return kExitUsage;
    case Code::NOT_FOUND:
      return kExitNotFound;
    case Code::ALREADY_EXISTS:
    case Code::FAILED_PRECONDITION:
    case Code::BUSY:
      return kExitConflict;
    case Code::NO_SPACE:
    case Code::IO_ERROR:
    case Code::CORRUPTION:
    case Code::INTERNAL:
    case Code::UNSUPPORTED:
      return kExitFailed;
    case Code::PERMISSION_DENIED:
      return kExitPermission;
    case Code::UNAVAILABLE:
      return kExitUnreachable;
  }
  return kExitFailed;
}

std::string_view status_code_name(Code code) {
  switch (code) {
    case Code::OK:
      return "ok";
    case Code::INVALID_ARGUMENT:
      return "invalidArgument";
    case Code::NOT_FOUND:
      return "notFound";
    case Code::ALREADY_EXISTS:
      return "alreadyExists";
    case Code::FAILED_PRECONDITION:
      return "failedPrecondition";
    case Code::NO_SPACE:
      return "noSpace";
    case Code::IO_ERROR:
      return "ioError";
    case Code::CORRUPTION:
      return "corruption";
    case Code::UNSUPPORTED:
      return "unsupported";
    case Code::BUSY:
      return "busy";
    case Code::INTERNAL:
      return "internal";
    case Code::PERMISSION_DENIED:
      return "permissionDenied";
    case Code::UNAVAILABLE:
      return "unavailable";
  }
  return "unknown";
}

CommandError status_error(proto::Status::Reader status) {
  std::string message = status.hasMessage() ? std::string(status.getMessage().cStr()) : "";
  if (message.empty()) {
    message = "pxd answered " + std::string(status_code_name(status.getCode())) + " (code " +
              std::to_string(static_cast<unsigned>(status.getCode())) + ") with no message";
  }
  return CommandError(exit_code_for(status.getCode()), message);
}

std::string error_line(const CommandError& error) {
  std::string message = error.what();
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!message.empty() && message.back() == ' ') message.pop_back();
  std::string line = "pxctl: " + message;
  if (!error.usage_command().empty()) line += "; run '" + error.usage_command() + " --help'";
  return line;
}

}  // namespace pxd::pxctl
