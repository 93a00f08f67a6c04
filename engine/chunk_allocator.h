// engine/chunk_allocator.h: which pool chunks are referenced, free or being reclaimed.
//
// A chunk is identified by a pool-wide number: device d's chunks are numbered from
// base(d). Reference counts are not persisted: open() derives them from the extent
// entries (a chunk's count is the number of extent entries, live or historical, in any
// tree, that name it). A chunk with count zero is free, except chunks that may hold stale
// data, which are "dirty" (persisted as the metadata store's dirty set) until zeroed.
//
// Each reference is counted with the tree that holds it (its referrer): the allocator
// keeps the XOR of a chunk's referrers' ids beside the count, so when a chunk is left with
// one reference it can say whose that is (the XOR of one id is the id). Space accounting
// needs that to learn which object a chunk has just become exclusive to.
//
// Allocation never hands out a chunk that could show old data after a crash: the hot
// path allocates only from a *reserve* of chunks that are known zero and already
// persisted as dirty (so that a crash before their mapping commits re-zeroes them at
// open). The reserve is refilled off the hot path by the metadata thread (see Pool).
//
// Thread safety: every method may be called from any thread; an internal mutex guards the
// state, and no method blocks on I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "common/status.h"

namespace pxd {

inline constexpr uint64_t kNoChunk = UINT64_MAX;

class ChunkAllocator {
 public:
  // device_chunk_counts[d] is the number of chunks of device d. The reserve starts at
  // initial_reserve chunks and doubles, up to max_reserve (both clamped to [64, 65536]), each time
  // callers had to wait for it, and when a refill lands with the reserve below a quarter of its
  // size (it barely kept up: each refill costs a metadata sync, so a reserve that drains fast
  // should be refilled in fewer, larger steps).
  explicit ChunkAllocator(const std::vector<uint64_t>& device_chunk_counts,
                          size_t max_reserve = 4096, size_t initial_reserve = 64);

  uint64_t capacity_chunks() const { return total_; }
  // Device index and chunk number within it.
  std::pair<uint32_t, uint64_t> locate(uint64_t chunk) const;
  // Sorts `chunks` and calls fn(device, first chunk within it, count) for each run of
  // consecutive chunks on one device, in pieces of at most max_count chunks; stops at the
  // first error fn returns.
  Status for_each_run(std::vector<uint64_t> chunks, uint64_t max_count,
                      const std::function<Status(uint32_t, uint64_t, uint64_t)>& fn) const;

  // ---- open time (before any I/O) ----
  // Counts one reference, held by tree `referrer`, found in the metadata. Returns false if
  // the chunk is out of range.
  bool load_reference(uint64_t chunk, uint64_t referrer);
  // Marks the chunks that are neither referenced nor dirty as free. Call once, after
  // load_reference() for every entry and before anything else.
  void finish_load(const std::vector<uint64_t>& dirty_unreferenced);

  // ---- hot path ----
  enum class AllocStatus { kOk, kWait, kNoSpace };
  // Takes one chunk from the reserve, with reference count 1 held by `referrer`. kWait: the reserve
  // is empty but free chunks exist; `on_refilled` runs (on the refill thread) once it is refilled.
  // kNoSpace: no free chunk at all.
  AllocStatus allocate(uint64_t* chunk, uint64_t referrer, std::function<void()> on_refilled);
  // Gives back a chunk allocate() returned that never got a reference in the metadata.
  void unallocate(uint64_t chunk);
  // Adds a reference held by tree `referrer`; returns the new count.
  uint32_t add_reference(uint64_t chunk, uint64_t referrer);
  struct Dropped {
    uint32_t left = 0;           // references left
    uint64_t last_referrer = 0;  // when one is left: the tree that holds it
  };
  // Drops a reference held by tree `referrer`. At zero the chunk becomes reclaiming: the
  // caller must record it dirty in the same batch and hand it to the reclaimer.
  Dropped drop_reference(uint64_t chunk, uint64_t referrer);
  uint32_t references(uint64_t chunk) const;

  // ---- refill and reclaim (metadata thread) ----
  // True when the reserve is below its low mark and no refill is running; the caller
  // then runs take_for_reserve() / add_to_reserve().
  bool wants_refill();
  // Free chunks to top up the reserve, leaving the free set. They are neither free nor reserved
  // until add_to_reserve() or return_free().
  std::vector<uint64_t> take_for_reserve();
  // Makes chunks allocatable (their dirty records are persisted) and runs the waiters
  // (a refill adds its chunks in pieces).
  void add_to_reserve(const std::vector<uint64_t>& chunks);
  // Gives back chunks take_for_reserve() returned when the refill could not persist them.
  void return_free(const std::vector<uint64_t>& chunks);
  // Reclaiming chunks that are now zeroed (durably) become free.
  void finish_reclaim(const std::vector<uint64_t>& chunks);
  // Refill finished (whether or not it added chunks): clears the running flag and runs
  // waiters that can now proceed or must see kNoSpace.
  void finish_refill();
  bool refill_running() const;

  struct Usage {
    uint64_t capacity = 0;    // chunks
    uint64_t referenced = 0;  // count > 0
    uint64_t free = 0;        // free or reserved: allocatable
    uint64_t reclaiming = 0;  // dropped to zero, not yet zeroed
  };
  Usage usage() const;
  // The reserve, for persisting across a clean close as still-dirty (it is already).
  std::vector<uint64_t> reserve_snapshot() const;

 private:
  void set_free(uint64_t chunk, bool free);  // REQUIRES: mu_ held
  size_t reserve_target() const;             // REQUIRES: mu_ held

  mutable std::mutex mu_;
  std::vector<uint64_t> bases_;  // first chunk number of each device
  uint64_t total_ = 0;
  const size_t max_reserve_batch_;              // the reserve_batch_ limit
  std::vector<uint32_t> refs_;                  // GUARDED_BY(mu_)
  std::vector<uint64_t> referrers_;             // GUARDED_BY(mu_): XOR of the referrers' ids
  std::vector<uint64_t> free_bits_;             // GUARDED_BY(mu_): bit set = free
  uint64_t free_count_ = 0;                     // GUARDED_BY(mu_)
  uint64_t cursor_ = 0;                         // GUARDED_BY(mu_): next-fit search start
  std::vector<uint64_t> reserve_;               // GUARDED_BY(mu_)
  uint64_t referenced_ = 0;                     // GUARDED_BY(mu_)
  uint64_t reclaiming_ = 0;                     // GUARDED_BY(mu_)
  uint64_t in_refill_ = 0;                      // GUARDED_BY(mu_): taken, not yet reserved
  bool refill_running_ = false;                 // GUARDED_BY(mu_)
  bool grew_in_refill_ = false;                 // GUARDED_BY(mu_): at most once per refill
  size_t reserve_batch_;                        // GUARDED_BY(mu_): grows when callers wait
  std::vector<std::function<void()>> waiters_;  // GUARDED_BY(mu_)
};

}  // namespace pxd
