// daemon/mount_order: systemd's mount unit names, and the drop-ins that order pxd's mounts
// before pxd's own unit at shutdown. (Under a real systemd: tests/package/package_guest.sh.)
#include "daemon/mount_order.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/subprocess.h"
#include "tests/support/temp_dir.h"

namespace pxd::daemon {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST_CASE("mount unit names are systemd's own escaping of the path") {
  const std::vector<std::string> paths = {"/mnt/db",
                                          "/var/lib/pxd/mounts/pg-data",
                                          "/mnt/a b/.hidden/x.y_z:1",
                                          "/mnt/ünï",
                                          "/srv//double/",
                                          "/"};
  CHECK(mount_unit_name("/mnt/db-1") == "mnt-db\\x2d1.mount");
  CHECK(mount_unit_name("/") == "-.mount");
  auto probe = run_command({"systemd-escape", "--version"}, std::chrono::seconds(10));
  if (!probe.has_value() || probe.value().exit_code != 0) {
    MESSAGE("systemd-escape not installed: compared with the fixed cases only");
    return;
  }
  for (const std::string& path : paths) {
    CAPTURE(path);
    auto r = run_command({"systemd-escape", "--path", "--suffix=mount", path},
                         std::chrono::seconds(10));
    REQUIRE(r.has_value());
    REQUIRE(r.value().exit_code == 0);
    std::string expected = r.value().output;
    while (!expected.empty() && expected.back() == '\n') expected.pop_back();
    CHECK(mount_unit_name(path) == expected);
  }
}

TEST_CASE("a drop-in orders each mount after pxd's unit, and goes with the unmount") {
  testing::TempDir dir;
  MountOrder order(dir.path(), "pxd.service");
  REQUIRE(order.enabled());
  const std::string file = order.drop_in_path("/mnt/db-1");
  CHECK(file == dir.path() + "/mnt-db\\x2d1.mount.d/50-pxd.conf");
  REQUIRE(order.order_after_service("/mnt/db-1").is_ok());
  CHECK(slurp(file).find("[Unit]\nAfter=pxd.service\n") != std::string::npos);
  REQUIRE(order.order_after_service("/mnt/db-1").is_ok());  // again: the same file
  order.unordered("/mnt/db-1");
  CHECK_FALSE(std::filesystem::exists(file));
  CHECK_FALSE(std::filesystem::exists(std::filesystem::path(file).parent_path()));
  order.unordered("/mnt/db-1");  // nothing there: fine

  // Not a service (a test's pxd, no systemd): nothing is written.
  MountOrder off(dir.path(), "");
  CHECK_FALSE(off.enabled());
  REQUIRE(off.order_after_service("/mnt/x").is_ok());
  CHECK(std::filesystem::is_empty(dir.path()));

  // A unit directory that cannot be made is an error naming it (the mount then fails).
  MountOrder bad("/proc/no-such-dir", "pxd.service");
  Status s = bad.order_after_service("/mnt/x");
  CHECK_FALSE(s.is_ok());
  CHECK(s.message().find("/proc/no-such-dir") != std::string::npos);
}

}  // namespace
}  // namespace pxd::daemon
