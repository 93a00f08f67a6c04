// engine/pending_change.h: one chunk of a thin volume whose mapping is changing.
//
// Private to the engine (thin_volume.cc makes them; the Pool reads them to see a volume
// as of now, see Pool::view_of). A PendingChange exists from the moment a write or discard
// decides that chunk `chunk_index` needs a new mapping (a fresh chunk, a copy, or none)
// until the metadata batch that records it is written. While it exists, the tree's live
// entry points at it; other requests that would change the same chunk wait in `waiters`.
//
// Thread safety: fields are guarded by the tree's mutex, except the copy state and
// buffer, which only the ring thread doing the copy touches.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/chunk_allocator.h"
#include "engine/io_ring.h"
#include "engine/volume.h"

namespace pxd {

class ThinVolume;

struct PendingChange final : IoCompletion {
  enum class Kind { kAllocate, kCopy, kUnmap };
  enum class CopyState { kReading, kWriting };

  PendingChange(Kind k, ThinVolume* v, uint64_t index, uint32_t generation)
      : kind(k), volume(v), chunk_index(index), birth(generation) {}

  void on_complete(int result) override;

  const Kind kind;
  ThinVolume* const volume;
  const uint64_t chunk_index;
  const uint32_t birth;  // the new entry's generation, and the old entry's death

  // The batch is queued: for kCopy and kUnmap the old entry has ended (and its chunk may
  // have lost its last reference), though the live map shows it until the commit is done.
  bool queued = false;

  uint64_t new_chunk = kNoChunk;  // kAllocate, kCopy
  uint64_t old_chunk = kNoChunk;  // kCopy, kUnmap
  uint32_t old_birth = 0;

  // kCopy: the copy runs on the ring of the request that started it.
  IoRing* ring = nullptr;
  CopyState copy_state = CopyState::kReading;
  std::byte* buffer = nullptr;
  uint32_t overlay_within = 0;
  uint32_t overlay_length = 0;
  const std::byte* overlay = nullptr;

  // kCopy, kUnmap: complete one part each once committed. (Writes into a kAllocate
  // complete with their data; flush and FUA wait for the commit through the metadata sync.)
  std::vector<IoRequest*> commit_waiters;
  IoRequest* waiters = nullptr;  // re-dispatch once committed
  std::vector<uint64_t> freed;   // chunks this change left unreferenced
};

}  // namespace pxd
