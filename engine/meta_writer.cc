#include "engine/meta_writer.h"

#include <future>

#include "common/log.h"

namespace pxd {

MetaWriter::MetaWriter(metadb::MetaStore* store) : store_(store) {
  thread_ = std::thread([this] { loop(); });
}

MetaWriter::~MetaWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t MetaWriter::commit(metadb::MetaBatch batch, bool sync, Done done) {
  std::lock_guard<std::mutex> lock(mu_);
  Item item{Kind::kCommit, std::move(batch), sync, next_sequence_++, std::move(done), {}};
  uint64_t seq = item.sequence;
  queue_.push_back(std::move(item));
  cv_.notify_one();
  return seq;
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
    promise.set_value();
  });
  future.get();
}

Status MetaWriter::write_on_thread(metadb::MetaBatch& batch, bool sync) {
  Status status = health();
  if (!status.is_ok()) return status;
  status = store_->write(batch, sync);
  std::lock_guard<std::mutex> lock(mu_);
  if (!status.is_ok()) {
    failure_ = status;
  } else if (sync) {
    durable_ = committed_;
  }
  return status;
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

// Writes items [0, end), all commits, as one batch; syncs if any of them asked to.
void MetaWriter::write_group(std::deque<Item>& items, size_t end) {
  metadb::MetaBatch group;
  bool sync = false;
  uint64_t last = 0;
  for (size_t i = 0; i < end; ++i) {
    group.append(std::move(items[i].batch));
    sync = sync || items[i].sync;
    last = items[i].sequence;
  }
  Status status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status = failure_;
  }
  if (status.is_ok()) {
    status = store_->write(group, sync);
    std::lock_guard<std::mutex> lock(mu_);
    if (status.is_ok()) {
      committed_ = last;
      if (sync) durable_ = last;
    } else {
      failure_ = status;
      PXD_LOG(kError) << "metadata write failed, pool is now read-only: " << status;
    }
  }
  for (size_t i = 0; i < end; ++i) {
    if (items[i].done) items[i].done(status);
  }
}

void MetaWriter::loop() {
  for (;;) {
    std::deque<Item> items;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
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
        continue;
      }
      // kSync: durable up to everything committed so far.
      Status status;
      uint64_t target;
      {
        std::lock_guard<std::mutex> lock(mu_);
        status = failure_;
        target = committed_;
      }
      if (status.is_ok() && durable_sequence() < target) {
        status = store_->sync();
        std::lock_guard<std::mutex> lock(mu_);
        if (status.is_ok()) {
          durable_ = target;
        } else {
          failure_ = status;
        }
      }
      item.done(status);
    }
  }
}

}  // namespace pxd
