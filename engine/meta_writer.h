// engine/meta_writer.h: the metadata thread.
//
// All writes to the metadata store happen on this one thread, in the order they were
// queued. Batches queued while a write is running are grouped into the next RocksDB
// write (group commit); a sync request makes every earlier write durable with one WAL
// sync. Blocking maintenance (reserve refill, reclaim) also runs here, in queue order, so
// the I/O threads never block on the store.
//
// Completion callbacks run on the metadata thread; code that must continue on a ring
// thread posts there (IoRing::post). After a failed write the writer is *failed*: every
// later commit fails with the same status, because memory and disk may disagree.
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "metadb/meta_store.h"

namespace pxd {

class MetaWriter {
 public:
  using Done = std::function<void(const Status&)>;

  explicit MetaWriter(metadb::MetaStore* store);
  // Drains the queue, then stops the thread.
  ~MetaWriter();

  // Queues `batch`. Returns its commit sequence number (1, 2, ...). done(status) runs once
  // the batch is written (and synced, if `sync`).
  uint64_t commit(metadb::MetaBatch batch, bool sync, Done done);
  // done runs once every commit queued before this call is durable.
  void sync(Done done);
  // Runs fn on the metadata thread after everything queued before it.
  void run(std::function<void()> fn);

  // Writes `batch` at once. REQUIRES: called on the metadata thread (from a run() job), so
  // it is ordered with queued commits. Updates the failure state like a commit.
  Status write_on_thread(metadb::MetaBatch& batch, bool sync);

  // Queues `batch` now and returns a future for its status. Control operations call it
  // while holding the tree lock, so that their batch is ordered before any I/O commit
  // that already depends on the in-memory change, and wait after releasing the lock.
  std::future<Status> commit_later(metadb::MetaBatch batch, bool sync);

  // Blocking forms for the control path (never call from a ring thread).
  Status commit_and_wait(metadb::MetaBatch batch, bool sync);
  Status sync_and_wait();
  void run_and_wait(std::function<void()> fn);

  // Highest sequence number queued, written, and durable. queued >= committed >= durable.
  uint64_t queued_sequence() const;
  uint64_t committed_sequence() const;
  uint64_t durable_sequence() const;
  // Ok, or the first failure.
  Status health() const;

 private:
  enum class Kind { kCommit, kSync, kRun };
  struct Item {
    Kind kind;
    metadb::MetaBatch batch;
    bool sync = false;
    uint64_t sequence = 0;
    Done done;
    std::function<void()> fn;
  };
  void loop();
  void write_group(std::deque<Item>& items, size_t end);

  metadb::MetaStore* store_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;      // GUARDED_BY(mu_)
  uint64_t next_sequence_ = 1;  // GUARDED_BY(mu_)
  uint64_t committed_ = 0;      // GUARDED_BY(mu_)
  uint64_t durable_ = 0;        // GUARDED_BY(mu_)
  Status failure_;              // GUARDED_BY(mu_)
  bool stopping_ = false;       // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace pxd
