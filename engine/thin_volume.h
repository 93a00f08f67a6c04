// engine/thin_volume.h: the writable view of a tree (a thin volume's I/O path).
//
// Reads look the chunk up in the tree's live map (one hash lookup, whatever the number
// of snapshots) and read the pool directly. A write to a chunk the volume owns alone goes
// in place with no metadata write. A write to an unmapped chunk takes a chunk from the
// allocation reserve (known to read as zeros), queues the new extent's commit and writes
// the data; it completes once the data is in the chunk, without waiting for the commit,
// and is readable at once. A flush or FUA write syncs the metadata up to everything
// queued before it (doc/engine.md has why this order is safe). A write to a shared chunk
// (seen by a snapshot, or named by a clone) copies the chunk with the new data overlaid,
// makes the copy durable, then commits the new extent. While a chunk's mapping changes
// it has a PendingChange; requests that would change the same chunk wait for it and are
// re-dispatched on their own ring afterwards.
//
// Thread safety: submit() from any thread that owns the ring it passes. Internal state is
// the tree's, under Tree::mu. Releasing the last handle may wait briefly for the metadata
// thread (extent commits of completed first writes still queued): never release it on
// the metadata thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "engine/pending_change.h"
#include "engine/pool_state.h"
#include "engine/tree.h"
#include "engine/volume.h"

namespace pxd {

class ThinVolume final : public Volume {
 public:
  // The Pool counts open handles in the deleter of the shared_ptr it hands out.
  ThinVolume(PoolState& pool, Tree& tree, uint64_t id, uint64_t size_bytes, uint32_t block_size);
  // Waits for the commits of first writes that already completed (see .cc).
  ~ThinVolume() override;

  uint64_t id() const override { return id_; }
  uint64_t size_bytes() const override { return size_.load(std::memory_order_acquire); }
  uint32_t block_size() const override { return block_size_; }
  bool read_only() const override { return false; }
  void submit(IoRing& ring, IoRequest* req) override;
  void map_extents(uint64_t offset, uint64_t length, std::vector<VolumeExtent>& out) const override;

  // Grows the device (the Pool has committed the new size).
  void set_size(uint64_t size_bytes) { size_.store(size_bytes, std::memory_order_release); }

 private:
  friend struct PendingChange;
  struct Segment;

  static void step(IoRequest* req, int result);
  // One of the metadata commits `req` waits for is done (on the metadata thread).
  static void commit_done(IoRequest* req, int error);
  // The ring's part of `req` is done, or its last commit was: finishes it unless a commit
  // (or the ring's part) is still outstanding. On the ring's thread.
  void ring_part_done(IoRequest* req);
  void start_read(IoRequest* req);
  void start_flush(IoRequest* req);
  // Classifies every chunk the request touches and either starts all of its work or
  // parks it (whole) behind whatever it must wait for. Runs on the request's ring.
  void dispatch_mutation(IoRequest* req);
  void finish(IoRequest* req);
  void complete(IoRequest* req);
  void redispatch_later(IoRequest* req);
  void finalize_change(PendingChange* change, const Status& status);
  void fail_change(PendingChange* change, int error);
  // Queues the change's metadata batch; commit_change takes the tree lock, queue_commit
  // REQUIRES: tree_.mu held. With `ring`, the metadata writer is woken only once that
  // ring has submitted its queued SQEs (the data write that goes with the batch).
  void commit_change(PendingChange* change);
  void queue_commit(PendingChange* change, IoRing* ring = nullptr);
  void copy_step(PendingChange* change, int result);
  PendingChange* new_change(PendingChange::Kind kind, uint64_t chunk_index, uint32_t generation);
  void end_change(PendingChange* change);

  PoolState& pool_;
  Tree& tree_;
  const uint64_t id_;
  std::atomic<uint64_t> size_;
  const uint32_t block_size_;
  std::atomic<uint32_t> changes_in_flight_{0};  // PendingChanges not yet finalized
};

}  // namespace pxd
