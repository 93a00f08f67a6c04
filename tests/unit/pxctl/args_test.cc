// pxctl's argument parsing: labels, sizes, label merging.
#include "tools/pxctl/args.h"

#include <doctest/doctest.h>

#include "common/units.h"

namespace pxd::pxctl {

TEST_CASE("labels: comma lists and repeated flags, in order") {
  auto labels = parse_labels({"app=pg,tier=gold", "zone=a"});
  REQUIRE(labels.has_value());
  CHECK(labels.value() == Labels{{"app", "pg"}, {"tier", "gold"}, {"zone", "a"}});
  CHECK(labels_text(labels.value()) == "app=pg,tier=gold,zone=a");
  CHECK(parse_labels({}).value().empty());
}

TEST_CASE("labels: empty values allowed, '=' in values kept") {
  auto labels = parse_labels({"a=,b=x=y"});
  REQUIRE(labels.has_value());
  CHECK(labels.value() == Labels{{"a", ""}, {"b", "x=y"}});
}

TEST_CASE("labels: malformed lists are refused with the text in the message") {
  for (const char* bad : {"", "app", "=pg", "a=1,,b=2", "a=1,", ",a=1"}) {
    CAPTURE(bad);
    auto labels = parse_labels({bad});
    REQUIRE(labels.has_error());
    CHECK(labels.error().code() == StatusCode::kInvalidArgument);
  }
  CHECK(parse_labels({"app"}).error().message().find("'app'") != std::string::npos);
  auto twice = parse_labels({"a=1", "a=2"});
  REQUIRE(twice.has_error());
  CHECK(twice.error().message() == "label key 'a' is given twice");
}

TEST_CASE("sizes: a plain number is GiB, units as pxd::parse_size") {
  CHECK(parse_size_flag("10").value() == 10 * kGiB);
  CHECK(parse_size_flag("512M").value() == 512 * kMiB);
  CHECK(parse_size_flag("2T").value() == 2 * kTiB);
  CHECK(parse_size_flag("4096B").value() == 4096);
  CHECK(parse_size_flag("1.5G").value() == 3 * kGiB / 2);
}

TEST_CASE("sizes: zero, negative and junk are refused") {
  for (const char* bad : {"0", "0G", "-1", "", "10x", "ten", "1.5.5"}) {
    CAPTURE(bad);
    auto size = parse_size_flag(bad);
    REQUIRE(size.has_error());
    CHECK(size.error().code() == StatusCode::kInvalidArgument);
  }
}

}  // namespace pxd::pxctl
