#include "tools/docker-plugin/protocol.h"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/units.h"
#include "tools/pxctl/args.h"

namespace pxd::docker {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxNameBytes = 255;
constexpr size_t kMaxIdBytes = 256;

struct EndpointName {
  const char* path;
  Endpoint endpoint;
};
constexpr EndpointName kEndpoints[] = {
    {"/Plugin.Activate", Endpoint::kActivate},
    {"/VolumeDriver.Create", Endpoint::kCreate},
    {"/VolumeDriver.Remove", Endpoint::kRemove},
    {"/VolumeDriver.Mount", Endpoint::kMount},
    {"/VolumeDriver.Unmount", Endpoint::kUnmount},
    {"/VolumeDriver.Path", Endpoint::kPath},
    {"/VolumeDriver.Get", Endpoint::kGet},
    {"/VolumeDriver.List", Endpoint::kList},
    {"/VolumeDriver.Capabilities", Endpoint::kCapabilities},
};

bool has_name(Endpoint e) {
  return e != Endpoint::kActivate && e != Endpoint::kList && e != Endpoint::kCapabilities;
}

// Messages quote what the user typed; keep them one printable line of bounded length.
std::string shown(std::string_view text) {
  std::string out = "'";
  for (unsigned char c : text.substr(0, 80)) out += (c < 0x20 || c == 0x7f) ? '?' : char(c);
  if (text.size() > 80) out += "...";
  return out + "'";
}

Result<std::string> string_field(const Json& body, const char* key, bool required) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    if (required) return invalid_argument(std::string("request has no \"") + key + "\"");
    return std::string();
  }
  if (!it->is_string()) return invalid_argument(std::string("\"") + key + "\" must be a string");
  std::string value = it->get<std::string>();
  if (required && value.empty()) return invalid_argument(std::string("\"") + key + "\" is empty");
  return value;
}

std::string valid_keys_text() {
  std::string text;
  for (const auto& key : create_option_keys()) text += (text.empty() ? "" : ", ") + key;
  return text;
}

// Sets one option from either source; `from` says where, for messages.
Status apply_option(CreateOptions* out, const std::string& key, const std::string& value,
                    std::string_view from) {
  if (key == "size") {
    PXD_TRY(uint64_t bytes, pxctl::parse_size_flag(value));
    out->size_bytes = bytes;
  } else if (key == "fs") {
    if (value != "ext4" && value != "xfs" && value != "none")
      return invalid_argument("fs " + shown(value) + " is not one of ext4, xfs, none");
    out->fs = value;
  } else if (key == "block_size") {
    if (value != "4096" && value != "512")
      return invalid_argument("block_size " + shown(value) + " must be 4096 or 512");
    out->block_size = static_cast<uint32_t>(std::stoul(value));
  } else if (key == "repl") {
    if (value.size() != 1 || value[0] < '1' || value[0] > '3')
      return invalid_argument("repl " + shown(value) + " must be 1, 2 or 3");
    out->replicas = static_cast<uint32_t>(value[0] - '0');
  } else if (key == "label") {
    PXD_TRY(pxctl::Labels labels, pxctl::parse_labels({value}));
    for (auto& [k, v] : labels) {
      bool dup = std::any_of(out->labels.begin(), out->labels.end(),
                             [&](const auto& kv) { return kv.first == k; });
      if (dup) return invalid_argument("label key " + shown(k) + " is given twice");
      out->labels.emplace_back(k, v);
    }
  } else if (key == "parent") {
    PXD_RETURN_IF_ERROR(check_volume_name(value).with_context("parent"));
    out->parent = value;
  } else {
    return invalid_argument("unknown option " + shown(key) + " " + std::string(from) +
                            "; valid options: " + valid_keys_text());
  }
  return Status::ok();
}

// The inline form: "k=v,k2=v2" items, one of them name=. Labels may repeat.
Result<std::vector<std::pair<std::string, std::string>>> split_inline(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> items;
  size_t begin = 0;
  while (true) {
    size_t end = text.find(',', begin);
    std::string item = text.substr(begin, end == std::string::npos ? end : end - begin);
    size_t eq = item.find('=');
    if (item.empty() || eq == std::string::npos || eq == 0)
      return invalid_argument("volume name " + shown(text) + " has an item " + shown(item) +
                              " that is not key=value; write name=NAME,size=10G,...");
    std::string key = item.substr(0, eq);
    if (key != "label") {
      for (const auto& [k, v] : items) {
        if (k == key)
          return invalid_argument("option " + shown(key) + " is given twice in the name " +
                                  shown(text));
      }
    }
    items.emplace_back(key, item.substr(eq + 1));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return items;
}

}  // namespace

std::optional<Endpoint> endpoint_from_path(std::string_view path) {
  for (const auto& e : kEndpoints) {
    if (path == e.path) return e.endpoint;
  }
  return std::nullopt;
}

std::string endpoint_list() {
  std::string text;
  for (const auto& e : kEndpoints) text += (text.empty() ? "" : ", ") + std::string(e.path);
  return text;
}

Result<Request> parse_request(Endpoint endpoint, std::string_view body) {
  if (body.size() > kMaxBodyBytes)
    return invalid_argument("request body is " + std::to_string(body.size()) +
                            " bytes; the limit is " + std::to_string(kMaxBodyBytes));
  Request request;
  bool blank = std::all_of(body.begin(), body.end(),
                           [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; });
  if (blank && !has_name(endpoint)) return request;
  Json json = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return invalid_argument("request body is not valid JSON");
  if (!json.is_object()) return invalid_argument("request body is not a JSON object");
  if (!has_name(endpoint)) return request;
  PXD_TRY(request.name, string_field(json, "Name", true));
  if (request.name.size() > 4 * kMaxNameBytes)
    return invalid_argument("\"Name\" is " + std::to_string(request.name.size()) + " bytes long");
  if (endpoint == Endpoint::kMount || endpoint == Endpoint::kUnmount) {
    PXD_TRY(request.id, string_field(json, "ID", true));
    if (request.id.size() > kMaxIdBytes)
      return invalid_argument("\"ID\" is longer than " + std::to_string(kMaxIdBytes) + " bytes");
  }
  if (endpoint == Endpoint::kCreate) {
    auto it = json.find("Opts");
    if (it != json.end() && !it->is_null()) {
      if (!it->is_object()) return invalid_argument("\"Opts\" must be an object of strings");
      for (const auto& [key, value] : it->items()) {
        if (!value.is_string())
          return invalid_argument("option " + shown(key) + " must be a string");
        request.opts[key] = value.get<std::string>();
      }
    }
  }
  return request;
}

const std::vector<std::string>& create_option_keys() {
  static const std::vector<std::string> keys = {"block_size", "fs",   "label",
                                                "parent",     "repl", "size"};
  return keys;
}

Result<CreateOptions> parse_create_options(const std::string& docker_name, const Options& opts) {
  CreateOptions out;
  std::map<std::string, std::string> given;  // key -> value from the name, to compare
  if (docker_name.find('=') != std::string::npos) {
    PXD_TRY(auto items, split_inline(docker_name));
    for (const auto& [key, value] : items) {
      if (key == "name") {
        out.name = value;
        continue;
      }
      PXD_RETURN_IF_ERROR(apply_option(&out, key, value, "in the name"));
      if (key != "label") given[key] = value;
    }
    if (out.name.empty())
      return invalid_argument("volume name " + shown(docker_name) +
                              " has options but no name=NAME item");
  } else {
    out.name = docker_name;
  }
  PXD_RETURN_IF_ERROR(check_volume_name(out.name));
  for (const auto& [key, value] : opts) {
    auto same = given.find(key);
    if (same != given.end()) {
      if (same->second != value)
        return invalid_argument("option " + shown(key) + " is " + shown(same->second) +
                                " in the name but " + shown(value) + " in --opt");
      continue;
    }
    if (key == "name")
      return invalid_argument(
          "option 'name' belongs in the volume name (name=NAME,...), not --opt");
    PXD_RETURN_IF_ERROR(apply_option(&out, key, value, "given with --opt"));
  }
  return out;
}

Result<std::string> volume_name(const std::string& docker_name) {
  if (docker_name.find('=') == std::string::npos) {
    PXD_RETURN_IF_ERROR(check_volume_name(docker_name));
    return docker_name;
  }
  PXD_TRY(CreateOptions options, parse_create_options(docker_name, {}));
  return options.name;
}

Status check_volume_name(std::string_view name) {
  if (name.empty()) return invalid_argument("volume name is empty");
  if (name.size() > kMaxNameBytes)
    return invalid_argument("volume name is " + std::to_string(name.size()) +
                            " bytes long; at most " + std::to_string(kMaxNameBytes) +
                            " are allowed");
  if (name.find('/') != std::string_view::npos)
    return invalid_argument("volume name " + shown(name) + " contains '/'");
  if (name.find("..") != std::string_view::npos)
    return invalid_argument("volume name " + shown(name) + " contains '..'");
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f)
      return invalid_argument("volume name " + shown(name) + " contains a control character");
    if (c == ',' || c == '=')
      return invalid_argument("volume name " + shown(name) + " contains '" + char(c) +
                              "'; options go in name=NAME,size=10G,... or --opt");
  }
  return Status::ok();
}

std::string error_body(std::string_view message) {
  // Invalid UTF-8 in an echoed name must not make the reply itself invalid.
  return Json{{"Err", std::string(message)}}.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string empty_body() {
  return error_body("");
}

std::string activate_body() {
  return Json{{"Implements", {"VolumeDriver"}}}.dump();
}

std::string capabilities_body() {
  return Json{{"Capabilities", {{"Scope", "local"}}}, {"Err", ""}}.dump();
}

std::string mountpoint_body(std::string_view mountpoint) {
  return Json{{"Mountpoint", std::string(mountpoint)}, {"Err", ""}}.dump(
      -1, ' ', false, Json::error_handler_t::replace);
}

namespace {

Json entry_json(const VolumeEntry& v, bool detail) {
  Json j = {{"Name", v.name}, {"Mountpoint", v.mountpoint}};
  if (detail) {
    j["CreatedAt"] = rfc3339(v.created_unix);
    j["Status"] = v.status;
  }
  return j;
}

}  // namespace

std::string get_body(const VolumeEntry& volume) {
  return Json{{"Volume", entry_json(volume, true)}, {"Err", ""}}.dump(
      -1, ' ', false, Json::error_handler_t::replace);
}

std::string list_body(const std::vector<VolumeEntry>& volumes) {
  Json list = Json::array();
  for (const auto& v : volumes) list.push_back(entry_json(v, false));
  return Json{{"Volumes", list}, {"Err", ""}}.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string rfc3339(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace pxd::docker
