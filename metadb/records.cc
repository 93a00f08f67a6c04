#include "metadb/records.h"

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

namespace pxd::metadb::records {
namespace {

using nlohmann::json;

// Keys are big-endian so that RocksDB's bytewise order is numeric order: a tree's extents
// come out sorted by chunk, then birth, and a range scan needs no re-sorting.
void put_be(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_be(std::string_view in, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[pos + i]);
  return v;
}

// Values are little-endian, like RocksDB's own fixed-width encodings; their order does not
// matter.
void put_le(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(std::string_view in, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[pos + i]);
  return v;
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

Status bad_size(std::string_view what, size_t got, size_t want) {
  return corruption(std::string(what) + ": value is " + std::to_string(got) + " bytes, expected " +
                    std::to_string(want));
}

// Strings that are not valid UTF-8 cannot be represented in JSON; they are stored with
// U+FFFD in place of the bad bytes rather than throwing from a void put_*() call. Names and
// labels are validated where they enter pxd (the control API), so this is a last resort.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Reads the fields of one JSON record, naming the record in every error. Unknown fields are
// ignored so that a newer minor writer's additions do not make the store unreadable.
class FieldReader {
 public:
  FieldReader(const json& object, std::string what) : object_(object), what_(std::move(what)) {}

  Status u64(const char* field, uint64_t* out) const {
    const json* v = nullptr;
    PXD_RETURN_IF_ERROR(find(field, &v));
    if (!v->is_number_unsigned()) return wrong_type(field, "an unsigned integer");
    *out = v->get<uint64_t>();
    return Status::ok();
  }
  Status u32(const char* field, uint32_t* out) const {
    uint64_t v = 0;
    PXD_RETURN_IF_ERROR(u64(field, &v));
    if (v > std::numeric_limits<uint32_t>::max()) return wrong_type(field, "a 32-bit integer");
    *out = static_cast<uint32_t>(v);
    return Status::ok();
  }
  Status i64(const char* field, int64_t* out) const {
    const json* v = nullptr;
    PXD_RETURN_IF_ERROR(find(field, &v));
    if (v->is_number_unsigned()) {
      if (v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return wrong_type(field, "a 64-bit signed integer");
      }
    } else if (!v->is_number_integer()) {
      return wrong_type(field, "an integer");
    }
    *out = v->get<int64_t>();
    return Status::ok();
  }
  Status string(const char* field, std::string* out) const {
    const json* v = nullptr;
    PXD_RETURN_IF_ERROR(find(field, &v));
    if (!v->is_string()) return wrong_type(field, "a string");
    *out = v->get<std::string>();
    return Status::ok();
  }
  Status string_map(const char* field, std::map<std::string, std::string>* out) const {
    const json* v = nullptr;
    PXD_RETURN_IF_ERROR(find(field, &v));
    if (!v->is_object()) return wrong_type(field, "an object");
    out->clear();
    for (const auto& [key, value] : v->items()) {
      if (!value.is_string()) return wrong_type(field, "an object of strings");
      out->emplace(key, value.get<std::string>());
    }
    return Status::ok();
  }
  // A field older writers did not write: `fallback` when it is missing.
  Status optional_bool(const char* field, bool fallback, bool* out) const {
    auto it = object_.find(field);
    if (it == object_.end()) {
      *out = fallback;
      return Status::ok();
    }
    if (!it->is_boolean()) return wrong_type(field, "true or false");
    *out = it->get<bool>();
    return Status::ok();
  }
  Status array(const char* field, const json** out) const {
    PXD_RETURN_IF_ERROR(find(field, out));
    if (!(*out)->is_array()) return wrong_type(field, "an array");
    return Status::ok();
  }

 private:
  Status find(const char* field, const json** out) const {
    auto it = object_.find(field);
    if (it == object_.end()) return corruption(what_ + ": field '" + field + "' missing");
    *out = &*it;
    return Status::ok();
  }
  Status wrong_type(const char* field, const char* expected) const {
    return corruption(what_ + ": field '" + field + "' is not " + expected);
  }

  const json& object_;
  std::string what_;
};

Result<json> parse_object(std::string_view value, const std::string& what) {
  // allow_exceptions=false: a garbled record is corruption to report, not a crash.
  json j = json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return corruption(what + ": value is not valid JSON");
  if (!j.is_object()) return corruption(what + ": value is not a JSON object");
  return j;
}

}  // namespace

std::string format_key() {
  return std::string(1, kFormatPrefix);
}
std::string pool_key() {
  return std::string(1, kPoolPrefix);
}
std::string next_id_key() {
  return std::string(1, kNextIdPrefix);
}

std::string encode_format(uint32_t version) {
  std::string out(kFormatMagic);
  put_le(&out, version, 4);
  return out;
}

Result<uint32_t> decode_format(std::string_view value) {
  if (value.size() != kFormatValueSize) {
    return bad_size("format record", value.size(), kFormatValueSize);
  }
  if (value.substr(0, kFormatMagic.size()) != kFormatMagic) {
    return corruption("format record: magic is '" + hex(value.substr(0, kFormatMagic.size())) +
                      "' (hex), expected '" + std::string(kFormatMagic) + "'");
  }
  auto version = static_cast<uint32_t>(get_le(value, kFormatMagic.size(), 4));
  if (version == 0) return corruption("format record: version 0 is not a valid version");
  return version;
}

std::string encode_pool(const PoolRecord& pool) {
  json devices = json::array();
  for (const PoolDeviceRecord& d : pool.devices) {
    json device = {{"path", d.path}, {"chunk_count", d.chunk_count}};
    if (d.thick) device["thick"] = true;
    devices.push_back(std::move(device));
  }
  json j = {{"uuid", pool.uuid},
            {"chunk_size", pool.chunk_size},
            {"devices", std::move(devices)},
            {"created_unix", pool.created_unix}};
  return dump(j);
}

Result<PoolRecord> decode_pool(std::string_view value) {
  const std::string what = "pool record";
  PXD_TRY(json j, parse_object(value, what));
  FieldReader fields(j, what);
  PoolRecord pool;
  PXD_RETURN_IF_ERROR(fields.string("uuid", &pool.uuid));
  PXD_RETURN_IF_ERROR(fields.u32("chunk_size", &pool.chunk_size));
  PXD_RETURN_IF_ERROR(fields.i64("created_unix", &pool.created_unix));
  const json* devices;
  PXD_RETURN_IF_ERROR(fields.array("devices", &devices));
  for (size_t i = 0; i < devices->size(); ++i) {
    const json& d = (*devices)[i];
    std::string device_what = what + ": device " + std::to_string(i);
    if (!d.is_object()) return corruption(device_what + ": not a JSON object");
    FieldReader device_fields(d, device_what);
    PoolDeviceRecord device;
    PXD_RETURN_IF_ERROR(device_fields.string("path", &device.path));
    PXD_RETURN_IF_ERROR(device_fields.u64("chunk_count", &device.chunk_count));
    PXD_RETURN_IF_ERROR(device_fields.optional_bool("thick", false, &device.thick));
    pool.devices.push_back(std::move(device));
  }
  return pool;
}

std::string encode_next_id(uint64_t next_id) {
  std::string out;
  put_le(&out, next_id, 8);
  return out;
}

Result<uint64_t> decode_next_id(std::string_view value) {
  if (value.size() != kNextIdValueSize) {
    return bad_size("next-id record", value.size(), kNextIdValueSize);
  }
  return get_le(value, 0, 8);
}

std::string object_key(uint64_t id) {
  std::string out(1, kObjectPrefix);
  put_be(&out, id, 8);
  return out;
}

std::string encode_object(const ObjectRecord& o) {
  json j = {{"id", o.id},
            {"kind", static_cast<uint8_t>(o.kind)},
            {"name", o.name},
            {"size_bytes", o.size_bytes},
            {"block_size", o.block_size},
            {"labels", o.labels},
            {"attributes", o.attributes},
            {"created_unix", o.created_unix},
            {"tree", o.tree},
            {"generation", o.generation},
            {"origin", o.origin}};
  return dump(j);
}

Result<ObjectRecord> decode_object(std::string_view key, std::string_view value) {
  if (key.size() != kObjectKeySize || key[0] != kObjectPrefix) {
    return corruption("object key '" + hex(key) + "' (hex): malformed");
  }
  const uint64_t key_id = get_be(key, 1, 8);
  const std::string what = "object " + std::to_string(key_id);
  PXD_TRY(json j, parse_object(value, what));
  FieldReader fields(j, what);
  ObjectRecord o;
  PXD_RETURN_IF_ERROR(fields.u64("id", &o.id));
  if (o.id != key_id) {
    return corruption(what + ": field 'id' is " + std::to_string(o.id) + ", the key says " +
                      std::to_string(key_id));
  }
  uint32_t kind;
  PXD_RETURN_IF_ERROR(fields.u32("kind", &kind));
  if (kind != static_cast<uint32_t>(ObjectKind::kVolume) &&
      kind != static_cast<uint32_t>(ObjectKind::kSnapshot)) {
    return corruption(what + ": field 'kind' is " + std::to_string(kind) +
                      ", not a known object kind");
  }
  o.kind = static_cast<ObjectKind>(kind);
  PXD_RETURN_IF_ERROR(fields.string("name", &o.name));
  PXD_RETURN_IF_ERROR(fields.u64("size_bytes", &o.size_bytes));
  PXD_RETURN_IF_ERROR(fields.u32("block_size", &o.block_size));
  PXD_RETURN_IF_ERROR(fields.string_map("labels", &o.labels));
  PXD_RETURN_IF_ERROR(fields.string_map("attributes", &o.attributes));
  PXD_RETURN_IF_ERROR(fields.i64("created_unix", &o.created_unix));
  PXD_RETURN_IF_ERROR(fields.u64("tree", &o.tree));
  PXD_RETURN_IF_ERROR(fields.u32("generation", &o.generation));
  PXD_RETURN_IF_ERROR(fields.u64("origin", &o.origin));
  return o;
}

std::string extent_key(const ExtentKey& key) {
  std::string out(1, kExtentPrefix);
  put_be(&out, key.tree, 8);
  put_be(&out, key.chunk_index, 8);
  put_be(&out, key.birth, 4);
  return out;
}

std::string encode_extent_value(const ExtentValue& value) {
  std::string out;
  put_le(&out, value.pool_chunk, 8);
  put_le(&out, value.death, 4);
  return out;
}

Result<ExtentKey> decode_extent_key(std::string_view key) {
  if (key.size() != kExtentKeySize || key[0] != kExtentPrefix) {
    return corruption("extent key '" + hex(key) + "' (hex): expected " +
                      std::to_string(kExtentKeySize) + " bytes");
  }
  ExtentKey k;
  k.tree = get_be(key, 1, 8);
  k.chunk_index = get_be(key, 9, 8);
  k.birth = static_cast<uint32_t>(get_be(key, 17, 4));
  return k;
}

Result<ExtentValue> decode_extent_value(const ExtentKey& key, std::string_view value) {
  if (value.size() != kExtentValueSize) {
    return bad_size("extent " + describe_extent(key), value.size(), kExtentValueSize);
  }
  ExtentValue v;
  v.pool_chunk = get_le(value, 0, 8);
  v.death = static_cast<uint32_t>(get_le(value, 8, 4));
  return v;
}

std::string dirty_key(uint64_t pool_chunk) {
  std::string out(1, kDirtyPrefix);
  put_be(&out, pool_chunk, 8);
  return out;
}

Result<uint64_t> decode_dirty_key(std::string_view key) {
  if (key.size() != kDirtyKeySize || key[0] != kDirtyPrefix) {
    return corruption("dirty-chunk key '" + hex(key) + "' (hex): expected " +
                      std::to_string(kDirtyKeySize) + " bytes");
  }
  return get_be(key, 1, 8);
}

std::string reserved_run_key(uint64_t run_id) {
  std::string out(1, kReservedRunPrefix);
  put_be(&out, run_id, 8);
  return out;
}

std::string encode_reserved_run(const ReservedRun& run) {
  std::string out;
  put_le(&out, run.first_chunk, 8);
  put_le(&out, run.count, 8);
  return out;
}

Result<uint64_t> decode_reserved_run_key(std::string_view key) {
  if (key.size() != kReservedRunKeySize || key[0] != kReservedRunPrefix) {
    return corruption("reserved-run key '" + hex(key) + "' (hex): expected " +
                      std::to_string(kReservedRunKeySize) + " bytes");
  }
  return get_be(key, 1, 8);
}

Result<ReservedRun> decode_reserved_run(uint64_t run_id, std::string_view value) {
  const std::string what = "reserved run " + std::to_string(run_id);
  if (value.size() != kReservedRunValueSize)
    return bad_size(what, value.size(), kReservedRunValueSize);
  ReservedRun run;
  run.id = run_id;
  run.first_chunk = get_le(value, 0, 8);
  run.count = get_le(value, 8, 8);
  if (run.count == 0) return corruption(what + ": count is 0");
  if (run.first_chunk + run.count < run.first_chunk)
    return corruption(what + ": chunks " + std::to_string(run.first_chunk) + " + " +
                      std::to_string(run.count) + " overflow");
  return run;
}

std::string journal_state_key() {
  return std::string(1, kJournalStatePrefix);
}

std::string encode_journal_state(const JournalState& state) {
  std::string out(reinterpret_cast<const char*>(state.key.data()), state.key.size());
  put_le(&out, state.applied, 8);
  return out;
}

Result<JournalState> decode_journal_state(std::string_view value) {
  if (value.size() != kJournalStateValueSize) {
    return bad_size("extent journal state", value.size(), kJournalStateValueSize);
  }
  JournalState state;
  std::memcpy(state.key.data(), value.data(), state.key.size());
  state.applied = get_le(value, state.key.size(), 8);
  return state;
}

std::string describe_extent(const ExtentKey& key) {
  return "(tree " + std::to_string(key.tree) + ", chunk " + std::to_string(key.chunk_index) +
         ", birth " + std::to_string(key.birth) + ")";
}

}  // namespace pxd::metadb::records
