#include "daemon/config.h"

#include <sys/stat.h>
#include <toml++/toml.h>

#include "common/units.h"

namespace pxd::daemon {

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = {
      {"data_dir", "string", "state and the default pool (default /var/lib/pxd)",
       "\"/var/lib/pxd\""},
      {"control_socket", "string", "control API socket (default /run/pxd/pxd.sock)",
       "\"/run/pxd/pxd.sock\""},
      {"nbd_socket", "string", "NBD export socket (default /run/pxd/nbd.sock; \"\" disables)",
       "\"/run/pxd/nbd.sock\""},
      {"device_dir", "string", "where the pxd<ID> links of attached volumes go (default /dev)",
       "\"/dev\""},
      {"docker_plugin_socket", "string",
       "Docker volume plugin socket, root only (default /run/docker/plugins/pxd.sock; \"\" "
       "disables the plugin)",
       "\"/run/docker/plugins/pxd.sock\""},
      {"nbd_listen", "string",
       "NBD over TCP: PORT (loopback) or ADDR:PORT; unauthenticated (default off)", "\"\""},
      {"pools", "array of strings",
       "pool devices, each \"PATH\", \"PATH:SIZE\" or with \":thick\" (a file written whole "
       "at creation: faster first writes; default: one sparse file in data_dir sized from "
       "free space)",
       "[]"},
      {"node_name", "string", "this node's name (default: the host name)", "\"\""},
      {"labels", "table of strings", "node labels, e.g. { zone = \"a\", rack = \"r1\" }", "{}"},
      {"log_level", "string", "debug, info, warn or error (default info)", "\"info\""},
      {"chunk_size", "size string", "allocation chunk of a new pool, e.g. \"1M\" (default 1M)",
       "\"1M\""},
      {"shutdown_timeout_seconds", "integer", "how long SIGTERM waits for in-flight work (30)",
       "30"},
      {"attach_frontend", "string",
       "how attach makes /dev/pxd<ID>: auto (ublk, else nbd-loop), ublk or nbd-loop "
       "(default auto)",
       "\"auto\""},
      {"ublk_copy", "string",
       "how ublk moves request data: auto (kernel copy), kernel or user (default auto)",
       "\"auto\""},
      {"detach_on_stop", "boolean",
       "on SIGTERM, unmount and detach every volume instead of leaving the devices for the "
       "next pxd (default false)",
       "false"},
  };
  return keys;
}

namespace {

// `text` as comment lines of at most 88 columns, broken between words.
std::string wrapped_comment(const std::string& text) {
  std::string out, line = "#";
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    std::string word = text.substr(start, end - start);
    if (line.size() > 3 && line.size() + 1 + word.size() > 88) {
      out += line + "\n";
      line = "#  ";
    }
    line += " " + word;
    start = end + 1;
  }
  return out + line + "\n";
}

}  // namespace

std::string config_file_template() {
  std::string out =
      "# /etc/pxd/pxd.conf: settings of pxd, the container-native block storage daemon (TOML).\n"
      "#\n"
      "# Every key is optional: each is shown commented out, with its default. Options on\n"
      "# pxd's command line (pxd --help) override this file. After a change, restart pxd\n"
      "# (systemctl restart pxd); attached volumes ride out the restart.\n";
  for (const auto& key : config_keys()) {
    out += "\n" + wrapped_comment(std::string(key.name) + " (" + key.type + "): " + key.help);
    out += std::string("#") + key.name + " = " + key.default_toml + "\n";
  }
  return out;
}

Result<PoolDeviceSetting> parse_pool_setting(const std::string& text) {
  PoolDeviceSetting s;
  if (text.empty()) return invalid_argument("pool device is empty");
  std::string rest = text;
  constexpr std::string_view kThick = ":thick";
  if (rest.size() > kThick.size() && rest.ends_with(kThick)) {
    s.thick = true;
    rest.resize(rest.size() - kThick.size());
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    s.path = rest;
  } else {
    s.path = rest.substr(0, colon);
    auto size = parse_size(rest.substr(colon + 1), kGiB);
    if (size.has_error())
      return invalid_argument("pool device '" + text + "': " + size.error().message() +
                              " (the form is PATH[:SIZE][:thick])");
    s.size_bytes = size.value();
    if (s.size_bytes == 0) return invalid_argument("pool device '" + text + "' has size zero");
  }
  if (s.path.empty() || s.path[0] != '/')
    return invalid_argument("pool device '" + text + "' must be an absolute path");
  return s;
}

Status check_attach_frontend(const std::string& text) {
  if (text == "auto" || text == "ublk" || text == "nbd-loop") return Status::ok();
  return invalid_argument("attach frontend '" + text + "' is not one of auto, ublk, nbd-loop");
}

Status check_ublk_copy(const std::string& text) {
  if (text == "auto" || text == "kernel" || text == "user") return Status::ok();
  return invalid_argument("ublk copy mode '" + text + "' is not one of auto, kernel, user");
}

Status parse_label(const std::string& text, std::map<std::string, std::string>* labels) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    return invalid_argument("label '" + text + "' is not of the form key=value");
  (*labels)[text.substr(0, eq)] = text.substr(eq + 1);
  return Status::ok();
}

namespace {

Status expect_string(const toml::node& node, const std::string& key, std::string* out) {
  auto v = node.value<std::string>();
  if (!v) return invalid_argument("config key '" + key + "' must be a string");
  *out = *v;
  return Status::ok();
}

}  // namespace

Status load_config_file(Config* config) {
  struct stat st;
  if (::stat(config->config_path.c_str(), &st) != 0) {
    if (config->config_path_given)
      return not_found("config file " + config->config_path + " does not exist");
    return Status::ok();
  }
  toml::table table;
  try {
    table = toml::parse_file(config->config_path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return invalid_argument("config file " + config->config_path + " line " +
                            std::to_string(where.line) + ": " + std::string(e.description()));
  }
  auto where = [&](const std::string& key) { return config->config_path + ": " + key; };
  for (auto&& [k, node] : table) {
    std::string key(k.str());
    if (key == "data_dir") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->data_dir));
    } else if (key == "control_socket") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->control_socket));
    } else if (key == "nbd_socket") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->nbd_socket));
    } else if (key == "device_dir") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->device_dir));
    } else if (key == "docker_plugin_socket") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->docker_plugin_socket));
    } else if (key == "nbd_listen") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->nbd_listen));
    } else if (key == "node_name") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->node_name));
    } else if (key == "pools") {
      const toml::array* arr = node.as_array();
      if (!arr)
        return invalid_argument("config key '" + where(key) + "' must be an array of strings");
      config->pools.clear();
      for (auto& item : *arr) {
        auto text = item.value<std::string>();
        if (!text)
          return invalid_argument("config key '" + where(key) + "' must be an array of strings");
        PXD_TRY(auto setting, parse_pool_setting(*text));
        config->pools.push_back(setting);
      }
    } else if (key == "labels") {
      const toml::table* labels = node.as_table();
      if (!labels) return invalid_argument("config key '" + where(key) + "' must be a table");
      for (auto&& [lk, lv] : *labels) {
        auto text = lv.value<std::string>();
        if (!text)
          return invalid_argument("config key '" + where(key) + "." + std::string(lk.str()) +
                                  "' must be a string");
        config->labels[std::string(lk.str())] = *text;
      }
    } else if (key == "log_level") {
      std::string text;
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &text));
      if (!log::parse_level(text, &config->log_level))
        return invalid_argument("config key '" + where(key) + "': '" + text +
                                "' is not one of debug, info, warn, error");
    } else if (key == "chunk_size") {
      std::string text;
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &text));
      PXD_TRY(uint64_t bytes, parse_size(text, 1));
      if (bytes > UINT32_MAX)
        return invalid_argument("config key '" + where(key) + "' is too large");
      config->chunk_size = static_cast<uint32_t>(bytes);
    } else if (key == "shutdown_timeout_seconds") {
      auto v = node.value<int64_t>();
      if (!v || *v < 1 || *v > 3600)
        return invalid_argument("config key '" + where(key) +
                                "' must be an integer from 1 to 3600");
      config->shutdown_timeout_seconds = static_cast<uint32_t>(*v);
    } else if (key == "attach_frontend") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->attach_frontend));
      PXD_RETURN_IF_ERROR(check_attach_frontend(config->attach_frontend).with_context(where(key)));
    } else if (key == "ublk_copy") {
      PXD_RETURN_IF_ERROR(expect_string(node, where(key), &config->ublk_copy));
      PXD_RETURN_IF_ERROR(check_ublk_copy(config->ublk_copy).with_context(where(key)));
    } else if (key == "detach_on_stop") {
      auto v = node.value<bool>();
      if (!v) return invalid_argument("config key '" + where(key) + "' must be true or false");
      config->detach_on_stop = *v;
    } else {
      return invalid_argument("unknown config key '" + where(key) + "'");
    }
  }
  return Status::ok();
}

}  // namespace pxd::daemon
