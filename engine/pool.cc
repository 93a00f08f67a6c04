#include "engine/pool.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <future>
#include <random>

#include "common/log.h"
#include "common/units.h"
#include "engine/extent_journal.h"
#include "engine/pool_state.h"
#include "engine/snapshot_volume.h"
#include "engine/thin_volume.h"

namespace pxd {
namespace {

std::string random_uuid() {
  std::random_device rd;
  uint8_t b[16];
  for (auto& x : b) x = static_cast<uint8_t>(rd());
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[37];
  std::snprintf(out, sizeof(out),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

Status check_size(uint64_t size, uint32_t block_size) {
  if (size == 0) return invalid_argument("size must be greater than zero");
  if (size % block_size != 0)
    return invalid_argument("size " + std::to_string(size) +
                            " is not a multiple of the block size " + std::to_string(block_size));
  if (size > kMaxVolumeBytes)
    return invalid_argument("size " + format_size(size) + " is beyond the limit of " +
                            format_size(kMaxVolumeBytes));
  return Status::ok();
}

}  // namespace

Status check_name(const std::string& name) {
  if (name.empty()) return invalid_argument("name is empty");
  if (name.size() > kMaxNameBytes)
    return invalid_argument("name is " + std::to_string(name.size()) + " bytes long; at most " +
                            std::to_string(kMaxNameBytes) + " are allowed");
  if (name == "." || name == "..") return invalid_argument("name '" + name + "' is reserved");
  for (unsigned char c : name) {
    if (c == '/') return invalid_argument("name '" + name + "' contains '/'");
    if (c < 0x20 || c == 0x7f) return invalid_argument("name contains a control character");
  }
  return Status::ok();
}

Pool::Pool(std::unique_ptr<PoolState> state) : state_(std::move(state)) {}

Pool::~Pool() {
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    for (auto& [id, n] : opens_) {
      if (n > 0) PXD_LOG(kError) << "pool closed with " << n << " open handles on object " << id;
    }
  }
  // The reclaims still running (the zeroing an unclean shutdown left, among them) finish
  // first: their records go in the final sync.
  state_->drain_reclaims();
  // Reserved chunks were never written: they are clean, so a clean close need not leave
  // them for the next open to zero, and their preallocated file space goes back.
  // Let a refill that is still queued finish first, so its chunks are released too (it
  // queues its pieces one behind the other, so wait until the last one is in).
  for (int i = 0; i < 1000; ++i) {
    state_->writer().run_and_wait([] {});
    if (!state_->allocator().refill_running()) break;
  }
  std::vector<uint64_t> reserve = state_->allocator().reserve_snapshot();
  if (!reserve.empty() && state_->writer().health().is_ok()) {
    state_->writer().run_and_wait([&] { state_->release_preallocation(reserve); });
  }
  std::vector<uint64_t> runs = state_->runs_within(reserve);
  if (!runs.empty() && state_->writer().health().is_ok()) {
    metadb::MetaBatch batch;
    for (uint64_t id : runs) batch.delete_reserved_run(id);
    Status s = state_->writer().commit_and_wait(std::move(batch), true);
    if (!s.is_ok()) PXD_LOG(kError) << "releasing the allocation reserve failed: " << s;
  }
  Status s = sync();
  if (!s.is_ok()) PXD_LOG(kError) << "final sync of the pool failed: " << s;
}

Result<std::unique_ptr<Pool>> Pool::create(const std::string& meta_dir,
                                           const PoolOptions& options) {
  if (options.devices.empty()) return invalid_argument("a pool needs at least one device");
  if (!is_power_of_two(options.chunk_size) || options.chunk_size < 64 * kKiB ||
      options.chunk_size > 64 * kMiB)
    return invalid_argument("chunk size " + std::to_string(options.chunk_size) +
                            " must be a power of two from 64 KiB to 64 MiB");
  struct stat st;
  if (::stat((meta_dir + "/CURRENT").c_str(), &st) == 0)
    return already_exists("a pool already exists at " + meta_dir);

  metadb::PoolRecord record;
  record.uuid = random_uuid();
  record.chunk_size = options.chunk_size;
  record.created_unix = std::time(nullptr);
  std::vector<std::unique_ptr<PoolDevice>> devices;
  std::vector<std::string> created_files;
  auto undo = [&] {
    devices.clear();
    for (auto& f : created_files) ::unlink(f.c_str());
  };
  for (size_t i = 0; i < options.devices.size(); ++i) {
    const auto& spec = options.devices[i];
    bool existed = ::stat(spec.path.c_str(), &st) == 0;
    DeviceHeader header{record.uuid, static_cast<uint32_t>(i), options.chunk_size, 0, spec.thick};
    DeviceProgress progress;
    if (options.progress) {
      progress = [&](uint64_t done, uint64_t total) { options.progress(spec.path, done, total); };
    }
    auto dev = PoolDevice::create(spec.path, spec.size_bytes, header, progress);
    if (!existed && ::stat(spec.path.c_str(), &st) == 0) created_files.push_back(spec.path);
    if (dev.has_error()) {
      undo();
      return dev.error();
    }
    record.devices.push_back({spec.path, dev.value()->chunk_count(), dev.value()->thick()});
    devices.push_back(std::move(dev).value());
  }
  auto store = metadb::MetaStore::create(meta_dir, record);
  if (store.has_error()) {
    undo();
    return store.error();
  }
  std::unique_ptr<Pool> pool(
      new Pool(std::make_unique<PoolState>(std::move(store).value(), std::move(devices))));
  PXD_RETURN_IF_ERROR(pool->load(options.journal));
  return pool;
}

Result<std::unique_ptr<Pool>> Pool::open(const std::string& meta_dir,
                                         const PoolOpenOptions& options) {
  PXD_TRY(auto store, metadb::MetaStore::open(meta_dir));
  const metadb::PoolRecord& record = store->pool();
  std::vector<std::unique_ptr<PoolDevice>> devices;
  for (size_t i = 0; i < record.devices.size(); ++i) {
    DeviceHeader expected{record.uuid, static_cast<uint32_t>(i), record.chunk_size,
                          record.devices[i].chunk_count, record.devices[i].thick};
    PXD_TRY(auto dev, PoolDevice::open(record.devices[i].path, expected));
    devices.push_back(std::move(dev));
  }
  std::unique_ptr<Pool> pool(
      new Pool(std::make_unique<PoolState>(std::move(store), std::move(devices))));
  PXD_RETURN_IF_ERROR(pool->load(options.journal));
  return pool;
}

// Rebuilds every in-memory structure from the store, checking it as it goes, and replays
// the extent journal. Changes nothing on disk until all of it has been read and found
// consistent.
Status Pool::load(const JournalOptions& journal_options) {
  metadb::MetaStore& store = state_->store();
  next_id_ = store.next_id();
  std::vector<metadb::ObjectRecord> snapshots;
  PXD_RETURN_IF_ERROR(store.for_each_object([&](metadb::ObjectRecord&& rec) -> Status {
    if (rec.id >= next_id_)
      return corruption("object " + std::to_string(rec.id) + " is not below the next id");
    if (names_.count(rec.name)) return corruption("two objects are named '" + rec.name + "'");
    names_[rec.name] = rec.id;
    if (rec.kind == metadb::ObjectKind::kVolume) {
      if (rec.tree != rec.id)
        return corruption("volume " + std::to_string(rec.id) + " has a foreign tree");
      state_->add_tree(rec.id)->generation = rec.generation;
    } else {
      snapshots.push_back(rec);
    }
    objects_[rec.id] = std::move(rec);
    return Status::ok();
  }));
  for (const auto& snap : snapshots) {
    Tree* tree = state_->tree(snap.tree);
    if (!tree || snap.generation >= tree->generation)
      return corruption("snapshot '" + snap.name + "' refers to a missing volume or generation");
    tree->snapshots[snap.generation] = snap.id;
  }
  ChunkAllocator& alloc = state_->allocator();
  uint64_t extents = 0;
  PXD_RETURN_IF_ERROR(store.for_each_extent([&](const metadb::ExtentKey& k,
                                                const metadb::ExtentValue& v) -> Status {
    std::string where = "extent (tree " + std::to_string(k.tree) + ", chunk " +
                        std::to_string(k.chunk_index) + ", birth " + std::to_string(k.birth) + ")";
    Tree* tree = state_->tree(k.tree);
    if (!tree) return corruption(where + " belongs to no volume");
    if (!alloc.load_reference(v.pool_chunk, k.tree))
      return corruption(where + " names pool chunk " + std::to_string(v.pool_chunk) +
                        " beyond the pool's " + std::to_string(alloc.capacity_chunks()));
    if (k.birth > tree->generation || v.death <= k.birth ||
        (v.death != metadb::kLiveGeneration && v.death > tree->generation))
      return corruption(where + " has generations out of order");
    // Reference counts are known only at the end: `unique` is set after the scan.
    if (v.death == metadb::kLiveGeneration) {
      if (tree->live.find(k.chunk_index))
        return corruption(where + " is a second live entry for its chunk");
      tree->add_live(k.chunk_index, LiveEntry{v.pool_chunk, k.birth});
    } else {
      tree->put_history(k.chunk_index, k.birth, HistoryEntry{v.pool_chunk, v.death});
    }
    ++extents;
    return Status::ok();
  }));
  std::vector<uint64_t> dirty_unreferenced;
  metadb::MetaBatch stale;
  PXD_RETURN_IF_ERROR(store.for_each_dirty([&](uint64_t chunk) -> Status {
    if (chunk >= alloc.capacity_chunks())
      return corruption("dirty chunk " + std::to_string(chunk) + " is beyond the pool");
    if (alloc.references(chunk) == 0) {
      dirty_unreferenced.push_back(chunk);
    } else {
      stale.delete_dirty(chunk);
    }
    return Status::ok();
  }));
  // Reserved runs are all settled here: their unreferenced chunks are zeroed like dirty
  // ones, then every run record goes.
  std::vector<uint64_t> runs;
  std::vector<metadb::ReservedRun> run_records;
  uint64_t last_run = 0;
  PXD_RETURN_IF_ERROR(store.for_each_reserved_run([&](const metadb::ReservedRun& run) -> Status {
    if (run.first_chunk + run.count > alloc.capacity_chunks())
      return corruption("reserved run " + std::to_string(run.id) + " (chunks " +
                        std::to_string(run.first_chunk) + " + " + std::to_string(run.count) +
                        ") is beyond the pool's " + std::to_string(alloc.capacity_chunks()));
    for (uint64_t c = run.first_chunk; c < run.first_chunk + run.count; ++c) {
      if (alloc.references(c) == 0) dirty_unreferenced.push_back(c);
    }
    runs.push_back(run.id);
    run_records.push_back(run);
    last_run = std::max(last_run, run.id);
    return Status::ok();
  }));
  state_->set_first_run_id(last_run + 1);
  std::sort(dirty_unreferenced.begin(), dirty_unreferenced.end());
  dirty_unreferenced.erase(std::unique(dirty_unreferenced.begin(), dirty_unreferenced.end()),
                           dirty_unreferenced.end());
  // The journal's extents, then a new key for it, in the store before anything else
  // changes: the old records no longer authenticate once the new key is durable.
  const std::string journal_path = ExtentJournal::path_in(
      journal_options.dir.empty() ? "/dev/shm" : journal_options.dir, store.pool().uuid);
  metadb::MetaBatch journal_batch;
  PXD_RETURN_IF_ERROR(replay_journal(journal_path, journal_batch, dirty_unreferenced, run_records));
  const metadb::JournalState journal_state{ExtentJournal::new_key(), 0};
  journal_batch.put_journal_state(journal_state);
  stale.append(std::move(journal_batch));
  for (const auto& [id, rec] : objects_) {
    if (rec.kind != metadb::ObjectKind::kVolume) continue;
    Tree* tree = state_->tree(id);
    std::lock_guard<std::mutex> lock(tree->mu);
    tree->live.for_each([&](uint64_t, LiveEntry& e) {
      e.maybe_shared = alloc.references(e.pool_chunk) > 1;
      tree->set_unique(e, !e.maybe_shared);
    });
    for (auto it = tree->history.begin(); it != tree->history.end(); ++it)
      tree->set_unique(it, alloc.references(it->second.pool_chunk) == 1);
  }
  alloc.finish_load(dirty_unreferenced);
  PXD_RETURN_IF_ERROR(store.write(stale, true));
  start_journal(journal_path, journal_options.slots, journal_state);
  state_->reclaim_at_open(std::move(dirty_unreferenced), std::move(runs));
  // History no snapshot sees (a crash inside a snapshot delete) is garbage: collect it.
  metadb::MetaBatch unseen;
  std::vector<uint64_t> freed;
  for (const auto& [id, rec] : objects_) {
    if (rec.kind != metadb::ObjectKind::kVolume) continue;
    Tree* tree = state_->tree(id);
    std::lock_guard<std::mutex> lock(tree->mu);
    collect_unseen_history(*tree, unseen, freed);
  }
  if (!unseen.empty()) {
    PXD_LOG(kInfo) << "collecting " << unseen.count() << " extents no snapshot sees any more";
    PXD_RETURN_IF_ERROR(state_->writer().commit_and_wait(std::move(unseen), true));
    state_->retire(freed);
    state_->reclaim_and_wait();
  }
  state_->request_refill();
  return Status::ok();
}

Result<const metadb::ObjectRecord*> Pool::find(const std::string& name) const {
  auto it = names_.find(name);
  if (it == names_.end()) {
    PXD_RETURN_IF_ERROR(check_name(name));
    return not_found("no volume or snapshot named '" + name + "'");
  }
  return &objects_.at(it->second);
}

uint32_t Pool::open_count(uint64_t id) {
  std::lock_guard<std::mutex> lock(open_mu_);
  auto it = opens_.find(id);
  return it == opens_.end() ? 0 : it->second;
}

ObjectInfo Pool::describe(const metadb::ObjectRecord& rec) {
  ObjectInfo info;
  info.id = rec.id;
  info.name = rec.name;
  info.is_snapshot = rec.kind == metadb::ObjectKind::kSnapshot;
  info.size_bytes = rec.size_bytes;
  info.block_size = rec.block_size;
  info.labels = rec.labels;
  info.attributes = rec.attributes;
  info.created_unix = rec.created_unix;
  if (info.is_snapshot) {
    auto it = objects_.find(rec.tree);
    if (it != objects_.end()) info.volume = it->second.name;
  } else {
    Tree* tree = state_->tree(rec.id);
    std::lock_guard<std::mutex> lock(tree->mu);
    for (auto& [gen, snap_id] : tree->snapshots)
      info.snapshots.push_back(objects_.at(snap_id).name);
  }
  if (rec.origin != 0) {
    auto it = objects_.find(rec.origin);
    if (it != objects_.end()) info.origin = it->second.name;
  }
  info.open_handles = open_count(rec.id);
  account(rec, info);
  return info;
}

Result<ObjectInfo> Pool::create_volume(const VolumeSpec& spec) {
  PXD_RETURN_IF_ERROR(check_name(spec.name));
  if (spec.block_size != 4096 && spec.block_size != 512)
    return invalid_argument("block size " + std::to_string(spec.block_size) +
                            " must be 4096 or 512");
  if (spec.block_size < state_->direct_io_alignment())
    return unsupported("block size " + std::to_string(spec.block_size) +
                       " is smaller than the pool devices' direct I/O alignment of " +
                       std::to_string(state_->direct_io_alignment()));
  PXD_RETURN_IF_ERROR(check_size(spec.size_bytes, spec.block_size));
  std::lock_guard<std::mutex> lock(control_mu_);
  if (names_.count(spec.name)) return already_exists("the name '" + spec.name + "' is taken");
  metadb::ObjectRecord rec;
  rec.id = next_id_;
  rec.kind = metadb::ObjectKind::kVolume;
  rec.name = spec.name;
  rec.size_bytes = spec.size_bytes;
  rec.block_size = spec.block_size;
  rec.labels = spec.labels;
  rec.attributes = spec.attributes;
  rec.created_unix = std::time(nullptr);
  rec.tree = rec.id;
  rec.generation = 1;
  metadb::MetaBatch batch;
  batch.put_object(rec);
  batch.put_next_id(next_id_ + 1);
  PXD_RETURN_IF_ERROR(state_->writer().commit_and_wait(std::move(batch), true));
  ++next_id_;
  state_->add_tree(rec.id);
  names_[rec.name] = rec.id;
  auto& stored = objects_[rec.id] = std::move(rec);
  return describe(stored);
}

Status Pool::remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(control_mu_);
  PXD_TRY(const metadb::ObjectRecord* rec, find(name));
  if (open_count(rec->id) > 0)
    return busy("'" + name + "' is open (attached or exported); close it first");
  if (rec->kind == metadb::ObjectKind::kSnapshot) return remove_snapshot(*rec);
  Tree* tree = state_->tree(rec->tree);
  metadb::MetaBatch batch;
  std::vector<uint64_t> freed;
  {
    // The volume is closed, so no I/O runs on its tree.
    std::lock_guard<std::mutex> tree_lock(tree->mu);
    if (!tree->snapshots.empty())
      return failed_precondition("volume '" + name + "' has " +
                                 std::to_string(tree->snapshots.size()) +
                                 " snapshots; delete them first");
    tree->live.for_each([&](uint64_t ci, const LiveEntry& e) {
      batch.delete_extent({tree->id, ci, e.birth});
      state_->drop_reference(*tree, ci, e.pool_chunk, batch, freed);
    });
    for (auto& [key, h] : tree->history) {
      batch.delete_extent({tree->id, key.first, key.second});
      state_->drop_reference(*tree, key.first, h.pool_chunk, batch, freed);
    }
    // The tree goes with the volume, and its space counts with it.
    tree->live.clear();
    tree->history.clear();
  }
  batch.delete_object(rec->id);
  uint64_t id = rec->id;
  names_.erase(rec->name);
  objects_.erase(id);
  state_->remove_tree(id);
  return finish_change(std::move(batch), freed);
}

// A snapshot's record goes first, durably, while the tree still counts the snapshot:
// until then writes keep copying the chunks it sees, so a crash that brings the snapshot
// back brings it back intact. Then the tree forgets it and the history entries no
// snapshot sees any more are deleted. A crash between the two steps leaves such entries
// behind; open() collects them (collect_unseen_history) so nothing leaks.
Status Pool::remove_snapshot(const metadb::ObjectRecord& rec) {
  Tree* tree = state_->tree(rec.tree);
  const uint64_t id = rec.id;
  const uint32_t generation = rec.generation;
  metadb::MetaBatch record;
  record.delete_object(id);
  PXD_RETURN_IF_ERROR(state_->writer().commit_and_wait(std::move(record), true));
  names_.erase(rec.name);
  objects_.erase(id);
  metadb::MetaBatch batch;
  std::vector<uint64_t> freed;
  std::future<Status> committed;
  {
    std::lock_guard<std::mutex> tree_lock(tree->mu);
    tree->forget_snapshot(generation, [&](uint64_t ci, uint32_t birth, const HistoryEntry& h) {
      batch.delete_extent({tree->id, ci, birth});
      state_->drop_reference(*tree, ci, h.pool_chunk, batch, freed);
    });
    committed = state_->writer().commit_later(std::move(batch), true);
  }
  PXD_RETURN_IF_ERROR(committed.get());
  if (!freed.empty()) {
    state_->retire(freed);
    state_->reclaim_and_wait();
  }
  return Status::ok();
}

void Pool::collect_unseen_history(Tree& tree, metadb::MetaBatch& batch,
                                  std::vector<uint64_t>& freed) {
  for (auto it = tree.history.begin(); it != tree.history.end();) {
    auto [ci, birth] = it->first;
    const HistoryEntry& h = it->second;
    if (!tree.snapshot_in(birth, h.death)) {
      batch.delete_extent({tree.id, ci, birth});
      state_->drop_reference(tree, ci, h.pool_chunk, batch, freed);
      it = tree.erase_history(it);
    } else {
      ++it;
    }
  }
}

Status Pool::finish_change(metadb::MetaBatch batch, const std::vector<uint64_t>& freed) {
  PXD_RETURN_IF_ERROR(state_->writer().commit_and_wait(std::move(batch), true));
  if (!freed.empty()) {
    state_->retire(freed);
    state_->reclaim_and_wait();
  }
  return Status::ok();
}

Result<ObjectInfo> Pool::update_record(const std::string& name,
                                       const std::function<Status(metadb::ObjectRecord&)>& change) {
  std::lock_guard<std::mutex> lock(control_mu_);
  PXD_TRY(const metadb::ObjectRecord* found, find(name));
  metadb::ObjectRecord rec = *found;
  PXD_RETURN_IF_ERROR(change(rec));
  metadb::MetaBatch batch;
  batch.put_object(rec);
  PXD_RETURN_IF_ERROR(state_->writer().commit_and_wait(std::move(batch), true));
  auto& stored = objects_[rec.id] = std::move(rec);
  return describe(stored);
}

Result<ObjectInfo> Pool::resize(const std::string& name, uint64_t new_size) {
  return update_record(name, [&](metadb::ObjectRecord& rec) -> Status {
    if (rec.kind != metadb::ObjectKind::kVolume)
      return invalid_argument("'" + name + "' is a snapshot; snapshots cannot be resized");
    if (new_size < rec.size_bytes)
      return invalid_argument("cannot shrink '" + name + "' from " + format_size(rec.size_bytes) +
                              " to " + format_size(new_size) + ": volumes only grow");
    PXD_RETURN_IF_ERROR(check_size(new_size, rec.block_size));
    rec.size_bytes = new_size;
    std::lock_guard<std::mutex> lock(open_mu_);
    for (ThinVolume* v : live_handles_[rec.id]) v->set_size(new_size);
    return Status::ok();
  });
}

Result<ObjectInfo> Pool::set_labels(const std::string& name, const Labels& labels) {
  return update_record(name, [&](metadb::ObjectRecord& rec) {
    rec.labels = labels;
    return Status::ok();
  });
}

Result<ObjectInfo> Pool::merge_labels(const std::string& name, const Labels& set,
                                      const std::vector<std::string>& remove) {
  return update_record(name, [&](metadb::ObjectRecord& rec) {
    for (const auto& key : remove) rec.labels.erase(key);
    for (const auto& [k, v] : set) rec.labels[k] = v;
    return Status::ok();
  });
}

Result<ObjectInfo> Pool::set_attributes(const std::string& name, const Labels& attributes) {
  return update_record(name, [&](metadb::ObjectRecord& rec) {
    rec.attributes = attributes;
    return Status::ok();
  });
}

Result<ObjectInfo> Pool::inspect(const std::string& name) {
  std::lock_guard<std::mutex> lock(control_mu_);
  PXD_TRY(const metadb::ObjectRecord* rec, find(name));
  return describe(*rec);
}

std::vector<ObjectInfo> Pool::list() {
  std::lock_guard<std::mutex> lock(control_mu_);
  std::vector<ObjectInfo> out;
  out.reserve(objects_.size());
  for (const auto& [id, rec] : objects_) out.push_back(describe(rec));
  return out;
}

std::vector<ObjectInfo> Pool::list_recounted() {
  std::lock_guard<std::mutex> lock(control_mu_);
  std::vector<ObjectInfo> out;
  out.reserve(objects_.size());
  for (const auto& [id, rec] : objects_) {
    out.push_back(describe(rec));
    recount(rec, out.back());
  }
  return out;
}

Result<std::shared_ptr<Volume>> Pool::open_volume(const std::string& name) {
  std::lock_guard<std::mutex> lock(control_mu_);
  PXD_TRY(const metadb::ObjectRecord* rec, find(name));
  const uint64_t id = rec->id;
  {
    std::lock_guard<std::mutex> open_lock(open_mu_);
    ++opens_[id];
  }
  auto on_close = [this, id] {
    std::lock_guard<std::mutex> open_lock(open_mu_);
    if (--opens_[id] == 0) opens_.erase(id);
  };
  Tree* tree = state_->tree(rec->tree);
  if (rec->kind == metadb::ObjectKind::kSnapshot) {
    ChunkMap<uint64_t> map;
    {
      std::lock_guard<std::mutex> tree_lock(tree->mu);
      map = view_of(*tree, rec->generation);
    }
    return std::shared_ptr<Volume>(std::make_shared<SnapshotVolume>(
        *state_, id, rec->size_bytes, rec->block_size, std::move(map), on_close));
  }
  auto volume = std::make_shared<ThinVolume>(*state_, *tree, id, rec->size_bytes, rec->block_size);
  ThinVolume* raw = volume.get();
  {
    std::lock_guard<std::mutex> open_lock(open_mu_);
    live_handles_[id].push_back(raw);
  }
  // Unregister the handle, then count it closed, in the handle's destructor.
  std::shared_ptr<Volume> handle(volume.get(), [this, id, raw, volume, on_close](Volume*) mutable {
    {
      std::lock_guard<std::mutex> open_lock(open_mu_);
      auto& v = live_handles_[id];
      v.erase(std::remove(v.begin(), v.end(), raw), v.end());
      if (v.empty()) live_handles_.erase(id);
    }
    volume.reset();
    on_close();
  });
  return handle;
}

Status Pool::flush_metadata_buffer() {
  return state_->store().flush_buffer();
}

Status Pool::sync() {
  PXD_RETURN_IF_ERROR(state_->writer().sync_and_wait());
  for (const auto& dev : state_->devices()) PXD_RETURN_IF_ERROR(dev->sync());
  return Status::ok();
}

}  // namespace pxd
