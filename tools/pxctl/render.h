// tools/pxctl/render.h: what pxctl prints for the API's objects, as JSON (-j) and as text.
//
// JSON follows doc/control-api.md: snake_case fields, sizes in bytes, `labels` an object,
// `parent` and `device_path` null when empty, `created` in unix seconds. Keys keep the
// order written here so output diffs well. Text uses human sizes (binary units).
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "proto/control.capnp.h"

namespace pxd::pxctl {

using Json = nlohmann::ordered_json;

// --- JSON (render_json.cc)
Json labels_json(capnp::List<proto::Label>::Reader labels);
Json volume_json(proto::Volume::Reader volume);
Json pool_json(proto::Pool::Reader pool);
Json node_json(proto::NodeStatus::Reader node);

// Pretty-printed with a trailing newline; invalid UTF-8 from the server is replaced, never
// an exception.
std::string json_text(const Json& json);

// --- Text (render_text.cc)
// ID NAME SIZE USED FS REPL STATE DEVICE LABELS; USED is exclusive + shared bytes.
std::string volume_table(const std::vector<proto::Volume::Reader>& volumes);
// ID NAME VOLUME SIZE EXCLUSIVE SHARED CREATED
std::string snapshot_table(const std::vector<proto::Volume::Reader>& snapshots);
// NAME UUID CAPACITY USED FREE CHUNK DEVICES
std::string pool_table(capnp::List<proto::Pool>::Reader pools);
// "Name:  db" lines for `volume inspect`.
std::string volume_block(proto::Volume::Reader volume);
// Node lines for `status`, then a blank line and the pool table.
std::string node_block(proto::NodeStatus::Reader node);

template <class T>
std::vector<typename T::Reader> readers(typename capnp::List<T>::Reader list) {
  std::vector<typename T::Reader> out;
  out.reserve(list.size());
  for (auto item : list) out.push_back(item);
  return out;
}

}  // namespace pxd::pxctl
