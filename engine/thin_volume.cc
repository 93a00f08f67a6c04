#include "engine/thin_volume.h"

#include <linux/fs.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/map_extents.h"
#include "engine/pending_change.h"

namespace pxd {
namespace {

// volume_flags bits of a request.
constexpr uint32_t kTracked = 1u << 0;        // in the tree's active list
constexpr uint32_t kNeedsMetaSync = 1u << 1;  // FUA: sync metadata before completing
constexpr uint32_t kMetaSynced = 1u << 2;     // that sync has been done

int errno_of(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return 0;
    case StatusCode::kNoSpace:
      return -ENOSPC;
    default:
      return -EIO;
  }
}

}  // namespace

// What dispatch_mutation decided for one chunk of a request.
struct ThinVolume::Segment {
  enum class Action { kNone, kInPlace, kIntoPending, kAllocate, kCopy, kUnmap };
  Action action = Action::kNone;
  uint64_t chunk_index = 0;
  uint32_t within = 0;  // offset inside the chunk
  uint32_t length = 0;
  const std::byte* data = nullptr;  // write data, or pool zeros
  uint64_t new_chunk = kNoChunk;    // kAllocate, kCopy
  // The live entry as phase 1 saw it (kInPlace, kCopy, kUnmap), and the allocation a
  // kIntoPending write joins. Entries themselves may move once phase 2 adds one.
  uint64_t old_chunk = kNoChunk;
  uint32_t old_birth = 0;
  PendingChange* join = nullptr;
};

ThinVolume::ThinVolume(PoolState& pool, Tree& tree, uint64_t id, uint64_t size_bytes,
                       uint32_t block_size)
    : pool_(pool), tree_(tree), id_(id), size_(size_bytes), block_size_(block_size) {}

void ThinVolume::submit(IoRing& ring, IoRequest* req) {
  req->ring = &ring;
  req->volume_state = this;
  req->volume_step = &ThinVolume::step;
  req->status = 0;
  req->pending = 1;  // released by the deferred completion queued at the end of each start
  req->volume_flags = 0;
  req->inplace_segments = 0;
  req->sequence = 0;
  req->remote_pending.store(1, std::memory_order_relaxed);  // the ring's part
  req->remote_status.store(0, std::memory_order_relaxed);

  uint64_t size = size_bytes();
  bool bad = false;
  if (req->op != IoOp::kFlush) {
    bad = req->length == 0 || req->offset % block_size_ != 0 || req->length % block_size_ != 0 ||
          req->offset > size || req->length > size - req->offset;
    if ((req->op == IoOp::kRead || req->op == IoOp::kWrite) &&
        (req->buffer == nullptr ||
         reinterpret_cast<uintptr_t>(req->buffer) % pool_.direct_io_alignment() != 0))
      bad = true;
  }
  if (bad) {
    req->status = -EINVAL;
    ring.defer(req, 0);
    return;
  }
  Status health = pool_.writer().health();
  if (!health.is_ok() && req->op != IoOp::kRead) {
    req->status = -EIO;
    ring.defer(req, 0);
    return;
  }
  switch (req->op) {
    case IoOp::kRead:
      start_read(req);
      break;
    case IoOp::kFlush:
      start_flush(req);
      break;
    case IoOp::kWrite:
    case IoOp::kDiscard:
    case IoOp::kWriteZeroes:
      dispatch_mutation(req);
      break;
  }
}

void ThinVolume::map_extents(uint64_t offset, uint64_t length,
                             std::vector<VolumeExtent>& out) const {
  std::lock_guard<std::mutex> lock(tree_.mu);
  map_chunk_extents(tree_.live, pool_.chunk_size(), size_bytes(), offset, length, out);
}

void ThinVolume::step(IoRequest* req, int result) {
  auto* self = static_cast<ThinVolume*>(req->volume_state);
  if (result < 0 && req->status == 0) req->status = result;
  if (--req->pending == 0) self->ring_part_done(req);
}

void ThinVolume::commit_done(IoRequest* req, int error) {
  if (error < 0) {
    int32_t none = 0;
    req->remote_status.compare_exchange_strong(none, error, std::memory_order_relaxed);
  }
  // The last touch of `req` unless this takes the count to zero: the ring may finish it
  // at once otherwise.
  if (req->remote_pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  req->ring->post([req] { static_cast<ThinVolume*>(req->volume_state)->ring_part_done(req); });
}

void ThinVolume::ring_part_done(IoRequest* req) {
  // When a commit is the last to finish, this runs twice: once when the ring's part is
  // done (it drops the ring's count), then from commit_done()'s post (the count is zero).
  // A FUA write's metadata sync, after finish(), also ends here with the count at zero.
  if (req->remote_pending.load(std::memory_order_acquire) != 0 &&
      req->remote_pending.fetch_sub(1, std::memory_order_acq_rel) != 1)
    return;
  int32_t error = req->remote_status.load(std::memory_order_relaxed);
  if (error < 0 && req->status == 0) req->status = error;
  finish(req);
}

void ThinVolume::start_read(IoRequest* req) {
  const uint32_t cs = pool_.chunk_size();
  struct Piece {
    std::byte* buf;
    uint32_t length;
    uint64_t chunk;
    uint32_t within;
  };
  thread_local std::vector<Piece> pieces;
  pieces.clear();
  {
    std::lock_guard<std::mutex> lock(tree_.mu);
    req->sequence = pool_.next_sequence();
    req->volume_flags |= kTracked;
    tree_.track(req);
    uint64_t off = req->offset, left = req->length;
    std::byte* buf = req->buffer;
    while (left > 0) {
      uint64_t ci = off / cs;
      uint32_t within = static_cast<uint32_t>(off % cs);
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(cs - within, left));
      const LiveEntry* e = tree_.live.find(ci);
      uint64_t chunk = e ? e->pool_chunk : kNoChunk;
      pieces.push_back({buf, n, chunk, within});
      off += n;
      left -= n;
      buf += n;
    }
  }
  for (const Piece& p : pieces) {
    if (p.chunk == kNoChunk) {
      std::memset(p.buf, 0, p.length);
      continue;
    }
    auto loc = pool_.locate(p.chunk);
    ++req->pending;
    req->ring->read(loc.fd, p.buf, p.length, loc.offset + p.within, req);
  }
  req->ring->defer(req, 0);
}

void ThinVolume::start_flush(IoRequest* req) {
  for (const auto& dev : pool_.devices()) {
    ++req->pending;
    req->ring->fdatasync(dev->fd(), req);
  }
  // Extents of completed first writes may still be queued: sync up to everything queued.
  MetaWriter& writer = pool_.writer();
  if (writer.durable_sequence() < writer.queued_sequence()) {
    ++req->pending;
    IoRing* ring = req->ring;
    writer.sync([ring, req](const Status& s) {
      int err = errno_of(s);
      ring->post([req, err] { ThinVolume::step(req, err); });
    });
  }
  req->ring->defer(req, 0);
}

void ThinVolume::redispatch_later(IoRequest* req) {
  req->ring->post([this, req] { dispatch_mutation(req); });
}

void ThinVolume::dispatch_mutation(IoRequest* req) {
  const uint32_t cs = pool_.chunk_size();
  const bool is_write = req->op == IoOp::kWrite;
  const bool fua = is_write && (req->flags & kIoFua);
  thread_local std::vector<Segment> segs;
  segs.clear();

  std::unique_lock<std::mutex> lock(tree_.mu);
  if (!(req->volume_flags & kTracked)) {
    req->sequence = pool_.next_sequence();
    req->volume_flags |= kTracked;
    tree_.track(req);
  }
  const uint32_t gen = tree_.generation;
  const uint32_t newest_snapshot = tree_.newest_snapshot();
  const uint64_t volume_end = size_bytes();
  bool drain_needed = !tree_.inplace_writes.empty() && tree_.inplace_writes.begin()->first < gen;

  // Phase 1: decide, without side effects except taking chunks from the reserve.
  PendingChange* wait_on = nullptr;
  bool wait_drain = false;
  int fail = 0;
  bool wait_alloc = false;
  uint64_t off = req->offset, left = req->length;
  const std::byte* data = req->buffer;
  while (left > 0 && !wait_on && !wait_drain && !fail && !wait_alloc) {
    Segment s;
    s.chunk_index = off / cs;
    s.within = static_cast<uint32_t>(off % cs);
    s.length = static_cast<uint32_t>(std::min<uint64_t>(cs - s.within, left));
    s.data = is_write ? data : pool_.zeros();
    bool whole = s.within == 0 && (s.length == cs || off + s.length == volume_end);
    LiveEntry* e = tree_.live.find(s.chunk_index);
    if (e) {
      s.old_chunk = e->pool_chunk;
      s.old_birth = e->birth;
    }
    bool need_chunk = false;
    if (e && e->pending) {
      // Joining a fresh allocation is safe only within its generation: after a snapshot,
      // the chunk being allocated belongs to the snapshot too, and this write must copy.
      PendingChange* change = tree_.change_at(s.chunk_index);
      if (is_write && change->kind == PendingChange::Kind::kAllocate && change->birth == gen) {
        s.action = Segment::Action::kIntoPending;
        s.join = change;
      } else {
        wait_on = change;
      }
    } else if (!e) {
      if (is_write) {
        s.action = Segment::Action::kAllocate;
        need_chunk = true;
      }
    } else if (!is_write && whole) {
      s.action = Segment::Action::kUnmap;
    } else {
      bool exclusive = e->birth > newest_snapshot;
      if (exclusive && e->maybe_shared) {
        if (pool_.allocator().references(e->pool_chunk) == 1) {
          e->maybe_shared = false;
        } else {
          exclusive = false;
        }
      }
      if (exclusive) {
        s.action = Segment::Action::kInPlace;
      } else if (drain_needed) {
        wait_drain = true;
      } else {
        s.action = Segment::Action::kCopy;
        need_chunk = true;
      }
    }
    if (need_chunk) {
      auto st = pool_.allocator().allocate(&s.new_chunk, tree_.id,
                                           [this, req] { redispatch_later(req); });
      if (st == ChunkAllocator::AllocStatus::kWait) {
        wait_alloc = true;
      } else if (st == ChunkAllocator::AllocStatus::kNoSpace) {
        fail = -ENOSPC;
      }
    }
    if (!wait_on && !wait_drain && !fail && !wait_alloc) segs.push_back(s);
    off += s.length;
    left -= s.length;
    if (is_write) data += s.length;
  }
  if (wait_on || wait_drain || fail || wait_alloc) {
    for (const Segment& s : segs) {
      if (s.new_chunk != kNoChunk) pool_.allocator().unallocate(s.new_chunk);
    }
    if (wait_on) {
      req->next_waiter = wait_on->waiters;
      wait_on->waiters = req;
    } else if (wait_drain) {
      req->next_waiter = tree_.drain_waiters;
      tree_.drain_waiters = req;
    } else if (fail) {
      req->status = fail;
      req->ring->defer(req, 0);
    }
    lock.unlock();
    if (wait_alloc) pool_.request_refill();
    return;
  }

  // Phase 2: start everything.
  req->generation = gen;
  std::vector<PendingChange*> to_copy;
  bool changes = false;
  for (Segment& s : segs) {
    switch (s.action) {
      case Segment::Action::kNone:
        break;
      case Segment::Action::kInPlace: {
        auto loc = pool_.locate(s.old_chunk);
        ++req->pending;
        ++req->inplace_segments;
        req->ring->write(loc.fd, s.data, s.length, loc.offset + s.within, fua ? RWF_DSYNC : 0, req);
        break;
      }
      case Segment::Action::kIntoPending: {
        // Like the allocation it joins: complete once the data is in the chunk and the
        // extent's batch is written.
        PendingChange* p = s.join;
        auto loc = pool_.locate(p->new_chunk);
        ++req->pending;
        ++req->inplace_segments;
        req->remote_pending.fetch_add(1, std::memory_order_relaxed);
        p->commit_waiters.push_back(req);
        req->ring->write(loc.fd, s.data, s.length, loc.offset + s.within, fua ? RWF_DSYNC : 0, req);
        break;
      }
      case Segment::Action::kAllocate: {
        // The entry names the new chunk at once, so the data is readable as soon as it is
        // in the chunk. The extent goes into the journal first, under the tree lock (a
        // flush, FUA, snapshot or clone queued after the write completes is ordered after
        // it): in the kernel's page cache once the call returns, so a SIGKILL of pxd
        // cannot lose it, and in the store, written, before anything queued later. If the
        // journal is full (or absent), the extent's batch is queued instead and written
        // while the data is; the write then completes when both are done.
        LiveEntry entry{s.new_chunk, gen, false, true};
        if (uint64_t seq =
                pool_.writer().journal_extent(tree_.id, s.chunk_index, gen, s.new_chunk)) {
          tree_.add_live(s.chunk_index, entry);
          tree_.last_commit = seq;
          pool_.settle_reserved(s.new_chunk);  // its run's record goes behind the extent
        } else {
          auto* p = new_change(PendingChange::Kind::kAllocate, s.chunk_index, gen);
          p->new_chunk = s.new_chunk;
          tree_.set_change(s.chunk_index, tree_.add_live(s.chunk_index, entry), p);
          req->remote_pending.fetch_add(1, std::memory_order_relaxed);
          p->commit_waiters.push_back(req);
          queue_commit(p, req->ring);
        }
        auto loc = pool_.locate(s.new_chunk);
        ++req->pending;
        ++req->inplace_segments;
        req->ring->write(loc.fd, s.data, s.length, loc.offset + s.within, fua ? RWF_DSYNC : 0, req);
        changes = true;
        break;
      }
      case Segment::Action::kCopy: {
        auto* p = new_change(PendingChange::Kind::kCopy, s.chunk_index, gen);
        p->new_chunk = s.new_chunk;
        p->old_chunk = s.old_chunk;
        p->old_birth = s.old_birth;
        p->ring = req->ring;
        p->overlay_within = s.within;
        p->overlay_length = s.length;
        p->overlay = s.data;
        tree_.set_change(s.chunk_index, *tree_.live.find(s.chunk_index), p);
        req->remote_pending.fetch_add(1, std::memory_order_relaxed);
        p->commit_waiters.push_back(req);
        to_copy.push_back(p);
        changes = true;
        break;
      }
      case Segment::Action::kUnmap: {
        auto* p = new_change(PendingChange::Kind::kUnmap, s.chunk_index, gen);
        p->old_chunk = s.old_chunk;
        p->old_birth = s.old_birth;
        tree_.set_change(s.chunk_index, *tree_.live.find(s.chunk_index), p);
        req->remote_pending.fetch_add(1, std::memory_order_relaxed);
        p->commit_waiters.push_back(req);
        queue_commit(p, req->ring);
        break;
      }
    }
  }
  if (req->inplace_segments > 0) ++tree_.inplace_writes[gen];
  if (fua) req->volume_flags |= kNeedsMetaSync;
  lock.unlock();
  if (changes) pool_.request_refill();

  for (PendingChange* p : to_copy) {
    void* buf = nullptr;
    if (posix_memalign(&buf, 4096, pool_.chunk_size()) != 0) {
      fail_change(p, -ENOMEM);
      continue;
    }
    p->buffer = static_cast<std::byte*>(buf);
    auto loc = pool_.locate(p->old_chunk);
    p->ring->read(loc.fd, p->buffer, pool_.chunk_size(), loc.offset, p);
  }
  req->ring->defer(req, 0);
}

// Copy-on-write, on the ring of the request that started it: read the old chunk, overlay
// the new data, write the whole chunk durably, then commit.
void ThinVolume::copy_step(PendingChange* p, int result) {
  const uint32_t cs = pool_.chunk_size();
  if (result < 0 || static_cast<uint32_t>(result) != cs) {
    fail_change(p, result < 0 ? result : -EIO);
    return;
  }
  if (p->copy_state == PendingChange::CopyState::kReading) {
    std::memcpy(p->buffer + p->overlay_within, p->overlay, p->overlay_length);
    p->copy_state = PendingChange::CopyState::kWriting;
    auto loc = pool_.locate(p->new_chunk);
    // Durable before the extent commits: the old chunk's data must never be lost to a
    // crash that keeps the new map but not the new chunk's data.
    p->ring->write(loc.fd, p->buffer, cs, loc.offset, RWF_DSYNC, p);
    return;
  }
  std::free(p->buffer);
  p->buffer = nullptr;
  commit_change(p);
}

PendingChange* ThinVolume::new_change(PendingChange::Kind kind, uint64_t chunk_index,
                                      uint32_t generation) {
  changes_in_flight_.fetch_add(1, std::memory_order_relaxed);
  return new PendingChange(kind, this, chunk_index, generation);
}

void ThinVolume::end_change(PendingChange* p) {
  delete p;
  changes_in_flight_.fetch_sub(1, std::memory_order_release);
}

ThinVolume::~ThinVolume() {
  // finalize_change() and fail_change() release their requests' commits (commit_done()),
  // after which the rings complete them, so a request can complete, and its handle be
  // released, before they have made end_change() their last touch of this object. Every change
  // still in flight here is in that window, on the metadata thread, queued before this job: once it
  // has run, they are done.
  if (changes_in_flight_.load(std::memory_order_acquire) > 0) pool_.writer().run_and_wait([] {});
}

void ThinVolume::commit_change(PendingChange* p) {
  std::lock_guard<std::mutex> lock(tree_.mu);
  queue_commit(p);
}

void ThinVolume::queue_commit(PendingChange* p, IoRing* ring) {
  p->queued = true;
  metadb::MetaBatch batch;
  if (p->kind != PendingChange::Kind::kAllocate) {
    pool_.end_live_entry(tree_, p->chunk_index, p->old_birth, p->old_chunk, p->birth, batch,
                         p->freed);
  }
  uint64_t settled = kNoChunk;
  if (p->kind != PendingChange::Kind::kUnmap) {
    batch.put_extent({tree_.id, p->chunk_index, p->birth}, {p->new_chunk, metadb::kLiveGeneration});
    settled = p->new_chunk;  // p may be gone once its batch is queued
  }
  // Sequence numbers are handed out in queue order; under the tree lock, so last_commit
  // only grows.
  MetaWriter& writer = pool_.writer();
  MetaWriter::Done done = [this, p](const Status& s) { finalize_change(p, s); };
  if (ring) {
    tree_.last_commit = writer.commit_unwoken(std::move(batch), false, std::move(done));
    ring->after_submit(&MetaWriter::wake, &writer);
  } else {
    tree_.last_commit = writer.commit(std::move(batch), false, std::move(done));
  }
  // The chunk's reserved run stops covering it only behind this batch (settle_reserved).
  if (settled != kNoChunk) pool_.settle_reserved(settled);
}

// Runs on the metadata thread once the change's batch is written (or failed).
void ThinVolume::finalize_change(PendingChange* p, const Status& status) {
  int err = errno_of(status);
  std::vector<IoRequest*> commit_waiters;
  IoRequest* waiters;
  {
    std::lock_guard<std::mutex> lock(tree_.mu);
    if (status.is_ok() && p->kind == PendingChange::Kind::kUnmap) {
      tree_.erase_live(p->chunk_index);
    } else if (status.is_ok() && p->kind == PendingChange::Kind::kCopy) {
      // A clone taken while the batch was queued shares the new chunk (Pool::view_of).
      bool shared = pool_.allocator().references(p->new_chunk) > 1;
      tree_.replace_live(*tree_.live.find(p->chunk_index),
                         LiveEntry{p->new_chunk, p->birth, shared, !shared});
      tree_.end_change(p->chunk_index);
    } else {
      // An allocation names its chunk from the start (and a clone may have marked it
      // shared since). If its commit failed, the writes into it fail with it; their data
      // stays readable until restart, and the pool, now read-only, fails every flush.
      tree_.end_change(p->chunk_index);
    }
    commit_waiters.swap(p->commit_waiters);
    waiters = p->waiters;
  }
  if (status.is_ok()) pool_.retire(p->freed);
  for (IoRequest* r : commit_waiters) commit_done(r, err);
  for (IoRequest* r = waiters; r;) {
    IoRequest* next = r->next_waiter;
    redispatch_later(r);
    r = next;
  }
  end_change(p);  // last: ~ThinVolume may run as soon as the count drops
}

// A copy failed before its commit: the old mapping stays, the new chunk (which may hold
// part of the copy) is retired dirty, and every request waiting on it is told or retried.
void ThinVolume::fail_change(PendingChange* p, int error) {
  std::vector<IoRequest*> commit_waiters;
  IoRequest* waiters;
  {
    std::lock_guard<std::mutex> lock(tree_.mu);
    tree_.end_change(p->chunk_index);
    commit_waiters.swap(p->commit_waiters);
    waiters = p->waiters;
  }
  pool_.allocator().drop_reference(p->new_chunk, tree_.id);
  pool_.retire({p->new_chunk});
  // Completed from the ring's queue, not from here: a completion may release the last
  // handle, and this object must outlive end_change() (see ~ThinVolume).
  for (IoRequest* r : commit_waiters) commit_done(r, error);
  for (IoRequest* r = waiters; r;) {
    IoRequest* next = r->next_waiter;
    redispatch_later(r);
    r = next;
  }
  std::free(p->buffer);
  end_change(p);
}

void ThinVolume::finish(IoRequest* req) {
  if ((req->volume_flags & kNeedsMetaSync) && !(req->volume_flags & kMetaSynced) &&
      req->status == 0) {
    // A FUA write is durable only if the extents it lands in are: sync the metadata when
    // this tree has commits that may not be durable yet.
    uint64_t last;
    {
      std::lock_guard<std::mutex> lock(tree_.mu);
      last = tree_.last_commit;
    }
    req->volume_flags |= kMetaSynced;
    if (pool_.writer().durable_sequence() < last) {
      req->pending = 1;
      IoRing* ring = req->ring;
      pool_.writer().sync([ring, req](const Status& s) {
        int err = errno_of(s);
        ring->post([req, err] { ThinVolume::step(req, err); });
      });
      return;
    }
  }
  complete(req);
}

void ThinVolume::complete(IoRequest* req) {
  if (req->volume_flags & kTracked) {
    IoRequest* drained = nullptr;
    bool was_oldest;
    {
      std::lock_guard<std::mutex> lock(tree_.mu);
      was_oldest = tree_.active_head == req;
      tree_.untrack(req);
      if (req->inplace_segments > 0) {
        auto it = tree_.inplace_writes.find(req->generation);
        if (--it->second == 0) tree_.inplace_writes.erase(it);
      }
      if (tree_.drain_waiters && (tree_.inplace_writes.empty() ||
                                  tree_.inplace_writes.begin()->first >= tree_.generation)) {
        drained = tree_.drain_waiters;
        tree_.drain_waiters = nullptr;
      }
    }
    for (IoRequest* r = drained; r;) {
      IoRequest* next = r->next_waiter;
      redispatch_later(r);
      r = next;
    }
    if (was_oldest) pool_.maybe_reclaim();
  }
  req->done(req, req->status);
}

}  // namespace pxd

namespace pxd {
void PendingChange::on_complete(int result) {
  volume->copy_step(this, result);
}
}  // namespace pxd
