// engine/volume.h: the block I/O contract every frontend speaks.
//
// A Volume is a range of bytes with a block size, read and written asynchronously. The
// ublk and NBD frontends, the replication layer and the tests all see only this class, so
// a frontend does not know whether a volume is a local thin volume, a snapshot, a
// replicated volume or a fault-injecting wrapper.
//
// The contract:
//  * submit(ring, req) starts `req`. The caller owns `ring` (it runs ring.run_once() on
//    the calling thread) and keeps `req` alive and untouched until req->done runs.
//  * req->done(req, result) runs exactly once, on the ring's thread, from a later
//    run_once(), never from inside submit(): result is 0 on success or a negative errno
//    (-EINVAL bad range or alignment, -EROFS write to a read-only volume, -ENOSPC the pool
//    has no chunk for a write that needs one, -EIO a device failed, -ESHUTDOWN the volume
//    is closing).
//  * Offsets and lengths are multiples of block_size(); length > 0 except for kFlush; the
//    range ends at or before size_bytes(). Buffers are aligned to kIoBufferAlignment.
//  * The volume has a volatile write cache: a completed write is readable at once but
//    may be lost in a crash until a kFlush completes (everything completed before the
//    flush was submitted is then durable) or unless the write had kIoFua.
//  * Unwritten ranges read as zeros. kDiscard and kWriteZeroes both make the range read
//    as zeros; whole chunks in the range go back to the pool.
//  * Requests run concurrently; overlapping requests in flight at once may complete in
//    any order, and a read overlapping an in-flight write returns old or new data.
//
// Thread safety: submit() may be called concurrently from several threads, each with its
// own ring. size_bytes() may change (grow) while requests run.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/io_ring.h"

namespace pxd {

inline constexpr size_t kIoBufferAlignment = 4096;

enum class IoOp : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };

enum IoFlags : uint32_t {
  kIoFua = 1u << 0,  // kWrite: durable when it completes
};

// A std::atomic that copies: the owner of an IoRequest resets it by assigning a fresh one
// (never while it is in flight), which copies the value.
template <typename T>
class CopyableAtomic : public std::atomic<T> {
 public:
  constexpr CopyableAtomic(T value = T()) noexcept : std::atomic<T>(value) {}
  CopyableAtomic(const CopyableAtomic& other) noexcept
      : std::atomic<T>(other.load(std::memory_order_relaxed)) {}
  CopyableAtomic& operator=(const CopyableAtomic& other) noexcept {
    this->store(other.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }
};

// One block request. Fields above the line are the caller's; below are the volume's
// while the request is in flight.
struct IoRequest final : IoCompletion {
  IoOp op = IoOp::kRead;
  uint32_t flags = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::byte* buffer = nullptr;  // kRead, kWrite: `length` bytes
  void (*done)(IoRequest* req, int result) = nullptr;
  void* user = nullptr;

  // ---- owned by the volume while in flight ----
  IoRing* ring = nullptr;
  void* volume_state = nullptr;
  void (*volume_step)(IoRequest* req, int result) = nullptr;
  uint32_t pending = 0;
  int32_t status = 0;
  uint64_t sequence = 0;
  uint32_t generation = 0;
  uint32_t inplace_segments = 0;
  uint32_t volume_flags = 0;
  IoRequest* next_waiter = nullptr;
  IoRequest* active_prev = nullptr;
  IoRequest* active_next = nullptr;
  // Metadata commits the request waits for, which complete on the metadata thread, plus
  // one for the ring's own part (`pending`). Whichever side takes it to zero finishes the
  // request: the ring inline, or the metadata thread through IoRing::post. So a commit
  // done before the request's data costs the ring no wake-up.
  CopyableAtomic<uint32_t> remote_pending{0};
  CopyableAtomic<int32_t> remote_status{0};  // the first error of those commits

  void on_complete(int result) override { volume_step(this, result); }
};

// A run of a volume's address space that is either allocated (backed by pool data) or a
// hole (reads as zeros without touching the pool).
struct VolumeExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool allocated = false;
};

class Volume {
 public:
  virtual ~Volume() = default;

  virtual uint64_t id() const = 0;
  virtual uint64_t size_bytes() const = 0;
  virtual uint32_t block_size() const = 0;
  virtual bool read_only() const = 0;

  virtual void submit(IoRing& ring, IoRequest* req) = 0;

  // Appends to `out` the allocation map of [offset, offset + length), clipped to the
  // volume's size, at chunk granularity, adjacent runs of the same kind merged. A chunk
  // whose first write is still in flight counts as allocated. Synchronous and cheap (the
  // in-memory map, no I/O); may be called from any thread. Used by NBD block status and
  // sparse export.
  virtual void map_extents(uint64_t offset, uint64_t length,
                           std::vector<VolumeExtent>& out) const = 0;
};

// Appends [offset, offset + length) to `out`, merging with the last run if it is of the
// same kind and adjacent. Shared by the Volume implementations.
inline void append_extent(std::vector<VolumeExtent>& out, uint64_t offset, uint64_t length,
                          bool allocated) {
  if (length == 0) return;
  if (!out.empty()) {
    VolumeExtent& last = out.back();
    if (last.allocated == allocated && last.offset + last.length == offset) {
      last.length += length;
      return;
    }
  }
  out.push_back({offset, length, allocated});
}

}  // namespace pxd
