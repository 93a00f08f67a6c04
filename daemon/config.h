// daemon/config.h: pxd's settings, from the TOML config file and the command line.
//
// Every setting is a command-line option and a key of /etc/pxd/pxd.conf (a missing file
// means defaults; `--config` names another). Command-line options win over the file. An
// unknown key, a value of the wrong type or a bad value is an error naming the key.
//
// Thread safety: a value type.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"

namespace pxd::daemon {

struct PoolDeviceSetting {
  std::string path;
  uint64_t size_bytes = 0;  // 0: an existing file or device, used whole
  bool thick = false;       // ":thick": a pool file written whole at creation (doc/engine.md)
};

struct Config {
  std::string config_path = "/etc/pxd/pxd.conf";
  bool config_path_given = false;  // a missing file named explicitly is an error
  std::string data_dir = "/var/lib/pxd";
  std::string control_socket = "/run/pxd/pxd.sock";
  std::string nbd_socket = "/run/pxd/nbd.sock";  // "" disables the NBD unix socket
  std::string device_dir = "/dev";               // where the pxd<ID> device links go
  // Docker's volume plugin socket; "" disables the plugin (doc/docker.md).
  std::string docker_plugin_socket = "/run/docker/plugins/pxd.sock";
  std::string nbd_listen;                // NBD over TCP: "" (off), PORT or ADDR:PORT
  std::vector<PoolDeviceSetting> pools;  // empty: one sparse file in data_dir
  std::string node_name;                 // empty: the host name
  std::map<std::string, std::string> labels;
  log::Level log_level = log::Level::kInfo;
  uint32_t chunk_size = 0;  // 0: the engine's default (only used at pool creation)
  uint32_t shutdown_timeout_seconds = 30;
  // How attach makes /dev/pxd<ID>: "auto" (ublk where the kernel has it, else nbd-loop),
  // "ublk" or "nbd-loop" only (doc/attach.md).
  std::string attach_frontend = "auto";
  std::string ublk_copy = "auto";  // "auto", "kernel" or "user" (doc/ublk.md)
  // SIGTERM unmounts and detaches every volume rather than leaving the devices for the
  // next pxd to take over.
  bool detach_on_stop = false;
};

// Parses "PATH" or "PATH:SIZE" (SIZE with units, e.g. 100G).
Result<PoolDeviceSetting> parse_pool_setting(const std::string& text);
// "auto", "ublk" or "nbd-loop", else kInvalidArgument.
Status check_attach_frontend(const std::string& text);
// "auto", "kernel" or "user", else kInvalidArgument.
Status check_ublk_copy(const std::string& text);
// Parses "key=value".
Status parse_label(const std::string& text, std::map<std::string, std::string>* labels);

// Reads `config.config_path` into `config` (keys override defaults). A missing file is
// fine unless config_path_given.
Status load_config_file(Config* config);

// The documented keys, for --help, tests and the packaged config file: name, type,
// description, and the default written as a TOML value (loading `name = default_toml`
// gives what a missing key gives).
struct ConfigKey {
  const char* name;
  const char* type;
  const char* help;
  const char* default_toml;
};
const std::vector<ConfigKey>& config_keys();

// The default /etc/pxd/pxd.conf: every key of config_keys(), commented out, with its
// description and default. The Debian package ships exactly this text.
std::string config_file_template();

}  // namespace pxd::daemon
