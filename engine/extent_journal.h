// engine/extent_journal.h: the extent journal, a first write's extent in shared memory.
//
// A first write into a thin volume maps a fresh chunk; its extent must reach the metadata
// store before the write completes, or a SIGKILL of pxd could lose a write that the
// application flushes later through a frontend that outlives pxd (doc/engine.md). Writing
// it to RocksDB means waking the metadata thread for every first write, which on a small
// VM slows the data write it runs beside. Instead, the ring thread that issues the data
// write copies the extent (48 bytes) into this journal: a file on tmpfs (/dev/shm unless
// the pool is opened with another directory), mapped shared, so a record is in the
// kernel's page cache, and survives the process, as soon as the copy returns. No system
// call, no thread woken, and, on tmpfs, no page fault that could wait for a disk or a
// filesystem journal (a frozen or stalled metadata filesystem never holds up the ring). The
// metadata writer moves the records into the store later, in large groups, and always before any
// batch queued after them (MetaWriter), so a flush or FUA write, which syncs the store,
// makes them durable. The journal is never synced itself: it only has to survive the
// process, not the machine. A clean close removes it.
//
// Each record carries a sequence number (the metadata writer's) and a SipHash of its
// fields under the journal's key, a random key drawn at each open and kept in the store
// with the highest sequence applied (metadb::JournalState). At open, records that the
// current key authenticates and that are above `applied` are replayed (Pool::load checks
// each against the store first); a stale record of an earlier open, a torn or corrupt one,
// fails the hash and is ignored.
//
// Layout: `capacity` slots of 64 bytes (a record never crosses a page); record i of an
// open goes to slot i % capacity. Little-endian: sequence u64, tree u64, chunk_index u64,
// pool_chunk u64, birth u32, reserved u32 (zero), hash u64, then 8 bytes of zeros.
//
// Thread safety: write() may be called from any thread, for different slots at once; the
// caller (MetaWriter) hands out slots and never reuses one whose record is not yet in the
// store. read() and create() are for open.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace pxd {

struct JournalRecord {
  uint64_t sequence = 0;
  uint64_t tree = 0;
  uint64_t chunk_index = 0;
  uint64_t pool_chunk = 0;
  uint32_t birth = 0;
  bool operator==(const JournalRecord&) const = default;
};

class ExtentJournal {
 public:
  using Key = std::array<uint8_t, 16>;
  static constexpr size_t kSlotBytes = 64;

  // The file of the pool with `pool_uuid` in `dir`.
  static std::string path_in(const std::string& dir, const std::string& pool_uuid);
  // Removes the file at `path`, if any.
  static void remove(const std::string& path);
  // A fresh random key.
  static Key new_key();

  // Every record in `path` that `key` authenticates, in slot order. A missing file has
  // none, and so has one that is not a regular file owned by this process's user (logged).
  // Fails only if the file exists and cannot be read.
  static Result<std::vector<JournalRecord>> read(const std::string& path, const Key& key);

  // Creates the file at `path` (or empties an existing one of this process's user) with
  // `capacity` slots, mode 0600, and maps it. Records are authenticated with `key`.
  static Result<std::unique_ptr<ExtentJournal>> create(const std::string& path, uint32_t capacity,
                                                       const Key& key);
  ~ExtentJournal();
  ExtentJournal(const ExtentJournal&) = delete;
  ExtentJournal& operator=(const ExtentJournal&) = delete;

  const std::string& path() const { return path_; }
  uint32_t capacity() const { return capacity_; }
  // Writes `record` into slot `index % capacity()`.
  void write(uint64_t index, const JournalRecord& record);

 private:
  ExtentJournal(std::string path, uint8_t* map, uint32_t capacity, const Key& key)
      : path_(std::move(path)), map_(map), capacity_(capacity), key_(key) {}
  std::string path_;
  uint8_t* map_;
  uint32_t capacity_;
  Key key_;
};

}  // namespace pxd
