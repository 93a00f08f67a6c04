// Status codes to pxctl exit codes, exactly as the table in doc/control-api.md.
#include "tools/pxctl/errors.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

namespace pxd::pxctl {

using Code = proto::Status::Code;

TEST_CASE("every status code maps to the documented exit code") {
  CHECK(exit_code_for(Code::OK) == 0);
  CHECK(exit_code_for(Code::INVALID_ARGUMENT) == 2);
  CHECK(exit_code_for(Code::NOT_FOUND) == 3);
  CHECK(exit_code_for(Code::ALREADY_EXISTS) == 4);
  CHECK(exit_code_for(Code::FAILED_PRECONDITION) == 4);
  CHECK(exit_code_for(Code::BUSY) == 4);
  CHECK(exit_code_for(Code::NO_SPACE) == 1);
  CHECK(exit_code_for(Code::IO_ERROR) == 1);
  CHECK(exit_code_for(Code::CORRUPTION) == 1);
  CHECK(exit_code_for(Code::INTERNAL) == 1);
  CHECK(exit_code_for(Code::UNSUPPORTED) == 1);
  CHECK(exit_code_for(Code::PERMISSION_DENIED) == 6);
  CHECK(exit_code_for(Code::UNAVAILABLE) == 5);
  // A code from a newer server is a failure, not a crash or success.
  CHECK(exit_code_for(static_cast<Code>(200)) == 1);
  CHECK(status_code_name(Code::NOT_FOUND) == "notFound");
}

TEST_CASE("a status becomes one error line with the server's message") {
  capnp::MallocMessageBuilder message;
  auto status = message.initRoot<proto::Status>();
  status.setCode(Code::NOT_FOUND);
  status.setMessage("volume 'db' does not exist");
  CommandError error = status_error(status.asReader());
  CHECK(error.exit_code() == kExitNotFound);
  CHECK(error_line(error) == "pxctl: volume 'db' does not exist");

  status.setCode(Code::BUSY);
  status.setMessage("");
  CommandError bare = status_error(status.asReader());
  CHECK(bare.exit_code() == kExitConflict);
  CHECK(error_line(bare) == "pxctl: pxd answered busy (code 9) with no message");
}

TEST_CASE("usage errors name the command's --help and stay on one line") {
  CommandError usage(kExitUsage, "--size is required\n", "pxctl volume create");
  CHECK(error_line(usage) == "pxctl: --size is required; run 'pxctl volume create --help'");
  CommandError multi(kExitFailed, "first\nsecond");
  CHECK(error_line(multi) == "pxctl: first second");
}

}  // namespace pxd::pxctl
