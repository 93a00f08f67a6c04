// The files the package ships beside the binaries: /etc/pxd/pxd.conf must list every key
// pxd knows, commented out, with defaults that really are the defaults; pxd.service must
// keep pxd in the host's mount namespace and its attach helpers alive across restarts.
#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "daemon/config.h"
#include "engine/pool.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using daemon::Config;

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Loads `text` as a config file.
Result<Config> load(const std::string& text) {
  testing::TempDir dir;
  Config config;
  config.config_path = dir / "pxd.conf";
  config.config_path_given = true;
  std::ofstream(config.config_path) << text;
  PXD_RETURN_IF_ERROR(daemon::load_config_file(&config));
  return config;
}

// What pxd would run with, for the settings the file can give. chunk_size 0 means the
// engine's default.
void check_same_settings(const Config& got, const Config& want) {
  CHECK(got.data_dir == want.data_dir);
  CHECK(got.control_socket == want.control_socket);
  CHECK(got.nbd_socket == want.nbd_socket);
  CHECK(got.device_dir == want.device_dir);
  CHECK(got.docker_plugin_socket == want.docker_plugin_socket);
  CHECK(got.nbd_listen == want.nbd_listen);
  CHECK(got.pools.size() == want.pools.size());
  CHECK(got.node_name == want.node_name);
  CHECK(got.labels == want.labels);
  CHECK(got.log_level == want.log_level);
  auto chunk = [](uint32_t c) { return c == 0 ? kDefaultChunkSize : c; };
  CHECK(chunk(got.chunk_size) == chunk(want.chunk_size));
  CHECK(got.shutdown_timeout_seconds == want.shutdown_timeout_seconds);
}

TEST_CASE("the built pxd.conf is the rendered template") {
  CHECK(read_file(std::string(PXD_BUILD_DIR) + "/packaging/pxd.conf") ==
        daemon::config_file_template());
}

TEST_CASE("pxd.conf lists every key once, commented out, with its default") {
  const std::string text = daemon::config_file_template();
  std::set<std::string> documented;
  for (const auto& key : daemon::config_keys()) {
    documented.insert(key.name);
    int settings = 0;
    for (const auto& line : lines_of(text)) {
      if (line.rfind(std::string("#") + key.name + " = ", 0) == 0) {
        ++settings;
        CHECK(line == std::string("#") + key.name + " = " + key.default_toml);
      }
    }
    CHECK_MESSAGE(settings == 1, key.name);
  }
  // Nothing else looks like a setting, and nothing is set: the shipped file changes nothing.
  for (const auto& line : lines_of(text)) {
    if (line.empty()) continue;
    REQUIRE_MESSAGE(line[0] == '#', line);
    auto eq = line.find(" = ");
    if (line.size() > 1 && line[1] != ' ' && eq != std::string::npos)
      CHECK_MESSAGE(documented.count(line.substr(1, eq - 1)) == 1, line);
  }
  auto shipped = load(text);
  REQUIRE_MESSAGE(shipped.has_value(), shipped.error().message());
  check_same_settings(shipped.value(), Config{});
}

TEST_CASE("uncommented, every default loads and gives what a missing key gives") {
  std::string uncommented;
  for (const auto& line : lines_of(daemon::config_file_template())) {
    bool setting = line.size() > 1 && line[0] == '#' && line[1] != ' ';
    uncommented += (setting ? line.substr(1) : line) + "\n";
  }
  auto loaded = load(uncommented);
  REQUIRE_MESSAGE(loaded.has_value(), loaded.error().message());
  check_same_settings(loaded.value(), Config{});

  // And a file that is not the template is still checked: a typo is refused.
  auto typo = load(uncommented + "data_dirr = \"/x\"\n");
  REQUIRE(typo.has_error());
  CHECK(typo.error().message().find("data_dirr") != std::string::npos);
}

TEST_CASE("pxd.service keeps pxd in the host's mount namespace and its helpers alive") {
  const std::string unit = read_file(std::string(PXD_SOURCE_DIR) + "/packaging/pxd.service.in");
  REQUIRE(!unit.empty());
  std::set<std::string> keys;
  for (const auto& line : lines_of(unit)) {
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    keys.insert(line.substr(0, line.find('=')));
  }
  // Each of these gives the service its own mount namespace (where a mount pxd makes is
  // invisible to the host, and a dying ublk server deadlocks its own unmount), hides or
  // restricts the devices pxd opens, or takes root away. RuntimeDirectory= would hand
  // /run/pxd to root:root (the group pxd could no longer reach the socket) and, without
  // preservation, remove it with the FUSE mounts of attached volumes inside.
  for (const char* forbidden : {"ProtectSystem",
                                "ProtectHome",
                                "PrivateTmp",
                                "PrivateDevices",
                                "PrivateMounts",
                                "PrivateNetwork",
                                "PrivateUsers",
                                "PrivateIPC",
                                "ProtectKernelTunables",
                                "ProtectKernelModules",
                                "ProtectKernelLogs",
                                "ProtectControlGroups",
                                "ProtectClock",
                                "ProtectHostname",
                                "ProtectProc",
                                "ProcSubset",
                                "ReadOnlyPaths",
                                "ReadWritePaths",
                                "InaccessiblePaths",
                                "ExecPaths",
                                "NoExecPaths",
                                "TemporaryFileSystem",
                                "BindPaths",
                                "BindReadOnlyPaths",
                                "RootDirectory",
                                "RootImage",
                                "MountAPIVFS",
                                "MountFlags",
                                "DeviceAllow",
                                "DevicePolicy",
                                "DynamicUser",
                                "User",
                                "RuntimeDirectory"})
    CHECK_MESSAGE(keys.count(forbidden) == 0, forbidden);
  for (const char* line : {"Type=notify", "KillMode=process", "Before=docker.service",
                           "ExecStart=@SBINDIR@/pxd", "Restart=on-failure", "WatchdogSec=30",
                           "LimitMEMLOCK=infinity", "WantedBy=multi-user.target"})
    CHECK_MESSAGE(unit.find(std::string("\n") + line + "\n") != std::string::npos, line);
}

}  // namespace
}  // namespace pxd
