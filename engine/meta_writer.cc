#include "engine/meta_writer.h"

#include <algorithm>
#include <future>

#include "common/log.h"
#include "engine/io_ring.h"

namespace pxd {

MetaWriter::MetaWriter(metadb::MetaStore* store) : store_(store) {
  syncer_ = std::thread([this] { sync_loop(); });
  thread_ = std::thread([this] { loop(); });
}

MetaWriter::~MetaWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // The writer stops once its queue is empty and the syncer idle (a callback on the
  // syncer may still queue work); then the syncer has nothing left to wait for.
  thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    writer_done_ = true;
  }
  sync_cv_.notify_all();
  syncer_.join();
  // Every record is in the store now (or the store failed, and the next open replays
  // what the journal still has).
  if (journal_ && failure_.is_ok()) ExtentJournal::remove(journal_->path());
}

uint64_t MetaWriter::commit(metadb::MetaBatch batch, bool sync, Done done) {
  return enqueue_commit(std::move(batch), sync, std::move(done), true);
}

uint64_t MetaWriter::commit_unwoken(metadb::MetaBatch batch, bool sync, Done done) {
  return enqueue_commit(std::move(batch), sync, std::move(done), false);
}

uint64_t MetaWriter::enqueue_commit(metadb::MetaBatch batch, bool sync, Done done, bool wake) {
  std::lock_guard<std::mutex> lock(mu_);
  Item item{Kind::kCommit, std::move(batch), sync, next_sequence_++, std::move(done), {}};
  uint64_t seq = item.sequence;
  queue_.push_back(std::move(item));
  if (wake) cv_.notify_one();
  return seq;
}

void MetaWriter::wake(void* writer) {
  auto* self = static_cast<MetaWriter*>(writer);
  std::lock_guard<std::mutex> lock(self->mu_);
  if (!self->queue_.empty()) self->cv_.notify_one();
}

void MetaWriter::attach_journal(std::unique_ptr<ExtentJournal> journal,
                                const metadb::JournalState& state) {
  std::lock_guard<std::mutex> lock(mu_);
  journal_ = std::move(journal);
  journal_state_ = state;
  journal_pending_.reserve(journal_->capacity());
  journal_taken_.reserve(journal_->capacity());
}

uint64_t MetaWriter::journal_extent(uint64_t tree, uint64_t chunk_index, uint32_t birth,
                                    uint64_t pool_chunk) {
  JournalRecord record{0, tree, chunk_index, pool_chunk, birth};
  uint64_t slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!journal_ || !failure_.is_ok() ||
        journal_written_ - journal_applied_ >= journal_->capacity())
      return 0;
    record.sequence = next_sequence_++;
    slot = journal_written_++;
    journal_pending_.push_back(record);
    if (!journal_wake_ && journal_pending_.size() >= journal_->capacity() / 4) {
      journal_wake_ = true;
      cv_.notify_one();
    }
  }
  // Outside the lock: the slot is this record's alone until the writer has put it in the
  // store, and a record the store has is never replayed.
  journal_->write(slot, record);
  return record.sequence;
}

void MetaWriter::sync(Done done) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(Item{Kind::kSync, {}, true, next_sequence_, std::move(done), {}});
  cv_.notify_one();
}

void MetaWriter::run(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(Item{Kind::kRun, {}, false, next_sequence_, {}, std::move(fn)});
  cv_.notify_one();
}

std::future<Status> MetaWriter::commit_later(metadb::MetaBatch batch, bool sync) {
  auto promise = std::make_shared<std::promise<Status>>();
  auto future = promise->get_future();
  commit(std::move(batch), sync, [promise](const Status& s) { promise->set_value(s); });
  return future;
}

Status MetaWriter::commit_and_wait(metadb::MetaBatch batch, bool sync) {
  return commit_later(std::move(batch), sync).get();
}

Status MetaWriter::sync_and_wait() {
  std::promise<Status> promise;
  auto future = promise.get_future();
  sync([&promise](const Status& s) { promise.set_value(s); });
  return future.get();
}

void MetaWriter::run_and_wait(std::function<void()> fn) {
  std::promise<void> promise;
  auto future = promise.get_future();
  run([&] {
    fn();
    // Behind every hand-off made so far: returns once their callbacks have run. It asks
    // for nothing to be durable itself.
    std::lock_guard<std::mutex> lock(mu_);
    handoffs_.push_back(Handoff{0, [&promise](const Status&) { promise.set_value(); }});
    sync_cv_.notify_one();
  });
  future.get();
}

Status MetaWriter::write_on_thread(metadb::MetaBatch& batch) {
  Status status = health();
  if (!status.is_ok()) return status;
  status = store_->write(batch, false);
  std::lock_guard<std::mutex> lock(mu_);
  if (!status.is_ok()) {
    if (failure_.is_ok()) failure_ = status;
  } else {
    ++written_;
  }
  return status;
}

void MetaWriter::after_durable(Done done) {
  hand_off(std::move(done));
}

void MetaWriter::hand_off(Done done) {
  std::lock_guard<std::mutex> lock(mu_);
  handoffs_.push_back(Handoff{written_, std::move(done)});
  sync_cv_.notify_one();
}

uint64_t MetaWriter::queued_sequence() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_sequence_ - 1;
}

uint64_t MetaWriter::committed_sequence() const {
  std::lock_guard<std::mutex> lock(mu_);
  return committed_;
}

uint64_t MetaWriter::durable_sequence() const {
  std::lock_guard<std::mutex> lock(mu_);
  return durable_;
}

Status MetaWriter::health() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

// Writes items [0, end), all commits, and the journal records before them as one batch,
// unsynced; those that asked for a sync are handed to the syncer.
void MetaWriter::write_group(std::deque<Item>& items, size_t end,
                             const std::vector<JournalRecord>& records, size_t* next,
                             size_t record_end) {
  metadb::MetaBatch group;
  uint64_t last = 0;
  size_t r = *next;
  auto put_records_below = [&](uint64_t sequence) {
    for (; r < record_end && records[r].sequence < sequence; ++r) {
      const JournalRecord& rec = records[r];
      group.put_extent({rec.tree, rec.chunk_index, rec.birth},
                       {rec.pool_chunk, metadb::kLiveGeneration});
      last = rec.sequence;
    }
  };
  for (size_t i = 0; i < end; ++i) {
    put_records_below(items[i].sequence);
    group.append(std::move(items[i].batch));
    last = items[i].sequence;
  }
  put_records_below(UINT64_MAX);
  const size_t journaled = r - *next;
  if (journaled > 0) {
    journal_state_.applied = records[r - 1].sequence;
    group.put_journal_state(journal_state_);
  }
  *next = r;
  Status status = health();
  if (status.is_ok()) {
    status = store_->write(group, false);
    std::lock_guard<std::mutex> lock(mu_);
    if (status.is_ok()) {
      committed_ = std::max(committed_, last);
      journal_applied_ += journaled;
      ++written_;
    } else if (failure_.is_ok()) {
      failure_ = status;
      PXD_LOG(kError) << "metadata write failed, pool is now read-only: " << status;
    }
  }
  // Requests completed by these callbacks reach their rings together (see PostBatch).
  IoRing::PostBatch posts;
  for (size_t i = 0; i < end; ++i) {
    if (!items[i].done) continue;
    if (items[i].sync && status.is_ok()) {
      hand_off(std::move(items[i].done));
    } else {
      items[i].done(status);
    }
  }
}

void MetaWriter::loop() {
  for (;;) {
    std::deque<Item> items;
    std::vector<JournalRecord>& records = journal_taken_;
    records.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto idle = [&] { return queue_.empty() && handoffs_.empty() && !syncing_; };
      cv_.wait(lock, [&] {
        return !queue_.empty() || journal_wake_ ||
               (stopping_ && (idle() || !journal_pending_.empty()));
      });
      if (queue_.empty() && journal_pending_.empty())
        return;  // stopping, and nothing can queue more
      // Taken together, under the lock that numbers both: every record below an item's
      // number is here.
      items.swap(queue_);
      records.swap(journal_pending_);  // both keep their capacity: no allocation per drain
      journal_wake_ = false;
    }
    size_t next_record = 0;
    while (!items.empty() || next_record < records.size()) {
      size_t commits = 0;
      while (commits < items.size() && items[commits].kind == Kind::kCommit) ++commits;
      // Records numbered below the first sync or run item go with the commits before it.
      const uint64_t bound = commits < items.size() ? items[commits].sequence : UINT64_MAX;
      size_t record_end = next_record;
      while (record_end < records.size() && records[record_end].sequence < bound) ++record_end;
      if (commits > 0 || record_end > next_record) {
        write_group(items, commits, records, &next_record, record_end);
        items.erase(items.begin(), items.begin() + static_cast<long>(commits));
        continue;
      }
      Item item = std::move(items.front());
      items.pop_front();
      if (item.kind == Kind::kRun) {
        item.fn();
      } else {
        // kSync: everything written so far, which is everything queued before it.
        hand_off(std::move(item.done));
      }
    }
  }
}

void MetaWriter::sync_loop() {
  for (;;) {
    std::deque<Handoff> work;
    Status status;
    bool needed = false;
    uint64_t sequence = 0, written = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      sync_cv_.wait(lock, [&] { return writer_done_ || !handoffs_.empty(); });
      if (handoffs_.empty()) return;  // the writer has stopped
      work.swap(handoffs_);
      syncing_ = true;
      for (const Handoff& h : work) needed = needed || h.written > written_durable_;
      status = failure_;
      // Everything counted here was written before the sync below starts: it covers them.
      sequence = committed_;
      written = written_;
    }
    if (status.is_ok() && needed) {
      status = store_->sync();
      std::lock_guard<std::mutex> lock(mu_);
      if (status.is_ok()) {
        durable_ = std::max(durable_, sequence);
        written_durable_ = std::max(written_durable_, written);
      } else if (failure_.is_ok()) {
        failure_ = status;
        PXD_LOG(kError) << "metadata sync failed, pool is now read-only: " << status;
      }
    }
    {
      IoRing::PostBatch posts;
      for (Handoff& h : work) h.done(status);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      syncing_ = false;
    }
    cv_.notify_all();  // a stopping writer waits for the syncer to be idle
  }
}

}  // namespace pxd
