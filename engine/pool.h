// engine/pool.h: a storage pool and the volumes and snapshots carved out of it.
//
// This is where to start reading the engine. A Pool is one metadata store (a RocksDB
// directory) plus one or more backing files or block devices, divided into chunks of
// chunk_size bytes. Volumes are thin (a chunk is allocated on first write). Snapshots are
// O(1) read-only views; clones are writable volumes that share a snapshot's (or, through
// an implicit snapshot, a volume's) chunks. Each object reports exclusive and shared
// bytes, at a cost independent of its size; pool used bytes is exactly the number of
// referenced chunks times chunk_size.
// How it works: doc/engine.md; what is stored: doc/format.md.
//
// Names are unique across volumes and snapshots: 1 to 255 bytes, no '/', no control
// characters, not "." or "..".
//
// I/O goes through the Volume handles open_volume() returns (see volume.h). Control
// operations are synchronous: each is one atomic metadata batch, durable when it returns.
//
// Thread safety: every method may be called from any thread except a ring thread that has
// requests of this pool in flight (control operations may wait for the metadata thread).
// Control operations are serialized. Handles must be released before the Pool is destroyed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "engine/chunk_map.h"
#include "engine/volume.h"
#include "metadb/meta_store.h"

namespace pxd {

class PoolState;
class ThinVolume;
struct Tree;

// Chosen by measurement (bench: pxbench chunk-size); the reasons are in doc/engine.md.
inline constexpr uint32_t kDefaultChunkSize = 1 << 20;
inline constexpr uint64_t kMaxVolumeBytes = 256ULL << 40;  // 256 TiB
inline constexpr size_t kMaxNameBytes = 255;

struct PoolDeviceSpec {
  std::string path;
  uint64_t size_bytes = 0;  // for a file that does not exist yet: create it sparse, this big
  // Files only: allocate and write the whole file at creation, and never give its space
  // back, so that first writes into fresh chunks overwrite allocated blocks instead of
  // having the filesystem allocate them (doc/engine.md, "Thick pool files").
  bool thick = false;
};

// Where and how large the extent journal is (engine/extent_journal.h).
struct JournalOptions {
  // 8192 slots: 512 KiB. 0 runs without a journal: every first write commits its extent
  // through the metadata writer (tests of that path).
  uint32_t slots = 8192;
  // A directory on tmpfs, owned by the user pxd runs as, so that writing a record never
  // waits for a disk or a filesystem journal, and the file outlives the process (not the
  // machine, which it need not). Empty: /dev/shm.
  std::string dir;
};

struct PoolOptions {
  std::vector<PoolDeviceSpec> devices;
  uint32_t chunk_size = kDefaultChunkSize;  // power of two, 64 KiB to 64 MiB
  // Hears how far the writing of thick pool files has come (path, bytes done, of total).
  std::function<void(const std::string& path, uint64_t done, uint64_t total)> progress;
  JournalOptions journal;
};

struct PoolOpenOptions {
  JournalOptions journal;
};

using Labels = std::map<std::string, std::string>;

struct VolumeSpec {
  std::string name;
  uint64_t size_bytes = 0;
  uint32_t block_size = 4096;  // 4096 or 512
  Labels labels;
  Labels attributes;  // opaque to the engine (e.g. the filesystem the daemon puts on it)
};

struct ObjectInfo {
  uint64_t id = 0;
  std::string name;
  bool is_snapshot = false;
  uint64_t size_bytes = 0;
  uint32_t block_size = 0;
  Labels labels;
  Labels attributes;
  int64_t created_unix = 0;
  std::string volume;  // snapshot: the volume it is a snapshot of
  std::string origin;  // clone: the snapshot or volume it was made from ("" if gone)
  std::vector<std::string> snapshots;  // volume: its snapshots, oldest first
  uint64_t exclusive_bytes = 0;        // in chunks no other volume or snapshot sees
  uint64_t shared_bytes = 0;           // in chunks some other volume or snapshot sees too
  uint32_t open_handles = 0;
};

struct PoolUsage {
  std::string uuid;
  uint32_t chunk_size = 0;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;        // referenced chunks
  uint64_t free_bytes = 0;        // allocatable chunks
  uint64_t reclaiming_bytes = 0;  // unreferenced, being zeroed before reuse
  uint64_t metadata_bytes = 0;    // the metadata store on disk
  // Memory: the metadata store's write buffers (bounded, see MetaStore::buffer_bytes), and
  // the engine's extent maps (grows with mapped chunks; history entries estimated).
  uint64_t metadata_buffer_bytes = 0;
  uint64_t extent_map_bytes = 0;
  uint64_t mapped_extents = 0;    // live and historical extent entries
  uint64_t metadata_commits = 0;  // batches written since open (diagnostics, benchmarks)
  uint32_t volumes = 0;
  uint32_t snapshots = 0;
  std::vector<std::string> devices;
};

// Validation shared with the layers above (the control API checks names the same way).
Status check_name(const std::string& name);

class Pool {
 public:
  // Creates the devices and an empty metadata store at `meta_dir`. On failure, files it
  // created are removed again.
  static Result<std::unique_ptr<Pool>> create(const std::string& meta_dir,
                                              const PoolOptions& options);
  // Opens an existing pool: checks the format and every device header, derives reference
  // counts, and zeroes chunks a crash left allocated but unreferenced. On failure nothing
  // on disk has changed.
  // Extents a crash left in the extent journal only are replayed first (Pool::load()
  // says what is checked).
  static Result<std::unique_ptr<Pool>> open(const std::string& meta_dir,
                                            const PoolOpenOptions& options = {});
  ~Pool();

  Result<ObjectInfo> create_volume(const VolumeSpec& spec);
  // O(1): records the volume's current generation as the snapshot.
  Result<ObjectInfo> create_snapshot(const std::string& volume, const std::string& name,
                                     const Labels& labels = {});
  // A writable volume with the content of `source` (a snapshot, or a volume, which is
  // captured as by a snapshot at this instant). Cost is linear in the mapped chunks.
  Result<ObjectInfo> clone(const std::string& source, const std::string& name,
                           const Labels& labels = {}, const Labels& attributes = {});
  // Makes `volume`'s content equal its snapshot `snapshot`'s. The volume must not be open.
  Status restore(const std::string& volume, const std::string& snapshot);
  // Deletes a volume (which must have no snapshots) or a snapshot; neither may be open.
  // Frees exactly the chunks nothing else references.
  Status remove(const std::string& name);
  // Grows a volume, online. Shrinking is refused.
  Result<ObjectInfo> resize(const std::string& name, uint64_t new_size_bytes);
  Result<ObjectInfo> set_labels(const std::string& name, const Labels& labels);
  // Sets `set` and removes the keys in `remove`, keeping other labels, atomically.
  Result<ObjectInfo> merge_labels(const std::string& name, const Labels& set,
                                  const std::vector<std::string>& remove);
  Result<ObjectInfo> set_attributes(const std::string& name, const Labels& attributes);

  // Exclusive and shared bytes come from counts kept as extents change: the cost does not
  // grow with the extents mapped (doc/engine.md, "Space accounting").
  Result<ObjectInfo> inspect(const std::string& name);
  std::vector<ObjectInfo> list();
  // list() with every object's exclusive and shared bytes recomputed by walking its tree
  // (linear in its extents, holding the tree's lock meanwhile): the definition the counts
  // follow. For tests, which check that both agree whenever no I/O is in flight, and
  // benchmarks.
  std::vector<ObjectInfo> list_recounted();
  PoolUsage usage();

  // A handle for I/O. Snapshots open read-only. Several handles may be open at once.
  Result<std::shared_ptr<Volume>> open_volume(const std::string& name);

  // Makes everything done so far durable (metadata and devices).
  Status sync();
  // Writes the metadata store's write buffers out to its table files, releasing their
  // memory (see PoolUsage::metadata_buffer_bytes).
  Status flush_metadata_buffer();

 private:
  explicit Pool(std::unique_ptr<PoolState> state);
  Status load(const JournalOptions& journal);
  // The journal's records that load() applies: checked against the store's state (loaded
  // into memory so far), then applied to memory and `batch`. Removes their chunks from
  // `unreferenced`.
  Status replay_journal(const std::string& path, metadb::MetaBatch& batch,
                        std::vector<uint64_t>& unreferenced,
                        const std::vector<metadb::ReservedRun>& runs);
  // Creates the journal at `path` (`slots` 0: removes any) and attaches it to the
  // metadata writer; on failure, logs and leaves the pool on the batch path.
  void start_journal(const std::string& path, uint32_t slots, const metadb::JournalState& state);
  Result<const metadb::ObjectRecord*> find(const std::string& name) const;
  ObjectInfo describe(const metadb::ObjectRecord& rec);
  uint32_t open_count(uint64_t id);
  Result<ObjectInfo> update_record(const std::string& name,
                                   const std::function<Status(metadb::ObjectRecord&)>& change);
  // chunk index -> pool chunk for what generation `generation` of `tree` sees.
  // REQUIRES: tree.mu held.
  static ChunkMap<uint64_t> view_of(const Tree& tree, uint32_t generation);
  Result<ObjectInfo> make_clone(const metadb::ObjectRecord& source, Tree& tree,
                                const std::string& name, const Labels& labels,
                                const Labels& attributes);
  Status remove_snapshot(const metadb::ObjectRecord& rec);
  // Deletes history entries of `tree` that no snapshot sees. REQUIRES: tree.mu held.
  void collect_unseen_history(Tree& tree, metadb::MetaBatch& batch, std::vector<uint64_t>& freed);
  // Exclusive and shared bytes from the tree's counts; recount() walks the extents.
  void account(const metadb::ObjectRecord& rec, ObjectInfo& info);
  void recount(const metadb::ObjectRecord& rec, ObjectInfo& info);
  Status finish_change(metadb::MetaBatch batch, const std::vector<uint64_t>& freed);

  std::unique_ptr<PoolState> state_;
  std::mutex control_mu_;                             // serializes control operations
  std::map<uint64_t, metadb::ObjectRecord> objects_;  // GUARDED_BY(control_mu_)
  std::map<std::string, uint64_t> names_;             // GUARDED_BY(control_mu_)
  uint64_t next_id_ = 1;                              // GUARDED_BY(control_mu_)

  std::mutex open_mu_;                            // leaf: handles close from any thread
  std::unordered_map<uint64_t, uint32_t> opens_;  // GUARDED_BY(open_mu_)
  std::unordered_map<uint64_t, std::vector<ThinVolume*>> live_handles_;  // GUARDED_BY(open_mu_)
};

}  // namespace pxd
