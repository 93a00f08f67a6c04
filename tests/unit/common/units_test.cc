#include "common/units.h"

#include <doctest/doctest.h>

namespace pxd {
namespace {

TEST_CASE("parse_size accepts the forms users write") {
  CHECK(parse_size("10", kGiB).value() == 10 * kGiB);
  CHECK(parse_size("512M", kGiB).value() == 512 * kMiB);
  CHECK(parse_size("512MiB", kGiB).value() == 512 * kMiB);
  CHECK(parse_size("2T", kGiB).value() == 2 * kTiB);
  CHECK(parse_size("4096B", kGiB).value() == 4096);
  CHECK(parse_size("1.5G", kGiB).value() == 3 * kGiB / 2);
  CHECK(parse_size(" 7 k ", 1).value() == 7 * kKiB);
  CHECK(parse_size("0", kGiB).value() == 0);
}

TEST_CASE("parse_size refuses bad text with the text in the message") {
  for (const char* bad : {"", "-1", "abc", "10X", "1.0000000001G", "99999999999999999999",
                          "17179869184T", "1.3B", "G"}) {
    auto r = parse_size(bad, kGiB);
    REQUIRE_MESSAGE(r.has_error(), bad);
    CHECK(r.error().code() == StatusCode::kInvalidArgument);
    CHECK(r.error().message().find(std::string("'") + bad + "'") != std::string::npos);
  }
}

TEST_CASE("format_size prints binary units") {
  CHECK(format_size(0) == "0 B");
  CHECK(format_size(4096) == "4 KiB");
  CHECK(format_size(3 * kGiB / 2) == "1.5 GiB");
  CHECK(format_size(10 * kTiB) == "10 TiB");
  CHECK(format_size(62 * kGiB - kMiB) == "62 GiB");  // rounds, never "62.0"
}

}  // namespace
}  // namespace pxd
