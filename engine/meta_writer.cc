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

void MetaWriter::sync(Done done) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(Item{Kind::kSync, {}, true, 0, std::move(done), {}});
  cv_.notify_one();
}

void MetaWriter::run(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(Item{Kind::kRun, {}, false, 0, {}, std::move(fn)});
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

// Writes items [0, end), all commits, as one batch, unsynced; those that asked for a sync
// are handed to the syncer.
void MetaWriter::write_group(std::deque<Item>& items, size_t end) {
  metadb::MetaBatch group;
  uint64_t last = 0;
  for (size_t i = 0; i < end; ++i) {
    group.append(std::move(items[i].batch));
    last = items[i].sequence;
  }
  Status status = health();
  if (status.is_ok()) {
    status = store_->write(group, false);
    std::lock_guard<std::mutex> lock(mu_);
    if (status.is_ok()) {
      committed_ = last;
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
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto idle = [&] { return queue_.empty() && handoffs_.empty() && !syncing_; };
      cv_.wait(lock, [&] { return !queue_.empty() || (stopping_ && idle()); });
      if (queue_.empty()) return;  // stopping, and nothing can queue more
      items.swap(queue_);
    }
    while (!items.empty()) {
      size_t commits = 0;
      while (commits < items.size() && items[commits].kind == Kind::kCommit) ++commits;
      if (commits > 0) {
        write_group(items, commits);
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
