#include "engine/pool_state.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <future>
#include <unordered_set>

#include "common/log.h"

namespace pxd {

PoolState::PoolState(std::unique_ptr<metadb::MetaStore> store,
                     std::vector<std::unique_ptr<PoolDevice>> devices)
    : store_(std::move(store)),
      devices_(std::move(devices)),
      chunk_size_(store_->pool().chunk_size),
      zeros_(static_cast<std::byte*>(std::aligned_alloc(4096, chunk_size_))) {
  std::memset(zeros_.get(), 0, chunk_size_);
  std::vector<uint64_t> counts;
  for (auto& d : devices_) {
    counts.push_back(d->chunk_count());
    dio_alignment_ = std::max(dio_alignment_, d->direct_io_alignment());
  }
  // The reserve is preallocated in pool files (see preallocate()): bound it in bytes too.
  bool preallocates = false;
  for (auto& d : devices_) preallocates = preallocates || (!d->is_block_device() && !d->thick());
  // Where the reserve costs no space it starts at its maximum, so that even a new pool's
  // first burst of writes into thin space syncs for a refill only every tens of thousands
  // of chunks.
  const uint64_t max_reserve =
      preallocates ? std::min(kMaxReserveBytes / chunk_size_, kMaxReserveChunks)
                   : std::min(kMaxReserveBytesUnbacked / chunk_size_, kMaxReserveChunksUnbacked);
  allocator_ =
      std::make_unique<ChunkAllocator>(counts, max_reserve, preallocates ? 64 : max_reserve);
  reclaimer_ = std::make_unique<WorkThread>("pxd-reclaim");
  writer_ = std::make_unique<MetaWriter>(store_.get());
}

PoolState::~PoolState() {
  drain_reclaims();
  // Stop the metadata thread (it drains its queue) before anything it uses goes away.
  writer_.reset();
}

void PoolState::drain_reclaims() {
  // A reclaim moves from the writer to the syncer to the reclaimer and back to the
  // writer: each round lets every step run what the one before handed it.
  while (reclaims_in_flight_.load(std::memory_order_acquire) > 0) {
    writer_->run_and_wait([] {});
    std::promise<void> idle;
    reclaimer_->post([&idle] { idle.set_value(); });
    idle.get_future().wait();
  }
}

void PoolState::end_live_entry(Tree& tree, uint64_t chunk_index, uint32_t birth,
                               uint64_t pool_chunk, uint32_t generation, metadb::MetaBatch& batch,
                               std::vector<uint64_t>& freed) {
  metadb::ExtentKey key{tree.id, chunk_index, birth};
  if (tree.snapshot_in(birth, generation)) {
    bool unique = allocator_->references(pool_chunk) == 1;
    tree.put_history(chunk_index, birth, HistoryEntry{pool_chunk, generation, unique});
    batch.put_extent(key, metadb::ExtentValue{pool_chunk, generation});
    return;
  }
  batch.delete_extent(key);
  drop_reference(tree, chunk_index, pool_chunk, batch, freed);
}

void PoolState::drop_reference(Tree& tree, uint64_t chunk_index, uint64_t pool_chunk,
                               metadb::MetaBatch& batch, std::vector<uint64_t>& freed) {
  ChunkAllocator::Dropped d = allocator_->drop_reference(pool_chunk, tree.id);
  if (d.left == 0) {
    batch.put_dirty(pool_chunk);
    freed.push_back(pool_chunk);
  } else if (d.left == 1) {
    note_unshared(d.last_referrer, chunk_index, pool_chunk);
  }
}

void PoolState::share_chunk(Tree& holder, uint64_t chunk_index, uint64_t pool_chunk,
                            uint64_t referrer) {
  // From one reference to two only under the lock of the tree that held the one: so an
  // entry marked unique never names a chunk with more than one reference.
  if (allocator_->add_reference(pool_chunk, referrer) == 2)
    holder.set_unique(chunk_index, pool_chunk, false);
}

void PoolState::note_unshared(uint64_t tree, uint64_t chunk_index, uint64_t pool_chunk) {
  // Bounds the list: settle in the background every so many (each costs 24 bytes here).
  constexpr size_t kSettleBatch = 4096;
  size_t noted;
  {
    std::lock_guard<std::mutex> lock(unshared_mu_);
    unshared_.push_back({tree, chunk_index, pool_chunk});
    noted = unshared_.size();
  }
  if (noted >= kSettleBatch && !settle_scheduled_.exchange(true)) {
    writer_->run([this] {
      settle_scheduled_.store(false);
      settle_space();
    });
  }
}

void PoolState::settle_space() {
  std::lock_guard<std::mutex> settle_lock(settle_mu_);
  std::vector<Unshared> work;
  {
    std::lock_guard<std::mutex> lock(unshared_mu_);
    work.swap(unshared_);
  }
  if (work.empty()) return;
  std::sort(work.begin(), work.end(),
            [](const Unshared& a, const Unshared& b) { return a.tree < b.tree; });
  // A few hundred at a time under a tree's lock, so I/O on it waits only briefly.
  constexpr size_t kSlice = 256;
  for (size_t i = 0; i < work.size();) {
    size_t end = i + 1;
    while (end < work.size() && end - i < kSlice && work[end].tree == work[i].tree) ++end;
    std::lock_guard<std::mutex> trees_lock(trees_mu_);
    auto it = trees_.find(work[i].tree);
    if (it != trees_.end()) {
      Tree& tree = *it->second;
      std::lock_guard<std::mutex> lock(tree.mu);
      for (size_t j = i; j < end; ++j) {
        // It may have been shared again, or dropped, since: only the count now matters.
        if (allocator_->references(work[j].pool_chunk) == 1)
          tree.set_unique(work[j].chunk_index, work[j].pool_chunk, true);
      }
    }
    i = end;
  }
}

void PoolState::retire(const std::vector<uint64_t>& chunks) {
  if (chunks.empty()) return;
  // Every request that could still touch these chunks started before this tag.
  uint64_t tag = io_sequence_.load(std::memory_order_acquire);
  {
    std::lock_guard<std::mutex> lock(limbo_mu_);
    for (uint64_t c : chunks) limbo_.emplace_back(tag, c);
    limbo_count_.store(limbo_.size(), std::memory_order_relaxed);
  }
  schedule_reclaim();
}

void PoolState::schedule_reclaim() {
  if (reclaim_scheduled_.exchange(true)) return;
  writer_->run([this] {
    reclaim_scheduled_.store(false);
    reclaim_on_thread([] {});
  });
}

void PoolState::reclaim_and_wait() {
  std::promise<void> reclaimed;
  writer_->run([this, &reclaimed] { reclaim_on_thread([&reclaimed] { reclaimed.set_value(); }); });
  reclaimed.get_future().wait();
  // A reclaim scheduled before this one may have taken the chunks and still be zeroing.
  drain_reclaims();
}

Status PoolState::for_each_run(std::vector<uint64_t> chunks,
                               const std::function<Status(PoolDevice&, uint64_t, uint64_t)>& fn) {
  return allocator_->for_each_run(std::move(chunks), kRunPieceBytes / chunk_size_,
                                  [&](uint32_t dev, uint64_t local, uint64_t count) {
                                    return fn(*devices_[dev], local, count);
                                  });
}

Status PoolState::zero_chunks_durably(const std::vector<uint64_t>& chunks) {
  std::vector<bool> touched(devices_.size(), false);
  PXD_RETURN_IF_ERROR(for_each_run(chunks, [&](PoolDevice& dev, uint64_t local, uint64_t count) {
    touched[dev.index()] = true;
    return dev.zero_chunks(local, count);
  }));
  for (size_t d = 0; d < devices_.size(); ++d) {
    if (touched[d]) PXD_RETURN_IF_ERROR(devices_[d]->sync());
  }
  return Status::ok();
}

void PoolState::preallocate(const std::vector<uint64_t>& chunks) {
  Status status = for_each_run(chunks, [](PoolDevice& dev, uint64_t local, uint64_t count) {
    return dev.preallocate_chunks(local, count);
  });
  // Only speed is at stake: the writes allocate what is missing themselves (and fail with
  // ENOSPC if the filesystem under a pool file is full). Say so once per episode.
  if (!status.is_ok() && !preallocate_failed_) {
    PXD_LOG(kWarn) << "preallocating pool file space failed, first writes will be slower: "
                   << status;
  }
  preallocate_failed_ = !status.is_ok();
}

void PoolState::release_preallocation(const std::vector<uint64_t>& chunks) {
  Status status = for_each_run(chunks, [](PoolDevice& dev, uint64_t local, uint64_t count) {
    return dev.release_chunks(local, count);
  });
  if (!status.is_ok()) PXD_LOG(kWarn) << "releasing preallocated pool file space: " << status;
}

void PoolState::reclaim_on_thread(std::function<void()> done) {
  uint64_t oldest = UINT64_MAX;
  {
    std::lock_guard<std::mutex> trees_lock(trees_mu_);
    for (auto& [id, tree] : trees_) {
      std::lock_guard<std::mutex> lock(tree->mu);
      oldest = std::min(oldest, tree->oldest_active());
    }
  }
  std::vector<uint64_t> ready;
  {
    std::lock_guard<std::mutex> lock(limbo_mu_);
    auto keep = std::stable_partition(limbo_.begin(), limbo_.end(),
                                      [&](const auto& e) { return e.first >= oldest; });
    for (auto it = keep; it != limbo_.end(); ++it) ready.push_back(it->second);
    limbo_.erase(keep, limbo_.end());
    limbo_count_.store(limbo_.size(), std::memory_order_relaxed);
  }
  if (ready.empty()) {
    done();
    return;
  }
  std::sort(ready.begin(), ready.end());
  reclaims_in_flight_.fetch_add(1, std::memory_order_acq_rel);
  auto chunks = std::make_shared<const std::vector<uint64_t>>(std::move(ready));
  auto finish = [this, chunks, done = std::move(done)](const Status& status) {
    if (!status.is_ok()) {
      // They stay dirty on disk and are zeroed at the next open; not free until then.
      PXD_LOG(kError) << "reclaiming " << chunks->size() << " chunks failed: " << status;
    } else {
      // A chunk whose copy failed before its extent committed leaves its run only now.
      for (uint64_t c : *chunks) settle_reserved(c);
      allocator_->finish_reclaim(*chunks);
    }
    done();
    reclaims_in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  };
  // Three steps, so that neither the commits queued on this thread nor the syncer wait
  // for hole punches and device syncs:
  // 1. the batches that dropped these chunks must be durable before the data goes (a
  //    crash could otherwise bring back a map that points at a zeroed chunk): the
  //    syncer says when, and hands over to the reclaimer;
  // 2. the reclaimer zeroes the chunks and syncs their devices;
  // 3. back here, in queue order, their dirty records go and they become free.
  writer_->after_durable([this, chunks, finish](const Status& durable) mutable {
    if (!durable.is_ok()) {
      writer_->run([finish, durable]() mutable { finish(durable); });
      return;
    }
    reclaimer_->post([this, chunks, finish]() mutable {
      Status zeroed = zero_chunks_durably(*chunks);
      writer_->run([this, chunks, finish, zeroed]() mutable {
        Status status = zeroed;
        if (status.is_ok()) {
          metadb::MetaBatch batch;
          for (uint64_t c : *chunks) batch.delete_dirty(c);
          status = writer_->write_on_thread(batch);
        }
        finish(status);
      });
    });
  });
}

void PoolState::settle_reserved(uint64_t chunk) {
  uint64_t finished;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = run_of_chunk_.find(chunk);
    if (it == run_of_chunk_.end()) return;
    finished = it->second;
    run_of_chunk_.erase(it);
    auto run = run_remaining_.find(finished);
    if (--run->second > 0) return;
    run_remaining_.erase(run);
  }
  metadb::MetaBatch batch;
  batch.delete_reserved_run(finished);
  writer_->commit(std::move(batch), false, nullptr);
}

std::vector<uint64_t> PoolState::runs_within(const std::vector<uint64_t>& reserve) const {
  std::unordered_set<uint64_t> clean(reserve.begin(), reserve.end());
  std::lock_guard<std::mutex> lock(runs_mu_);
  std::unordered_set<uint64_t> keep;
  for (const auto& [chunk, id] : run_of_chunk_) {
    if (!clean.count(chunk)) keep.insert(id);
  }
  std::vector<uint64_t> ids;
  for (const auto& [id, remaining] : run_remaining_) {
    if (!keep.count(id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

void PoolState::request_refill() {
  if (!allocator_->wants_refill()) return;
  writer_->run([this] { refill_on_thread(); });
}

void PoolState::refill_on_thread() {
  std::vector<uint64_t> chunks = allocator_->take_for_reserve();
  if (chunks.empty()) {
    allocator_->finish_refill();
    return;
  }
  write_reserve_piece(std::make_shared<const std::vector<uint64_t>>(std::move(chunks)), 0);
}

// Persists chunks [from, from + kRefillPiece) as reserved runs before any data can land
// in them: a crash before their maps commit then finds them dirty and zeroes them at
// open. One record per run of consecutive chunks, so a refill on an unfragmented pool
// writes a record or two, and a first write's commit need not delete anything (its chunk
// is settled in memory; see settle_reserved()). Written here, in queue order, but synced
// by the syncer, so that commits queued behind this go on meanwhile; the chunks become
// allocatable only once a sync covers their records. A refill is written in pieces, each
// queued behind the commits that arrived while the one before was written: on a
// fragmented pool a piece can be hundreds of records.
void PoolState::write_reserve_piece(std::shared_ptr<const std::vector<uint64_t>> chunks,
                                    size_t from) {
  const size_t to = std::min(chunks->size(), from + kRefillPiece);
  const bool last = to == chunks->size();
  std::vector<uint64_t> sorted(chunks->begin() + from, chunks->begin() + to);
  std::sort(sorted.begin(), sorted.end());
  std::vector<metadb::ReservedRun> runs;
  for (uint64_t c : sorted) {
    if (!runs.empty() && runs.back().first_chunk + runs.back().count == c) {
      ++runs.back().count;
    } else {
      runs.push_back({next_run_id_++, c, 1});
    }
  }
  metadb::MetaBatch batch;
  for (const auto& run : runs) batch.put_reserved_run(run);
  Status status = writer_->write_on_thread(batch);
  if (!status.is_ok()) {
    // After the pieces already handed off, whose callbacks see the failure too.
    writer_->after_durable(
        [this, rest = std::vector<uint64_t>(chunks->begin() + from, chunks->end())](const Status&) {
          allocator_->return_free(rest);
          allocator_->finish_refill();
        });
    return;
  }
  writer_->after_durable(
      [this, piece = std::vector<uint64_t>(chunks->begin() + from, chunks->begin() + to),
       runs = std::move(runs), last](const Status& s) {
        if (s.is_ok()) {
          {
            // Before any of them can be allocated, so that settling always finds its run.
            std::lock_guard<std::mutex> lock(runs_mu_);
            for (const auto& run : runs) {
              run_remaining_[run.id] = run.count;
              for (uint64_t i = 0; i < run.count; ++i) run_of_chunk_[run.first_chunk + i] = run.id;
            }
          }
          preallocate(piece);
          allocator_->add_to_reserve(piece);
        } else {
          allocator_->return_free(piece);
        }
        if (last) allocator_->finish_refill();
      });
  if (!last) writer_->run([this, chunks, to] { write_reserve_piece(chunks, to); });
}

void PoolState::reclaim_at_open(std::vector<uint64_t> dirty_unreferenced,
                                std::vector<uint64_t> runs) {
  if (dirty_unreferenced.empty() && runs.empty()) return;
  if (!dirty_unreferenced.empty()) {
    PXD_LOG(kInfo) << "zeroing " << dirty_unreferenced.size()
                   << " chunks an unclean shutdown left allocated but unreferenced"
                   << " (in the background)";
  }
  reclaims_in_flight_.fetch_add(1, std::memory_order_acq_rel);
  auto chunks = std::make_shared<const std::vector<uint64_t>>(std::move(dirty_unreferenced));
  reclaimer_->post([this, chunks, runs = std::move(runs)]() mutable {
    Status zeroed = chunks->empty() ? Status::ok() : zero_chunks_durably(*chunks);
    writer_->run([this, chunks, runs = std::move(runs), zeroed] {
      // Unsynced: if a crash loses these deletes, the next open zeroes the chunks again;
      // a chunk is referenced again only behind a refill's synced records.
      Status status = zeroed;
      if (status.is_ok()) {
        metadb::MetaBatch batch;
        for (uint64_t c : *chunks) batch.delete_dirty(c);
        for (uint64_t id : runs) batch.delete_reserved_run(id);
        status = writer_->write_on_thread(batch);
      }
      if (status.is_ok()) {
        allocator_->finish_reclaim(*chunks);
      } else {
        PXD_LOG(kError) << "zeroing " << chunks->size()
                        << " chunks left by an unclean shutdown failed, they stay unusable"
                        << " until the next open: " << status;
      }
      reclaims_in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    });
  });
}

Tree* PoolState::tree(uint64_t id) {
  std::lock_guard<std::mutex> lock(trees_mu_);
  auto it = trees_.find(id);
  return it == trees_.end() ? nullptr : it->second.get();
}

Tree* PoolState::add_tree(uint64_t id) {
  std::lock_guard<std::mutex> lock(trees_mu_);
  auto& slot = trees_[id];
  if (!slot) slot = std::make_unique<Tree>(id);
  return slot.get();
}

void PoolState::remove_tree(uint64_t id) {
  std::lock_guard<std::mutex> lock(trees_mu_);
  trees_.erase(id);
}

}  // namespace pxd
