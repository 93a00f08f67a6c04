// engine/pool_state.h: what the control path (Pool) and the I/O path (ThinVolume) share.
//
// Not part of the public engine API: frontends and the daemon use pool.h and volume.h.
// PoolState owns the metadata store and its thread, the devices, the chunk allocator, the
// trees, and the two background duties: refilling the allocation reserve and reclaiming
// chunks whose last reference is gone (zero them durably, then make them free).
//
// Thread safety: the members marked const are immutable after open; others say their
// guard. Lock order: settle_mu_, then trees_mu_, then Tree::mu, then the allocator's, then
// limbo_mu_, unshared_mu_ or runs_mu_.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/work_thread.h"
#include "engine/chunk_allocator.h"
#include "engine/meta_writer.h"
#include "engine/pool_device.h"
#include "engine/tree.h"
#include "metadb/meta_store.h"

namespace pxd {

class PoolState {
 public:
  // The allocation reserve holds at most this many bytes and chunks. A pool file that
  // preallocates its reserve's space (a sparse file) keeps it to 4 GiB of the filesystem
  // and 16384 chunks; on block devices and thick files the reserve costs no space (only
  // the zeroing of its unwritten chunks after a crash, which runs in the background), and
  // a larger one means fewer refills, each a metadata sync (on the development VMs a
  // sync's cache flush stalls every write for tens of ms): up to 32 GiB and 65536 chunks,
  // from the start.
  static constexpr uint64_t kMaxReserveBytes = 4ULL << 30;
  static constexpr uint64_t kMaxReserveChunks = 16384;
  static constexpr uint64_t kMaxReserveBytesUnbacked = 32ULL << 30;
  static constexpr uint64_t kMaxReserveChunksUnbacked = 65536;

  PoolState(std::unique_ptr<metadb::MetaStore> store,
            std::vector<std::unique_ptr<PoolDevice>> devices);
  ~PoolState();

  metadb::MetaStore& store() { return *store_; }
  MetaWriter& writer() { return *writer_; }
  ChunkAllocator& allocator() { return *allocator_; }
  const std::vector<std::unique_ptr<PoolDevice>>& devices() const { return devices_; }
  uint32_t chunk_size() const { return chunk_size_; }
  // Largest O_DIRECT alignment any device needs.
  uint32_t direct_io_alignment() const { return dio_alignment_; }
  // chunk_size() zero bytes, aligned for O_DIRECT: the source of zero writes.
  const std::byte* zeros() const { return zeros_.get(); }

  struct Location {
    int fd;
    uint64_t offset;
  };
  Location locate(uint64_t chunk) const {
    auto [dev, local] = allocator_->locate(chunk);
    return {devices_[dev]->fd(), devices_[dev]->chunk_offset(local)};
  }

  // A new I/O sequence number: requests are ordered by when they started.
  uint64_t next_sequence() { return io_sequence_.fetch_add(1, std::memory_order_relaxed); }

  // Ends the live entry (chunk_index, birth -> pool_chunk) of `tree` at `generation`:
  // kept as history if a snapshot in [birth, generation) sees it, else its extent is
  // deleted and its reference dropped; chunks left with none are recorded dirty in
  // `batch` and appended to `freed`. The live map is the caller's to change.
  // REQUIRES: tree.mu held.
  void end_live_entry(Tree& tree, uint64_t chunk_index, uint32_t birth, uint64_t pool_chunk,
                      uint32_t generation, metadb::MetaBatch& batch, std::vector<uint64_t>& freed);
  // Drops the reference of `tree`'s entry at `chunk_index` to `pool_chunk` (deleting its
  // extent and map entry is the caller's). REQUIRES: tree.mu held.
  void drop_reference(Tree& tree, uint64_t chunk_index, uint64_t pool_chunk,
                      metadb::MetaBatch& batch, std::vector<uint64_t>& freed);
  // Adds a reference held by tree `referrer` to `pool_chunk`, which `holder` names at
  // `chunk_index` (sharing always keeps the chunk index): if holder's was the only one,
  // its entries are no longer counted as unique. REQUIRES: holder.mu held.
  void share_chunk(Tree& holder, uint64_t chunk_index, uint64_t pool_chunk, uint64_t referrer);

  // Space accounting: when a chunk is left with one reference, the entry that holds it
  // becomes unique; it may be in another tree than the one whose lock the dropper holds,
  // so the dropper notes it and this marks it, one tree lock at a time. Call before
  // reading the space counts (it also runs in the background when many are noted).
  // REQUIRES: no tree lock held.
  void settle_space();

  // Hands chunks whose last reference is committed as gone to the reclaimer. Call after
  // the commit, once no map points at them any more.
  void retire(const std::vector<uint64_t>& chunks);
  // Tries to reclaim now and waits for that attempt and every one still running: the
  // chunks they took are free when this returns. Control path only (it blocks).
  void reclaim_and_wait();
  // Waits until no reclaim is between its steps (nor the one open started). REQUIRES: no
  // tree lock held.
  void drain_reclaims();
  // Called when the oldest request of a tree finishes: retired chunks may now be free.
  void maybe_reclaim() {
    if (limbo_count_.load(std::memory_order_relaxed) > 0) schedule_reclaim();
  }
  // Asks the metadata thread to top up the allocation reserve if it is low.
  void request_refill();

  // ---- reserved runs ----
  // Chunks enter the reserve in runs, each persisted as one record that keeps them dirty
  // (see doc/engine.md, "Dirty chunks and reserved runs"). A chunk of a live run is
  // *settled* once it has left the reserve for good: its extent's batch is queued, or it
  // was zeroed and freed. Call after queueing that batch. When it was the run's last
  // outstanding chunk, the run's record is deleted in a batch queued now, so behind every
  // batch that settled one of its chunks. A no-op for chunks of no live run.
  void settle_reserved(uint64_t chunk);
  // Ids of the live runs whose outstanding chunks are all in `reserve`: chunks that were
  // never written, so at a clean close these records can go. (A run with a chunk
  // elsewhere, such as one whose copy failed and is not yet zeroed, stays for the next
  // open to clean.)
  std::vector<uint64_t> runs_within(const std::vector<uint64_t>& reserve) const;
  // Open time: run ids found in the store; new runs are numbered above them.
  void set_first_run_id(uint64_t id) { next_run_id_ = id; }

  // ---- trees ----
  Tree* tree(uint64_t id);
  Tree* add_tree(uint64_t id);
  void remove_tree(uint64_t id);

  // What an unclean shutdown left, in the background: zeroes every dirty, unreferenced
  // chunk (counted as reclaiming until then, never allocatable), deletes the dirty records
  // and reserved runs (`runs`) that covered them, and makes the chunks free. A failure
  // leaves them reclaiming, and the records for the next open. Open time only, after
  // ChunkAllocator::finish_load(); reclaim_and_wait() and closing the pool wait for it.
  // REQUIRES: dirty_unreferenced sorted, without duplicates (finish_reclaim counts each).
  void reclaim_at_open(std::vector<uint64_t> dirty_unreferenced, std::vector<uint64_t> runs);
  // Gives the filesystem back the space preallocated for chunks that were never written
  // (the reserve at a clean close). They read as zeros before and after. REQUIRES: on
  // the metadata thread (a run() job), with no refill waiting for its sync (after a
  // run_and_wait()), since preallocation runs on the sync thread.
  void release_preallocation(const std::vector<uint64_t>& chunks);

 private:
  void schedule_reclaim();
  // Starts reclaiming the retired chunks no request can still touch; done() runs once
  // they are free (or the attempt failed), on the metadata thread. REQUIRES: on it.
  void reclaim_on_thread(std::function<void()> done);
  void refill_on_thread();
  void write_reserve_piece(std::shared_ptr<const std::vector<uint64_t>> chunks, size_t from);
  static constexpr size_t kRefillPiece = 256;
  // Calls fn(device, first local chunk, count) for each run of consecutive chunks, in
  // pieces of at most kRunPieceBytes. Each fn is one fallocate (punch, zero-range,
  // preallocate), and a filesystem holds the file's inode lock for a whole call, so every
  // data write into the pool file waits for it: one 4 GiB punch held first writes for
  // 1.1-1.4 s on the development VM; with 16 MiB pieces the worst wait while a 4 GiB
  // volume is reclaimed was 22-138 ms (the rest is the virtual disk's discards).
  static constexpr uint64_t kRunPieceBytes = 16ULL << 20;
  Status for_each_run(std::vector<uint64_t> chunks,
                      const std::function<Status(PoolDevice&, uint64_t, uint64_t)>& fn);
  Status zero_chunks_durably(const std::vector<uint64_t>& chunks);
  // Preallocates the files' space of chunks entering the reserve (on the metadata sync
  // thread, once their dirty records are durable).
  void preallocate(const std::vector<uint64_t>& chunks);
  void note_unshared(uint64_t tree, uint64_t chunk_index, uint64_t pool_chunk);

  std::unique_ptr<metadb::MetaStore> store_;
  std::vector<std::unique_ptr<PoolDevice>> devices_;
  std::unique_ptr<ChunkAllocator> allocator_;
  const uint32_t chunk_size_;
  struct FreeDeleter {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, FreeDeleter> zeros_;
  uint32_t dio_alignment_ = 512;
  std::atomic<uint64_t> io_sequence_{1};

  std::mutex trees_mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Tree>> trees_;  // GUARDED_BY(trees_mu_)

  // Chunks left with one reference whose holder is not yet marked unique (settle_space).
  struct Unshared {
    uint64_t tree;
    uint64_t chunk_index;
    uint64_t pool_chunk;
  };
  std::mutex settle_mu_;            // one settle_space() at a time; before trees_mu_
  std::mutex unshared_mu_;          // leaf
  std::vector<Unshared> unshared_;  // GUARDED_BY(unshared_mu_)
  std::atomic<bool> settle_scheduled_{false};

  std::mutex limbo_mu_;
  std::vector<std::pair<uint64_t, uint64_t>> limbo_;  // GUARDED_BY(limbo_mu_): (tag, chunk)
  std::atomic<uint64_t> limbo_count_{0};
  std::atomic<bool> reclaim_scheduled_{false};
  std::atomic<uint64_t> reclaims_in_flight_{0};
  bool preallocate_failed_ = false;  // metadata sync thread only

  uint64_t next_run_id_ = 1;    // metadata thread only (refills), after open
  mutable std::mutex runs_mu_;  // leaf
  std::unordered_map<uint64_t, uint64_t> run_of_chunk_;   // GUARDED_BY(runs_mu_): outstanding
  std::unordered_map<uint64_t, uint64_t> run_remaining_;  // GUARDED_BY(runs_mu_): by run id

  // Zeroes reclaimed chunks (hole punches, device syncs), off the metadata thread.
  std::unique_ptr<WorkThread> reclaimer_;
  // Last: its thread runs jobs that use everything above, and stops first.
  std::unique_ptr<MetaWriter> writer_;
};

}  // namespace pxd
