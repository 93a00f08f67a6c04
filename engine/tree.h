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
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "engine/chunk_allocator.h"
#include "engine/chunk_map.h"
#include "engine/volume.h"

namespace pxd {

struct PendingChange;  // an allocation, copy-on-write or unmap being committed

// 16 bytes: the engine holds one per mapped chunk (see chunk_map.h).
struct LiveEntry {
  uint64_t pool_chunk = kNoChunk;  // set from the start, also while `pending` allocates it
  uint32_t birth = 0;
  // Came from a clone or restore, so another entry may name the same chunk; cleared once
  // a write sees the reference count at one.
  bool maybe_shared = false;
  // Space accounting counts this entry as its chunk's only reference. Set only while the
  // count is one (another reference clears it at once); when another tree drops the
  // second-last reference, it is set later, by PoolState::settle_space().
  bool unique = false;
  // A change (allocation, copy-on-write, unmap) of this chunk is being committed; the
  // tree's `changes` holds it.
  bool pending = false;
};
static_assert(sizeof(LiveEntry) == 16);

struct HistoryEntry {
  uint64_t pool_chunk = 0;
  uint32_t death = 0;
  bool unique = false;  // as in LiveEntry
};

// Counts of a tree's entries by generation, kept as the maps change, from which each
// object's exclusive and shared chunks follow without a walk of the extents (see
// doc/engine.md, "Space accounting"). Keys whose count falls to zero are removed.
struct TreeSpace {
  std::map<uint32_t, uint64_t> births;       // every entry, live or history, by birth
  std::map<uint32_t, uint64_t> deaths;       // history entries, by death
  std::map<uint32_t, uint64_t> unique_live;  // live entries with `unique`, by birth
  // History entries with `unique` that exactly one snapshot sees, by that snapshot.
  std::map<uint32_t, uint64_t> snapshot_exclusive;
};

struct SpaceChunks {
  uint64_t exclusive = 0;  // chunks only this object sees
  uint64_t shared = 0;     // chunks it sees that something else sees too
};

struct Tree {
  using LiveMap = ChunkMap<LiveEntry>;
  using HistoryMap = std::map<std::pair<uint64_t, uint32_t>, HistoryEntry>;

  explicit Tree(uint64_t tree_id) : id(tree_id) {}

  const uint64_t id;
  std::mutex mu;
  uint32_t generation = 1;  // the live generation; every snapshot's is smaller
  // `live` and `history` are read freely under `mu` but changed only through the methods
  // below, which keep `space` (or cleared with the whole tree). A snapshot is added to
  // `snapshots` directly (that changes no count, see tree.cc) and removed by
  // forget_snapshot().
  LiveMap live;
  HistoryMap history;                      // (chunk index, birth)
  std::map<uint32_t, uint64_t> snapshots;  // generation -> object id
  TreeSpace space;
  // The change of each live entry with `pending` set, by chunk index. Few: only those
  // being committed.
  std::unordered_map<uint64_t, PendingChange*> changes;

  // ---- changes to the maps (REQUIRES: mu held) ----
  // Maps chunk index `ci`, which has no live entry. The reference, like any into `live`,
  // is valid until the next add or erase.
  LiveEntry& add_live(uint64_t ci, const LiveEntry& e);
  // Replaces a live entry with the outcome of its pending change.
  void replace_live(LiveEntry& slot, const LiveEntry& e);
  // Unmaps `ci`, which must be mapped (and forgets its change, if one is pending).
  void erase_live(uint64_t ci);
  // Unmaps every entry for which pred(ci, entry) is true; pred may change entries (and
  // their counts, through set_unique) but not add or erase any.
  void erase_live_if(const std::function<bool(uint64_t ci, LiveEntry& e)>& pred);
  // The pending change of `ci`: set_change marks the live entry and records `p`;
  // end_change forgets it (and unmarks the entry, if there still is one).
  PendingChange* change_at(uint64_t ci) const {
    auto it = changes.find(ci);
    return it == changes.end() ? nullptr : it->second;
  }
  void set_change(uint64_t ci, LiveEntry& e, PendingChange* p) {
    e.pending = true;
    changes[ci] = p;
  }
  void end_change(uint64_t ci) {
    changes.erase(ci);
    if (LiveEntry* e = live.find(ci)) e->pending = false;
  }
  // Adds (or replaces) history entry (ci, birth).
  void put_history(uint64_t ci, uint32_t birth, const HistoryEntry& h);
  HistoryMap::iterator erase_history(HistoryMap::iterator it);
  // Sets `unique` on every entry at `ci` that names `pool_chunk`: several can, for a
  // moment, while a copy or unmap is queued (the old live entry and its history version).
  void set_unique(uint64_t ci, uint64_t pool_chunk, bool unique);
  void set_unique(LiveEntry& e, bool unique);
  void set_unique(HistoryMap::iterator it, bool unique);
  // Forgets snapshot `generation`; history entries no snapshot sees any more are passed
  // to `unseen` and erased.
  void forget_snapshot(
      uint32_t generation,
      const std::function<void(uint64_t ci, uint32_t birth, const HistoryEntry&)>& unseen);

  // Memory of the maps (REQUIRES: mu held): exact for `live`; `history` counted at a
  // typical red-black tree node per entry.
  size_t map_bytes() const {
    constexpr size_t kHistoryNode = 32 + sizeof(HistoryMap::value_type);
    return live.memory_bytes() + history.size() * kHistoryNode;
  }

  // ---- space (REQUIRES: mu held); O(generations in use), not O(extents) ----
  SpaceChunks volume_space() const;
  SpaceChunks snapshot_space(uint32_t snapshot_generation) const;
  // The one snapshot in [lo, hi), or 0 if there is none or more than one.
  uint32_t sole_snapshot(uint32_t lo, uint32_t hi) const;

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

 private:
  void count_live(const LiveEntry& e, int sign);
  void count_history(uint32_t birth, const HistoryEntry& h, int sign);
};

}  // namespace pxd
