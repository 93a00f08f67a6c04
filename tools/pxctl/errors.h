// tools/pxctl/errors.h: how pxctl fails. Every failure is one line on stderr and an exit
// code from the table in doc/control-api.md, which scripts depend on.
//
// Thread safety: values and pure functions.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "proto/control.capnp.h"

namespace pxd::pxctl {

// pxctl's exit codes. Scripts test them: do not change these values.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,       // the node failed, is full, or cannot do this (unsupported)
  kExitUsage = 2,        // bad flags or arguments, or the server said invalidArgument
  kExitNotFound = 3,     // no such volume, snapshot or pool
  kExitConflict = 4,     // alreadyExists, failedPrecondition, busy
  kExitUnreachable = 5,  // no socket, refused, disconnected, timed out, shutting down
  kExitPermission = 6,   // not root and not in group pxd
};

// The exit code for a status code the server answered with. Codes this pxctl does not
// know (from a newer server) are kExitFailed.
int exit_code_for(proto::Status::Code code);

// "notFound", "busy", ...: the schema's name, for messages when the server sent none.
std::string_view status_code_name(proto::Status::Code code);

// A failed command: what to print after "pxctl: " and how to exit. `usage_command`, when
// not empty, is the command whose --help the user should read ("pxctl volume create").
class CommandError : public std::runtime_error {
 public:
  CommandError(int exit_code, const std::string& message, std::string usage_command = "")
      : std::runtime_error(message),
        exit_code_(exit_code),
        usage_command_(std::move(usage_command)) {}

  int exit_code() const { return exit_code_; }
  const std::string& usage_command() const { return usage_command_; }

 private:
  int exit_code_;
  std::string usage_command_;
};

// The error for a non-ok status from the server.
CommandError status_error(proto::Status::Reader status);

// The single stderr line (without newline): "pxctl: MESSAGE", and for usage errors
// "; run 'pxctl volume create --help'". Newlines in the message become spaces.
std::string error_line(const CommandError& error);

}  // namespace pxd::pxctl
