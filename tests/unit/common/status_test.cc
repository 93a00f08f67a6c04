#include "common/status.h"

#include <doctest/doctest.h>

namespace pxd {
namespace {

Result<int> half(int v) {
  if (v % 2) return invalid_argument("odd: " + std::to_string(v));
  return v / 2;
}

Result<int> quarter(int v) {
  PXD_TRY(auto h, half(v));
  PXD_TRY(auto q, half(h));
  return q;
}

TEST_CASE("Status carries a code and message") {
  Status s = not_found("volume 'db' does not exist");
  CHECK_FALSE(s.is_ok());
  CHECK(s.code() == StatusCode::kNotFound);
  CHECK(s.to_string() == "not-found: volume 'db' does not exist");
  CHECK(s.with_context("inspect").message() == "inspect: volume 'db' does not exist");
  CHECK(Status::ok().is_ok());
}

TEST_CASE("Result propagates the first error") {
  CHECK(quarter(8).value() == 2);
  auto r = quarter(6);
  REQUIRE(r.has_error());
  CHECK(r.error().message() == "odd: 3");
}

TEST_CASE("errno_status maps common errors") {
  CHECK(errno_status(ENOENT, "open x").code() == StatusCode::kNotFound);
  CHECK(errno_status(-ENOSPC, "write").code() == StatusCode::kNoSpace);
  CHECK(errno_status(EIO, "read").code() == StatusCode::kIoError);
}

}  // namespace
}  // namespace pxd
