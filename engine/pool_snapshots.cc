// Snapshots, clones, restore and space accounting (per object, and the pool's usage): the
// parts of Pool that work on a tree's generations and its maps. See doc/engine.md for the model.
#include <ctime>
#include <future>

#include "engine/pending_change.h"
#include "engine/pool.h"
#include "engine/pool_state.h"

namespace pxd {

ChunkMap<uint64_t> Pool::view_of(const Tree& tree, uint32_t generation) {
  ChunkMap<uint64_t> map;
  tree.live.for_each([&](uint64_t ci, const LiveEntry& e) {
    uint64_t chunk = e.pool_chunk;
    uint32_t birth = e.birth;
    // A copy or unmap whose batch is queued has already ended this entry (a snapshot that
    // still sees it finds it in the history) and may have dropped the last reference to
    // its chunk: the view takes its outcome, which the caller's batch follows.
    if (const PendingChange* p = e.pending ? tree.change_at(ci) : nullptr;
        p && p->queued && p->kind != PendingChange::Kind::kAllocate) {
      if (p->kind == PendingChange::Kind::kUnmap) return;
      chunk = p->new_chunk;
      birth = p->birth;
    }
    if (birth <= generation) map.emplace(ci, chunk);
  });
  // History entries a snapshot sees are of chunk indexes it sees no live entry of.
  for (const auto& [key, h] : tree.history) {
    if (key.second <= generation && generation < h.death) map.emplace(key.first, h.pool_chunk);
  }
  return map;
}

Result<ObjectInfo> Pool::create_snapshot(const std::string& volume, const std::string& name,
                                         const Labels& labels) {
  PXD_RETURN_IF_ERROR(check_name(name));
  std::lock_guard<std::mutex> lock(control_mu_);
  PXD_TRY(const metadb::ObjectRecord* found, find(volume));
  if (found->kind != metadb::ObjectKind::kVolume)
    return invalid_argument("'" + volume +
                            "' is a snapshot; snapshots of snapshots are made "
                            "by cloning it first");
  if (names_.count(name)) return already_exists("the name '" + name + "' is taken");
  metadb::ObjectRecord vol = *found;
  Tree* tree = state_->tree(vol.id);
  metadb::ObjectRecord snap;
  snap.id = next_id_;
  snap.kind = metadb::ObjectKind::kSnapshot;
  snap.name = name;
  snap.size_bytes = vol.size_bytes;
  snap.block_size = vol.block_size;
  snap.labels = labels;
  snap.attributes = vol.attributes;  // e.g. its filesystem: clones of it inherit them
  snap.created_unix = std::time(nullptr);
  snap.tree = vol.id;
  std::future<Status> committed;
  {
    // The live generation becomes the snapshot's; writes from now on carry the next one
    // and copy any chunk the snapshot sees before changing it. The batch is queued under
    // the tree lock: every I/O commit that relies on the new generation (an extent born
    // at g + 1) is queued after it, so no crash can keep such an extent without it.
    std::lock_guard<std::mutex> tree_lock(tree->mu);
    snap.generation = tree->generation;
    vol.generation = tree->generation + 1;
    tree->generation = vol.generation;
    tree->snapshots[snap.generation] = snap.id;
    metadb::MetaBatch batch;
    batch.put_object(snap);
    batch.put_object(vol);
    batch.put_next_id(next_id_ + 1);
    committed = state_->writer().commit_later(std::move(batch), true);
  }
  PXD_RETURN_IF_ERROR(committed.get());
  ++next_id_;
  objects_[vol.id] = vol;
  names_[snap.name] = snap.id;
  auto& stored = objects_[snap.id] = std::move(snap);
  return describe(stored);
}

Result<ObjectInfo> Pool::clone(const std::string& source, const std::string& name,
                               const Labels& labels, const Labels& attributes) {
  PXD_RETURN_IF_ERROR(check_name(name));
  std::lock_guard<std::mutex> lock(control_mu_);
  PXD_TRY(const metadb::ObjectRecord* found, find(source));
  if (names_.count(name)) return already_exists("the name '" + name + "' is taken");
  metadb::ObjectRecord src = *found;
  return make_clone(src, *state_->tree(src.tree), name, labels, attributes);
}

Result<ObjectInfo> Pool::make_clone(const metadb::ObjectRecord& source, Tree& tree,
                                    const std::string& name, const Labels& labels,
                                    const Labels& attributes) {
  metadb::ObjectRecord rec;
  rec.id = next_id_;
  rec.kind = metadb::ObjectKind::kVolume;
  rec.name = name;
  rec.size_bytes = source.size_bytes;
  rec.block_size = source.block_size;
  rec.labels = labels;
  rec.attributes = attributes.empty() ? source.attributes : attributes;
  rec.created_unix = std::time(nullptr);
  rec.tree = rec.id;
  rec.origin = source.id;
  // Shared entries are born at generation 1; the clone writes at 2, so its first write to
  // each of them copies (their reference count is above one anyway).
  rec.generation = 2;
  Tree* clone_tree = state_->add_tree(rec.id);
  clone_tree->generation = rec.generation;
  metadb::MetaBatch batch;
  std::future<Status> committed;
  {
    // The clone's lock too (nothing else waits for it while holding another tree's): space
    // settling may look at it as soon as it holds references.
    std::lock_guard<std::mutex> tree_lock(tree.mu);
    std::lock_guard<std::mutex> clone_lock(clone_tree->mu);
    uint32_t generation = source.generation;
    if (source.kind == metadb::ObjectKind::kVolume) {
      // An implicit snapshot: close the current generation so that writes after this
      // instant copy before they change a chunk the clone now shares. Queued under the
      // tree lock, like create_snapshot, so I/O commits born at the new generation follow.
      generation = tree.generation;
      tree.generation = generation + 1;
      metadb::ObjectRecord& stored = objects_[source.id];
      stored.generation = tree.generation;
      batch.put_object(stored);
    }
    view_of(tree, generation).for_each([&](uint64_t ci, uint64_t chunk) {
      state_->share_chunk(tree, ci, chunk, rec.id);
      clone_tree->add_live(ci, LiveEntry{chunk, 1, true, false});
      batch.put_extent({rec.id, ci, 1}, {chunk, metadb::kLiveGeneration});
      // The source's own live entry may name the same chunk: it is no longer the only
      // reference, so its next write must check the count (and copy) instead of going
      // in place once no snapshot covers it.
      if (LiveEntry* live = tree.live.find(ci); live && live->pool_chunk == chunk)
        live->maybe_shared = true;
    });
    batch.put_object(rec);
    batch.put_next_id(next_id_ + 1);
    committed = state_->writer().commit_later(std::move(batch), true);
  }
  PXD_RETURN_IF_ERROR(committed.get());
  ++next_id_;
  names_[rec.name] = rec.id;
  auto& stored = objects_[rec.id] = std::move(rec);
  return describe(stored);
}

Status Pool::restore(const std::string& volume, const std::string& snapshot) {
  std::lock_guard<std::mutex> lock(control_mu_);
  PXD_TRY(const metadb::ObjectRecord* vol_rec, find(volume));
  PXD_TRY(const metadb::ObjectRecord* snap_rec, find(snapshot));
  if (vol_rec->kind != metadb::ObjectKind::kVolume)
    return invalid_argument("'" + volume + "' is a snapshot, not a volume");
  if (snap_rec->kind != metadb::ObjectKind::kSnapshot)
    return invalid_argument("'" + snapshot + "' is a volume, not a snapshot");
  if (snap_rec->tree != vol_rec->id)
    return invalid_argument("snapshot '" + snapshot + "' is not a snapshot of '" + volume +
                            "'; clone it instead");
  if (open_count(vol_rec->id) > 0)
    return busy("volume '" + volume + "' is open (attached or exported); detach it first");
  metadb::ObjectRecord vol = *vol_rec;
  Tree* tree = state_->tree(vol.id);
  metadb::MetaBatch batch;
  std::vector<uint64_t> freed;
  {
    std::lock_guard<std::mutex> tree_lock(tree->mu);
    const uint32_t s = snap_rec->generation;
    const uint32_t g = tree->generation;
    ChunkMap<uint64_t> target = view_of(*tree, s);
    tree->erase_live_if([&](uint64_t ci, LiveEntry& e) {
      if (e.birth <= s) {  // the snapshot sees this very entry: keep it
        target.erase(ci);
        return false;
      }
      state_->end_live_entry(*tree, ci, e.birth, e.pool_chunk, g, batch, freed);
      return true;
    });
    target.for_each([&](uint64_t ci, uint64_t chunk) {
      state_->share_chunk(*tree, ci, chunk, tree->id);
      tree->add_live(ci, LiveEntry{chunk, g, true, false});
      batch.put_extent({tree->id, ci, g}, {chunk, metadb::kLiveGeneration});
    });
    // Entries just made are born at g; later writes carry g + 1 so they never collide.
    tree->generation = g + 1;
    vol.generation = g + 1;
  }
  batch.put_object(vol);
  objects_[vol.id] = vol;
  return finish_change(std::move(batch), freed);
}

void Pool::account(const metadb::ObjectRecord& rec, ObjectInfo& info) {
  state_->settle_space();
  Tree* tree = state_->tree(rec.tree);
  SpaceChunks space;
  {
    std::lock_guard<std::mutex> lock(tree->mu);
    space = rec.kind == metadb::ObjectKind::kVolume ? tree->volume_space()
                                                    : tree->snapshot_space(rec.generation);
  }
  info.exclusive_bytes = space.exclusive * state_->chunk_size();
  info.shared_bytes = space.shared * state_->chunk_size();
}

// The definition the counts follow. Exclusive: chunks only this object sees (reference
// count one, and no other snapshot or the live volume sees the entry). Shared: every other
// chunk it sees.
void Pool::recount(const metadb::ObjectRecord& rec, ObjectInfo& info) {
  Tree* tree = state_->tree(rec.tree);
  const uint64_t cs = state_->chunk_size();
  ChunkAllocator& alloc = state_->allocator();
  uint64_t exclusive = 0, shared = 0;
  std::lock_guard<std::mutex> lock(tree->mu);
  auto add = [&](uint64_t chunk, bool only_viewer) {
    if (only_viewer && alloc.references(chunk) == 1) {
      exclusive += cs;
    } else {
      shared += cs;
    }
  };
  if (rec.kind == metadb::ObjectKind::kVolume) {
    const uint32_t newest = tree->newest_snapshot();
    tree->live.for_each([&](uint64_t, const LiveEntry& e) { add(e.pool_chunk, e.birth > newest); });
  } else {
    const uint32_t s = rec.generation;
    tree->live.for_each([&](uint64_t, const LiveEntry& e) {
      if (e.birth <= s) add(e.pool_chunk, false);
    });
    for (const auto& [key, h] : tree->history) {
      if (key.second > s || s >= h.death) continue;
      // Alone iff no other snapshot falls in [birth, death).
      auto first = tree->snapshots.lower_bound(key.second);
      auto second = first == tree->snapshots.end() ? first : std::next(first);
      bool alone = second == tree->snapshots.end() || second->first >= h.death;
      add(h.pool_chunk, alone);
    }
  }
  info.exclusive_bytes = exclusive;
  info.shared_bytes = shared;
}

PoolUsage Pool::usage() {
  std::lock_guard<std::mutex> lock(control_mu_);
  PoolUsage u;
  const metadb::PoolRecord& record = state_->store().pool();
  u.uuid = record.uuid;
  u.chunk_size = state_->chunk_size();
  for (const auto& d : record.devices) u.devices.push_back(d.path);
  ChunkAllocator::Usage a = state_->allocator().usage();
  u.capacity_bytes = a.capacity * u.chunk_size;
  u.used_bytes = a.referenced * u.chunk_size;
  u.free_bytes = a.free * u.chunk_size;
  u.reclaiming_bytes = a.reclaiming * u.chunk_size;
  u.metadata_bytes = state_->store().disk_bytes();
  u.metadata_buffer_bytes = state_->store().buffer_bytes();
  u.metadata_commits = state_->writer().committed_sequence();
  for (const auto& [id, rec] : objects_) {
    if (rec.kind == metadb::ObjectKind::kVolume) {
      ++u.volumes;
      Tree* tree = state_->tree(id);
      std::lock_guard<std::mutex> tree_lock(tree->mu);
      u.mapped_extents += tree->live.size() + tree->history.size();
      u.extent_map_bytes += tree->map_bytes();
    } else {
      ++u.snapshots;
    }
  }
  return u;
}

}  // namespace pxd
