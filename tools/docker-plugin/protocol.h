// tools/docker-plugin/protocol.h: Docker's volume plugin protocol as data.
//
// Docker calls a volume plugin with HTTP POSTs whose paths name the endpoint
// ("/VolumeDriver.Mount") and whose bodies are JSON objects ({"Name": ..., "ID": ...});
// every answer is a JSON object, with "Err" set on failure. This file turns request
// bodies into checked values and values into reply bodies, and parses what Create asks
// for: options named like `pxctl volume create`'s flags, given with `--opt` or written
// into the volume name ("size=10G,fs=xfs,name=db", as Portworx accepts). No I/O here;
// doc/docker.md has the protocol and the rules.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pxd::docker {

// Request bodies above this are refused unread (pxd's own limits keep a real Create far
// below it: 64 labels of at most 255-byte keys and values).
inline constexpr size_t kMaxBodyBytes = 64 * 1024;
// A volume created without a size (`docker run -v new:/data --volume-driver pxd`): thin,
// so the size is a cap, not an allocation.
inline constexpr uint64_t kDefaultSizeBytes = 10ull << 30;
inline constexpr const char* kContentType = "application/vnd.docker.plugins.v1+json";

enum class Endpoint {
  kActivate,
  kCreate,
  kRemove,
  kMount,
  kUnmount,
  kPath,
  kGet,
  kList,
  kCapabilities,
};

// "/VolumeDriver.Create" -> kCreate; nothing for a path Docker does not define.
std::optional<Endpoint> endpoint_from_path(std::string_view path);
// "/Plugin.Activate, /VolumeDriver.Create, ...", for the unknown-endpoint reply.
std::string endpoint_list();

using Options = std::map<std::string, std::string>;
using Labels = std::vector<std::pair<std::string, std::string>>;

// A request body, checked for its endpoint: a JSON object (an empty body too for the
// endpoints without fields); Name a non-empty string where the endpoint has one; ID a
// non-empty string for Mount and Unmount; Opts null or an object of strings. Fields
// Docker may add later are ignored.
struct Request {
  std::string name;  // as Docker knows the volume: maybe the inline form
  std::string id;    // Mount, Unmount: who mounts (one ID per container start)
  Options opts;      // Create
};
Result<Request> parse_request(Endpoint endpoint, std::string_view body);

// What Create asks for, in pxd's terms. Unset fields were not given.
struct CreateOptions {
  std::string name;  // pxd's name
  std::optional<uint64_t> size_bytes;
  std::optional<std::string> fs;
  std::optional<uint32_t> block_size;
  std::optional<uint32_t> replicas;
  Labels labels;
  std::string parent;  // clone this volume or snapshot
  // Whether anything beyond the name was given.
  bool has_spec() const {
    return size_bytes || fs || block_size || replicas || !labels.empty() || !parent.empty();
  }
};

// The option keys Create accepts, sorted: block_size, fs, label, parent, repl, size.
const std::vector<std::string>& create_option_keys();

// Parses Create's options: Docker's Opts and, when the name holds '=', the inline form
// "k=v,k2=v2" with a `name=` item (`label=` may repeat there; in Opts it takes a
// pxctl-style list "k=v,k2=v2"). A key given both ways must agree. Refuses unknown keys
// (listing the valid ones), bad sizes, file systems, block sizes and replica counts.
Result<CreateOptions> parse_create_options(const std::string& docker_name, const Options& opts);

// pxd's name for the volume Docker calls `docker_name`: the inline form's `name=`, or the
// name itself; checked with check_volume_name.
Result<std::string> volume_name(const std::string& docker_name);

// A name the plugin accepts: 1 to 255 bytes, no '/', no "..", no control characters, and
// no ',' or '=' (they would read as options). Volumes mount at <mounts>/<name>.
Status check_volume_name(std::string_view name);

// Reply bodies.
std::string error_body(std::string_view message);          // {"Err": message}
std::string empty_body();                                  // {"Err": ""}
std::string activate_body();                               // {"Implements": ["VolumeDriver"]}
std::string capabilities_body();                           // {"Capabilities": {"Scope": "local"}}
std::string mountpoint_body(std::string_view mountpoint);  // Mount, Path

// One volume as Get and List describe it. Status is shown by `docker volume inspect`.
struct VolumeEntry {
  std::string name;        // as Docker asked for it (Get) or pxd's name (List)
  std::string mountpoint;  // "" while not mounted for Docker
  int64_t created_unix = 0;
  std::map<std::string, std::string> status;
};
std::string get_body(const VolumeEntry& volume);
std::string list_body(const std::vector<VolumeEntry>& volumes);

// 1795000000 -> "2026-11-18T...Z", the form Go's time.Time reads.
std::string rfc3339(int64_t unix_seconds);

}  // namespace pxd::docker
