#include "engine/snapshot_volume.h"

#include <cerrno>
#include <cstring>

#include "engine/map_extents.h"

namespace pxd {

SnapshotVolume::SnapshotVolume(PoolState& pool, uint64_t id, uint64_t size_bytes,
                               uint32_t block_size, ChunkMap<uint64_t> map,
                               std::function<void()> on_close)
    : pool_(pool),
      id_(id),
      size_(size_bytes),
      block_size_(block_size),
      map_(std::move(map)),
      on_close_(std::move(on_close)) {}

SnapshotVolume::~SnapshotVolume() {
  if (on_close_) on_close_();
}

void SnapshotVolume::step(IoRequest* req, int result) {
  if (result < 0 && req->status == 0) req->status = result;
  if (--req->pending == 0) req->done(req, req->status);
}

void SnapshotVolume::map_extents(uint64_t offset, uint64_t length,
                                 std::vector<VolumeExtent>& out) const {
  map_chunk_extents(map_, pool_.chunk_size(), size_, offset, length, out);
}

void SnapshotVolume::submit(IoRing& ring, IoRequest* req) {
  req->ring = &ring;
  req->volume_state = this;
  req->volume_step = &SnapshotVolume::step;
  req->status = 0;
  req->pending = 1;
  switch (req->op) {
    case IoOp::kFlush:
      break;  // nothing is ever written
    case IoOp::kWrite:
    case IoOp::kDiscard:
    case IoOp::kWriteZeroes:
      req->status = -EROFS;
      break;
    case IoOp::kRead: {
      if (req->length == 0 || req->offset % block_size_ || req->length % block_size_ ||
          req->offset > size_ || req->length > size_ - req->offset || req->buffer == nullptr ||
          reinterpret_cast<uintptr_t>(req->buffer) % pool_.direct_io_alignment() != 0) {
        req->status = -EINVAL;
        break;
      }
      const uint32_t cs = pool_.chunk_size();
      uint64_t off = req->offset, left = req->length;
      std::byte* buf = req->buffer;
      while (left > 0) {
        uint64_t ci = off / cs;
        uint32_t within = static_cast<uint32_t>(off % cs);
        uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(cs - within, left));
        const uint64_t* chunk = map_.find(ci);
        if (!chunk) {
          std::memset(buf, 0, n);
        } else {
          auto loc = pool_.locate(*chunk);
          ++req->pending;
          ring.read(loc.fd, buf, n, loc.offset + within, req);
        }
        off += n;
        left -= n;
        buf += n;
      }
      break;
    }
  }
  ring.defer(req, 0);
}

}  // namespace pxd
