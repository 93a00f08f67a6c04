// metadb/records.h: the byte encoding of MetaStore keys and values (private to metadb).
//
// Every function here is a pure transformation between the project's record types and the
// bytes documented in doc/format.md; nothing here touches RocksDB, so the layout can be
// read (and tested) in one place. Decoders never trust their input: a value that fails a
// check yields kCorruption with a message that names the key ("object 17: ...").
//
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "metadb/meta_store.h"

namespace pxd::metadb::records {

// Key family prefixes: the first byte of every key. Persisted: do not change.
inline constexpr char kFormatPrefix = 'F';
inline constexpr char kPoolPrefix = 'P';
inline constexpr char kNextIdPrefix = 'I';
inline constexpr char kObjectPrefix = 'O';
inline constexpr char kExtentPrefix = 'E';
inline constexpr char kDirtyPrefix = 'D';
inline constexpr char kReservedRunPrefix = 'R';   // format version 2
inline constexpr char kJournalStatePrefix = 'J';  // format version 3

inline constexpr std::string_view kFormatMagic = "pxd-metadb";
inline constexpr size_t kFormatValueSize = kFormatMagic.size() + 4;
inline constexpr size_t kObjectKeySize = 1 + 8;
inline constexpr size_t kExtentKeySize = 1 + 8 + 8 + 4;
inline constexpr size_t kExtentValueSize = 8 + 4;
inline constexpr size_t kDirtyKeySize = 1 + 8;
inline constexpr size_t kReservedRunKeySize = 1 + 8;
inline constexpr size_t kReservedRunValueSize = 8 + 8;
inline constexpr size_t kNextIdValueSize = 8;
inline constexpr size_t kJournalStateValueSize = 16 + 8;

// Singleton records.
std::string format_key();
std::string pool_key();
std::string next_id_key();

std::string encode_format(uint32_t version);
// Returns the version; kCorruption if the value is not a format record (the version is
// checked against kFormatVersion by the caller, which knows what it can read).
Result<uint32_t> decode_format(std::string_view value);

std::string encode_pool(const PoolRecord& pool);
Result<PoolRecord> decode_pool(std::string_view value);

std::string encode_next_id(uint64_t next_id);
Result<uint64_t> decode_next_id(std::string_view value);

// Objects: 'O' + id.
std::string object_key(uint64_t id);
std::string encode_object(const ObjectRecord& object);
Result<ObjectRecord> decode_object(std::string_view key, std::string_view value);

// Extents: 'E' + tree + chunk_index + birth.
std::string extent_key(const ExtentKey& key);
std::string encode_extent_value(const ExtentValue& value);
Result<ExtentKey> decode_extent_key(std::string_view key);
Result<ExtentValue> decode_extent_value(const ExtentKey& key, std::string_view value);

// Dirty chunks: 'D' + pool_chunk, empty value.
std::string dirty_key(uint64_t pool_chunk);
Result<uint64_t> decode_dirty_key(std::string_view key);

// Reserved runs: 'R' + run id; the value is first chunk and count.
std::string reserved_run_key(uint64_t run_id);
std::string encode_reserved_run(const ReservedRun& run);
Result<uint64_t> decode_reserved_run_key(std::string_view key);
// Checks count > 0 and that the run does not wrap; the pool's bounds are the caller's.
Result<ReservedRun> decode_reserved_run(uint64_t run_id, std::string_view value);

// The extent journal's state: 'J'; the value is the 16-byte key, then applied.
std::string journal_state_key();
std::string encode_journal_state(const JournalState& state);
Result<JournalState> decode_journal_state(std::string_view value);

// "(tree 3, chunk 5, birth 2)": how messages name an extent key.
std::string describe_extent(const ExtentKey& key);

}  // namespace pxd::metadb::records
