// engine/tree.h: the in-memory metadata of one volume and its snapshots (a "tree").
//
// Every volume owns a tree. Its live map says where each written chunk of the volume is;
// its history holds the entries that later writes superseded but that some snapshot
// still sees. A snapshot is a generation number of the tree: it sees entry e iff
// e.birth <= snapshot < e.death (live entries have death = infinity). So a snapshot costs
// one record, reads of the live volume never look at history, and an opened snapshot
// materializes its own flat map: read cost does not depend on how many snapshots exist.
// See doc/engine.md.
//
// Thread safety: every field is guarded by `mu` unless marked otherwise. Lock order:
// Pool control mutex, then PoolState::trees_mu_, then Tree::mu, then allocator and limbo
// mutexes.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "engine/chunk_allocator.h"
#include "engine/volume.h"

namespace pxd {

struct PendingChange;  // an allocation, copy-on-write or unmap being committed

struct LiveEntry {
  uint64_t pool_chunk = kNoChunk;  // set from the start, also while `pending` allocates it
  uint32_t birth = 0;
  // Came from a clone or restore, so another entry may name the same chunk; cleared once
  // a write sees the reference count at one.
  bool maybe_shared = false;
  PendingChange* pending = nullptr;
};

struct HistoryEntry {
  uint64_t pool_chunk = 0;
  uint32_t death = 0;
};

struct Tree {
  explicit Tree(uint64_t tree_id) : id(tree_id) {}

  const uint64_t id;
  std::mutex mu;
  uint32_t generation = 1;  // the live generation; every snapshot's is smaller
  std::unordered_map<uint64_t, LiveEntry> live;
  std::map<std::pair<uint64_t, uint32_t>, HistoryEntry> history;  // (chunk index, birth)
  std::map<uint32_t, uint64_t> snapshots;                         // generation -> object id

  // Requests in flight, oldest first (IoRequest::sequence order): a retired chunk is
  // reused only after every request that started before its retirement has finished.
  IoRequest* active_head = nullptr;
  IoRequest* active_tail = nullptr;
  // In-place writes in flight by the generation they were issued under. A copy-on-write
  // waits until none from an older generation remains, so a write issued before a
  // snapshot cannot land in the old chunk after it was copied.
  std::map<uint32_t, uint32_t> inplace_writes;
  IoRequest* drain_waiters = nullptr;
  // Metadata commit sequence of the latest change to this tree (for FUA).
  uint64_t last_commit = 0;

  // REQUIRES: mu held (or no I/O running).
  bool snapshot_in(uint32_t lo, uint32_t hi) const {
    auto it = snapshots.lower_bound(lo);
    return it != snapshots.end() && it->first < hi;
  }
  uint32_t newest_snapshot() const { return snapshots.empty() ? 0 : snapshots.rbegin()->first; }
  uint64_t oldest_active() const { return active_head ? active_head->sequence : UINT64_MAX; }

  void track(IoRequest* req) {
    req->next_waiter = nullptr;
    req->active_prev = active_tail;
    req->active_next = nullptr;
    if (active_tail)
      active_tail->active_next = req;
    else
      active_head = req;
    active_tail = req;
  }
  void untrack(IoRequest* req) {
    if (req->active_prev)
      req->active_prev->active_next = req->active_next;
    else
      active_head = req->active_next;
    if (req->active_next)
      req->active_next->active_prev = req->active_prev;
    else
      active_tail = req->active_prev;
    req->active_prev = req->active_next = nullptr;
  }
};

}  // namespace pxd
