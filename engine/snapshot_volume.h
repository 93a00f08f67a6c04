// engine/snapshot_volume.h: the read-only view of a snapshot.
//
// At open the snapshot's map is materialized from the tree (every entry with
// birth <= generation < death), so a read is one map lookup however many snapshots and
// generations the tree holds. The view cannot change while open: entries a snapshot sees
// are never rewritten, and the Pool refuses to delete an open snapshot.
//
// Thread safety: immutable after construction; submit() from any ring thread.
#pragma once

#include <cstdint>
#include <functional>

#include "engine/chunk_map.h"
#include "engine/pool_state.h"
#include "engine/volume.h"

namespace pxd {

class SnapshotVolume final : public Volume {
 public:
  SnapshotVolume(PoolState& pool, uint64_t id, uint64_t size_bytes, uint32_t block_size,
                 ChunkMap<uint64_t> map, std::function<void()> on_close);
  ~SnapshotVolume() override;

  uint64_t id() const override { return id_; }
  uint64_t size_bytes() const override { return size_; }
  uint32_t block_size() const override { return block_size_; }
  bool read_only() const override { return true; }
  void submit(IoRing& ring, IoRequest* req) override;
  void map_extents(uint64_t offset, uint64_t length, std::vector<VolumeExtent>& out) const override;

 private:
  static void step(IoRequest* req, int result);

  PoolState& pool_;
  const uint64_t id_;
  const uint64_t size_;
  const uint32_t block_size_;
  const ChunkMap<uint64_t> map_;  // chunk index -> pool chunk
  std::function<void()> on_close_;
};

}  // namespace pxd
