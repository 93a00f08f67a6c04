// metadb/meta_store.h: pxd's persistent metadata, and the only code that includes RocksDB.
//
// The store holds, for one pool: the pool record (devices, chunk size), the objects
// (volumes and snapshots), the extent entries of every volume's tree (live and historical,
// see doc/engine.md), the set of dirty chunks (chunks that may hold stale data and are
// referenced by no extent), and the next object id. Keys and values are documented in
// doc/format.md; the store carries a format version that open() checks.
//
// Each logical change is one MetaBatch, applied atomically by write(). A write with
// sync=false is in the write-ahead log (survives a process crash) but not necessarily on
// stable storage until a later sync() or a write with sync=true returns.
//
// Thread safety: MetaStore is safe to call from any thread; writes are applied in the
// order their write() calls return. A sync() may run while another thread writes: the
// writes go on meanwhile (sync_gate.h says how a failure on either side stays safe).
// MetaBatch is a value owned by one thread at a time.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace pxd::metadb {

// The on-disk format this build reads and writes. Do not change the meaning of existing
// versions; bump it when the encoding changes and teach open() to read the old one.
// Version 2 added reserved runs ('R'), version 3 the extent journal's state ('J'); open()
// upgrades an older store in place (it has neither, so only the format record changes).
inline constexpr uint32_t kFormatVersion = 3;

// An extent entry's death generation while it is still the live mapping.
inline constexpr uint32_t kLiveGeneration = UINT32_MAX;

// One chunk-sized range of a tree: logical chunk `chunk_index` of tree `tree`, written at
// generation `birth`, lives in pool chunk `pool_chunk` until generation `death`.
struct ExtentKey {
  uint64_t tree = 0;
  uint64_t chunk_index = 0;
  uint32_t birth = 0;
  auto operator<=>(const ExtentKey&) const = default;
};
// Chunks [first_chunk, first_chunk + count) were handed to the allocation reserve: any of
// them that no extent names may hold data of a write whose extent never committed, and
// is zeroed before it is free (doc/engine.md, "Dirty chunks and reserved runs").
struct ReservedRun {
  uint64_t id = 0;
  uint64_t first_chunk = 0;
  uint64_t count = 0;
  bool operator==(const ReservedRun&) const = default;
};
// What the extent journal (engine/extent_journal.h) needs from the store: the key that
// authenticates the journal's records of the current epoch, and the highest sequence
// number of those whose extents are written to the store (the rest are replayed at open).
struct JournalState {
  std::array<uint8_t, 16> key{};
  uint64_t applied = 0;
  bool operator==(const JournalState&) const = default;
};
struct ExtentValue {
  uint64_t pool_chunk = 0;
  uint32_t death = kLiveGeneration;
  bool operator==(const ExtentValue&) const = default;
};

// Persisted values: do not change.
enum class ObjectKind : uint8_t { kVolume = 1, kSnapshot = 2 };

// A volume or a snapshot.
struct ObjectRecord {
  uint64_t id = 0;
  ObjectKind kind = ObjectKind::kVolume;
  std::string name;
  uint64_t size_bytes = 0;
  uint32_t block_size = 4096;
  std::map<std::string, std::string> labels;
  // Opaque key/values that upper layers (daemon, frontends) persist with the object,
  // e.g. the filesystem type. The engine never interprets them.
  std::map<std::string, std::string> attributes;
  int64_t created_unix = 0;
  // Volume: its own id. Snapshot: the id of the volume whose tree it is a view of.
  uint64_t tree = 0;
  // Volume: the current live generation. Snapshot: the generation it captured.
  uint32_t generation = 1;
  // The snapshot a clone was made from (0 if none). It may since have been deleted.
  uint64_t origin = 0;
  bool operator==(const ObjectRecord&) const = default;
};

struct PoolDeviceRecord {
  std::string path;
  uint64_t chunk_count = 0;  // data chunks on this device
  bool thick = false;        // a pool file written whole at creation (engine/pool_device.h)
  bool operator==(const PoolDeviceRecord&) const = default;
};

struct PoolRecord {
  std::string uuid;  // 36-char text form; also written in every device header
  uint32_t chunk_size = 0;
  std::vector<PoolDeviceRecord> devices;
  int64_t created_unix = 0;
  bool operator==(const PoolRecord&) const = default;
};

// An atomic group of changes. Put/delete calls are recorded, not applied, until
// MetaStore::write().
class MetaBatch {
 public:
  MetaBatch();
  ~MetaBatch();
  MetaBatch(MetaBatch&&) noexcept;
  MetaBatch& operator=(MetaBatch&&) noexcept;

  void put_pool(const PoolRecord& pool);
  void put_next_id(uint64_t next_id);
  void put_object(const ObjectRecord& object);
  void delete_object(uint64_t id);
  void put_extent(const ExtentKey& key, const ExtentValue& value);
  void delete_extent(const ExtentKey& key);
  void put_dirty(uint64_t pool_chunk);
  void delete_dirty(uint64_t pool_chunk);
  void put_reserved_run(const ReservedRun& run);
  void delete_reserved_run(uint64_t run_id);
  void put_journal_state(const JournalState& state);

  // Moves every change of `other` after this batch's own; `other` is left empty.
  void append(MetaBatch&& other);
  size_t count() const;
  bool empty() const { return count() == 0; }
  void clear();

 private:
  friend class MetaStore;
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

struct MetaStoreOptions {
  // RocksDB block cache and write buffer sizes; small defaults keep an idle pxd lean.
  size_t write_buffer_bytes = 16 << 20;
  size_t block_cache_bytes = 8 << 20;
};

class MetaStore {
 public:
  // Creates a new, empty store at `dir` holding `pool` and format kFormatVersion.
  // Fails with kAlreadyExists if `dir` already holds a store.
  static Result<std::unique_ptr<MetaStore>> create(const std::string& dir, const PoolRecord& pool,
                                                   const MetaStoreOptions& options = {});
  // Opens an existing store. Fails, changing nothing on disk, with kNotFound if there is no
  // store at `dir`, kCorruption if RocksDB or a record fails its checks (the message names
  // the key), and kUnsupported if its format version is newer than kFormatVersion.
  static Result<std::unique_ptr<MetaStore>> open(const std::string& dir,
                                                 const MetaStoreOptions& options = {});
  ~MetaStore();

  // After a write or sync fails, the store is failed: every later write and sync returns
  // that first failure without touching the disk (reopen to recover).
  Status write(MetaBatch& batch, bool sync);
  // Makes every write that returned before this call durable.
  Status sync();

  const PoolRecord& pool() const;
  uint64_t next_id() const;
  // The extent journal's state, read from the store (not cached); none in a store that has
  // never had a journal.
  Result<std::optional<JournalState>> journal_state() const;

  // Full scans, used at open. A record that fails to decode ends the scan with
  // kCorruption naming the key; a visitor error ends it with that error.
  Status for_each_object(const std::function<Status(ObjectRecord&&)>& visit) const;
  Status for_each_extent(
      const std::function<Status(const ExtentKey&, const ExtentValue&)>& visit) const;
  Status for_each_dirty(const std::function<Status(uint64_t pool_chunk)>& visit) const;
  Status for_each_reserved_run(const std::function<Status(const ReservedRun&)>& visit) const;

  // Bytes the store occupies on disk (SST files, logs, manifest).
  uint64_t disk_bytes() const;
  // Memory held by RocksDB's write buffers (memtables): recent writes, until a flush
  // writes them to table files. Bounded by MetaStoreOptions::write_buffer_bytes (per
  // buffer, at most two), not by how much is mapped.
  uint64_t buffer_bytes() const;
  // Writes the write buffers to table files now and releases their memory (RocksDB does
  // it by itself once a buffer is full, and at close). Changes nothing a reader sees.
  Status flush_buffer();
  const std::string& dir() const { return dir_; }

 private:
  struct Rep;
  MetaStore(std::string dir, std::unique_ptr<Rep> rep);
  std::string dir_;
  std::unique_ptr<Rep> rep_;
};

}  // namespace pxd::metadb
