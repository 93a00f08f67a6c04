// Space accounting of a tree: how each change to its maps moves its TreeSpace counts.
//
// What the counts must answer is defined by Pool::recount_space (the walk): the volume's
// exclusive chunks are its live entries born after the newest snapshot whose chunk has one
// reference; a snapshot's exclusive chunks are the history entries it alone sees whose
// chunk has one reference; everything else an object sees is shared. Entries carry
// `unique` in place of "has one reference" (see LiveEntry), and exactly one snapshot seeing
// a history entry changes only when a snapshot goes (forget_snapshot): a new snapshot is
// newer than every history entry's death, so it sees none of them.
#include "engine/tree.h"

#include <cassert>

namespace pxd {
namespace {

void add_count(std::map<uint32_t, uint64_t>& counts, uint32_t key, int sign) {
  if (sign > 0) {
    ++counts[key];
    return;
  }
  auto it = counts.find(key);
  assert(it != counts.end() && it->second > 0);
  if (it == counts.end()) return;
  if (--it->second == 0) counts.erase(it);
}

}  // namespace

void Tree::count_live(const LiveEntry& e, int sign) {
  add_count(space.births, e.birth, sign);
  if (e.unique) add_count(space.unique_live, e.birth, sign);
}

void Tree::count_history(uint32_t birth, const HistoryEntry& h, int sign) {
  add_count(space.births, birth, sign);
  add_count(space.deaths, h.death, sign);
  if (!h.unique) return;
  if (uint32_t only = sole_snapshot(birth, h.death))
    add_count(space.snapshot_exclusive, only, sign);
}

LiveEntry& Tree::add_live(uint64_t ci, const LiveEntry& e) {
  auto [slot, inserted] = live.emplace(ci, e);
  assert(inserted);
  if (!inserted) {
    count_live(*slot, -1);
    *slot = e;
  }
  count_live(e, +1);
  return *slot;
}

void Tree::replace_live(LiveEntry& slot, const LiveEntry& e) {
  count_live(slot, -1);
  slot = e;
  count_live(slot, +1);
}

void Tree::erase_live(uint64_t ci) {
  LiveEntry* e = live.find(ci);
  assert(e);
  if (!e) return;
  if (e->pending) changes.erase(ci);
  count_live(*e, -1);
  live.erase(ci);
}

void Tree::erase_live_if(const std::function<bool(uint64_t ci, LiveEntry& e)>& pred) {
  live.erase_if([&](uint64_t ci, LiveEntry& e) {
    if (!pred(ci, e)) return false;
    count_live(e, -1);
    return true;
  });
}

void Tree::put_history(uint64_t ci, uint32_t birth, const HistoryEntry& h) {
  auto [it, inserted] = history.emplace(std::make_pair(ci, birth), h);
  if (!inserted) {
    // Only after a failed commit (the pool is read-only) can the same entry end twice.
    count_history(birth, it->second, -1);
    it->second = h;
  }
  count_history(birth, h, +1);
}

Tree::HistoryMap::iterator Tree::erase_history(HistoryMap::iterator it) {
  count_history(it->first.second, it->second, -1);
  return history.erase(it);
}

void Tree::set_unique(LiveEntry& e, bool unique) {
  if (e.unique == unique) return;
  count_live(e, -1);
  e.unique = unique;
  count_live(e, +1);
}

void Tree::set_unique(HistoryMap::iterator it, bool unique) {
  if (it->second.unique == unique) return;
  count_history(it->first.second, it->second, -1);
  it->second.unique = unique;
  count_history(it->first.second, it->second, +1);
}

void Tree::set_unique(uint64_t ci, uint64_t pool_chunk, bool unique) {
  if (LiveEntry* e = live.find(ci); e && e->pool_chunk == pool_chunk) set_unique(*e, unique);
  for (auto it = history.lower_bound({ci, 0}); it != history.end() && it->first.first == ci; ++it) {
    if (it->second.pool_chunk == pool_chunk) set_unique(it, unique);
  }
}

void Tree::forget_snapshot(
    uint32_t generation,
    const std::function<void(uint64_t ci, uint32_t birth, const HistoryEntry&)>& unseen) {
  // The entries the snapshot alone saw are erased below with it, so its own count goes.
  snapshots.erase(generation);
  space.snapshot_exclusive.erase(generation);
  for (auto it = history.begin(); it != history.end();) {
    const uint32_t birth = it->first.second;
    const HistoryEntry& h = it->second;
    if (!snapshot_in(birth, h.death)) {
      // Counted under no snapshot now: erase_history takes back only births and deaths.
      unseen(it->first.first, birth, h);
      it = erase_history(it);
      continue;
    }
    // Seen by `generation` and one other snapshot before: now that one's alone.
    if (h.unique && birth <= generation && generation < h.death) {
      if (uint32_t only = sole_snapshot(birth, h.death))
        add_count(space.snapshot_exclusive, only, +1);
    }
    ++it;
  }
}

uint32_t Tree::sole_snapshot(uint32_t lo, uint32_t hi) const {
  auto it = snapshots.lower_bound(lo);
  if (it == snapshots.end() || it->first >= hi) return 0;
  auto next = std::next(it);
  if (next != snapshots.end() && next->first < hi) return 0;
  return it->first;
}

SpaceChunks Tree::volume_space() const {
  SpaceChunks s;
  for (auto it = space.unique_live.upper_bound(newest_snapshot()); it != space.unique_live.end();
       ++it)
    s.exclusive += it->second;
  s.shared = live.size() - s.exclusive;
  return s;
}

SpaceChunks Tree::snapshot_space(uint32_t snapshot_generation) const {
  // It sees the entries born at or before it that had not died by then; an entry that died
  // at or before it was born before that too, so the difference never goes below zero.
  uint64_t seen = 0;
  for (const auto& [birth, n] : space.births) {
    if (birth > snapshot_generation) break;
    seen += n;
  }
  for (const auto& [death, n] : space.deaths) {
    if (death > snapshot_generation) break;
    seen -= n;
  }
  SpaceChunks s;
  auto it = space.snapshot_exclusive.find(snapshot_generation);
  s.exclusive = it == space.snapshot_exclusive.end() ? 0 : it->second;
  s.shared = seen - s.exclusive;
  return s;
}

}  // namespace pxd
