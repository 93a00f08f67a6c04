// engine/thin_volume.h: the writable view of a tree (a thin volume's I/O path).
//
// Reads look the chunk up in the tree's live map (one hash lookup, whatever the number
// of snapshots) and read the pool directly. A write to a chunk the volume owns alone goes
// in place with no metadata write. A write to an unmapped chunk takes a chunk from the
// allocation reserve, writes the data and commits the new extent (in parallel: a fresh
// chunk reads as zeros, so the order does not matter for crash safety). A write to a
// shared chunk (seen by a snapshot, or named by a clone) copies the chunk with the new
// data overlaid, makes the copy durable, then commits the new extent. While such a change
// is being committed the chunk has a PendingChange; requests that would change the same
// chunk wait for it and are re-dispatched on their own ring afterwards.
//
// Thread safety: submit() from any thread that owns the ring it passes. Internal state is
// the tree's, under Tree::mu.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "engine/pool_state.h"
#include "engine/tree.h"
#include "engine/volume.h"

namespace pxd {

class ThinVolume final : public Volume {
 public:
  // The Pool counts open handles in the deleter of the shared_ptr it hands out.
  ThinVolume(PoolState& pool, Tree& tree, uint64_t id, uint64_t size_bytes, uint32_t block_size);

  uint64_t id() const override { return id_; }
  uint64_t size_bytes() const override { return size_.load(std::memory_order_acquire); }
  uint32_t block_size() const override { return block_size_; }
  bool read_only() const override { return false; }
  void submit(IoRing& ring, IoRequest* req) override;
  void map_extents(uint64_t offset, uint64_t length,
                   std::vector<VolumeExtent>& out) const override;

  // Grows the device (the Pool has committed the new size).
  void set_size(uint64_t size_bytes) { size_.store(size_bytes, std::memory_order_release); }

 private:
  friend struct PendingChange;
  struct Segment;

  static void step(IoRequest* req, int result);
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
  void commit_change(PendingChange* change);
  void copy_step(PendingChange* change, int result);

  PoolState& pool_;
  Tree& tree_;
  const uint64_t id_;
  std::atomic<uint64_t> size_;
  const uint32_t block_size_;
};

}  // namespace pxd
