// engine/meta_writer.h: the metadata thread, and its sync thread.
//
// All writes to the metadata store happen on one thread, the *writer*, in the order they
// were queued. Batches queued while a write is running are grouped into the next RocksDB
// write (group commit). Blocking maintenance (reserve refill, reclaim) also runs there, in
// queue order, so the I/O threads never block on the store.
//
// The writer never syncs: making writes durable (a WAL sync, tens of ms on a busy
// filesystem) is the *syncer* thread's, so that writes go on while a sync runs. When a
// queued item needs durability (a commit with `sync`, a sync(), a run() job's
// after_durable()), the writer writes what comes before it and hands the syncer "durable up
// to here, then run this". The syncer takes every hand-off waiting, syncs once if any of
// them is not durable yet, and runs their callbacks in hand-off order. (Nothing syncs on
// the writer: the reclaimer too waits for durability through after_durable(), and zeroes
// chunks on a thread of its own; see PoolState.)
//
// Callbacks: done(status) of a commit without sync runs on the writer, right after its
// write; every other callback (commits with sync, sync(), after_durable()) runs on the
// syncer, once durable. Code that must continue on a ring thread posts there
// (IoRing::post). After a failed write or sync the writer is *failed*: every later commit
// and sync fails with the same status, because memory and disk may disagree.
//
// Ordering: queued >= committed >= durable, each only grows. A callback on the syncer
// sees everything queued before its item written and durable (or the failure).
//
// The extent journal (extent_journal.h), once attached, holds first writes' extents that
// are not in the store yet. Each record takes a sequence number like a commit; the writer
// moves pending records into its writes, in sequence order with the commits and before
// any sync() or run() item queued after them, together with the journal's state record
// (the highest sequence applied). It is woken for them only when a quarter of the
// journal is pending, or by anything queued after them.
//
// Thread safety: every public method may be called from any thread unless it says
// otherwise.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "engine/extent_journal.h"
#include "metadb/meta_store.h"

namespace pxd {

class MetaWriter {
 public:
  using Done = std::function<void(const Status&)>;

  explicit MetaWriter(metadb::MetaStore* store);
  // Drains the queue and every callback waiting for a sync, then stops both threads.
  ~MetaWriter();

  // Queues `batch`. Returns its commit sequence number (1, 2, ...). done(status) runs once
  // the batch is written (on the writer) or, if `sync`, written and durable (on the syncer).
  uint64_t commit(metadb::MetaBatch batch, bool sync, Done done);
  // As commit(), without waking the writer: the caller has wake() called soon after. A
  // ring thread queues the batch of a first write this way and wakes the writer once the
  // data write that goes with it is submitted (IoRing::after_submit), so that the woken
  // writer never holds up the submission. Until then the batch waits, unless something
  // queued later wakes the writer first.
  uint64_t commit_unwoken(metadb::MetaBatch batch, bool sync, Done done);
  // Wakes the writer if it waits with work queued. `writer` is a MetaWriter* (the form
  // IoRing::after_submit takes).
  static void wake(void* writer);
  // Attaches the journal whose records `state` (already in the store) authenticates.
  // REQUIRES: before any journal_extent() call.
  void attach_journal(std::unique_ptr<ExtentJournal> journal, const metadb::JournalState& state);
  // Records a first write's extent, live from `birth`, in the journal, and returns its
  // sequence number; the writer puts it in the store later (see above). Returns 0, having
  // done nothing, if no journal is attached, or it is full, or the writer has failed: the
  // caller commits a batch instead.
  uint64_t journal_extent(uint64_t tree, uint64_t chunk_index, uint32_t birth, uint64_t pool_chunk);

  // done runs (on the syncer) once every commit queued before this call is durable.
  void sync(Done done);
  // Runs fn on the writer after everything queued before it has been written.
  void run(std::function<void()> fn);

  // Writes `batch` at once, without syncing. REQUIRES: called on the writer (from a run()
  // job), so it is ordered with queued commits. Updates the failure state like a commit.
  Status write_on_thread(metadb::MetaBatch& batch);
  // Runs done(status) on the syncer once everything written so far (commits and
  // write_on_thread() alike) is durable, after the callbacks handed over before it.
  // REQUIRES: called on the writer (from a run() job).
  void after_durable(Done done);

  // Queues `batch` now and returns a future for its status. Control operations call it
  // while holding the tree lock, so that their batch is ordered before any I/O commit
  // that already depends on the in-memory change, and wait after releasing the lock.
  std::future<Status> commit_later(metadb::MetaBatch batch, bool sync);

  // Blocking forms for the control path (never call from a ring thread or either of this
  // object's threads).
  Status commit_and_wait(metadb::MetaBatch batch, bool sync);
  Status sync_and_wait();
  // Runs fn on the writer after everything queued before it, and returns once fn has run
  // and every callback of what was queued before it, including those waiting for a sync
  // (a refill's), has run.
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
    // A commit's number; for a sync or run item, the number the next commit would have
    // had (journal records below it go first).
    uint64_t sequence = 0;
    Done done;
    std::function<void()> fn;
  };
  // A callback for the syncer: runs once writes up to `written` (a count of store writes)
  // are durable.
  struct Handoff {
    uint64_t written;
    Done done;
  };
  uint64_t enqueue_commit(metadb::MetaBatch batch, bool sync, Done done, bool wake);
  void loop();
  void sync_loop();
  // Writes items [0, end) (all commits) and journal records [*next, record_end) as one
  // batch, in sequence order; advances *next.
  void write_group(std::deque<Item>& items, size_t end, const std::vector<JournalRecord>& records,
                   size_t* next, size_t record_end);
  void hand_off(Done done);  // REQUIRES: on the writer

  metadb::MetaStore* store_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // the writer waits for queue_
  std::condition_variable sync_cv_;  // the syncer waits for handoffs_
  std::deque<Item> queue_;           // GUARDED_BY(mu_)
  std::deque<Handoff> handoffs_;     // GUARDED_BY(mu_)
  uint64_t next_sequence_ = 1;       // GUARDED_BY(mu_)
  uint64_t committed_ = 0;           // GUARDED_BY(mu_)
  uint64_t durable_ = 0;             // GUARDED_BY(mu_)
  // Successful store writes by the writer, and how many of them a sync has covered.
  uint64_t written_ = 0;          // GUARDED_BY(mu_)
  uint64_t written_durable_ = 0;  // GUARDED_BY(mu_)
  Status failure_;                // GUARDED_BY(mu_)
  bool stopping_ = false;         // GUARDED_BY(mu_)
  bool syncing_ = false;          // GUARDED_BY(mu_): the syncer holds hand-offs
  bool writer_done_ = false;      // GUARDED_BY(mu_): no more hand-offs will come
  // The journal, its state's key, records not yet taken by the writer, how many records
  // this open has written (the next slot) and how many are in the store (their slots
  // free), and whether the writer was woken for them.
  std::unique_ptr<ExtentJournal> journal_;
  metadb::JournalState journal_state_;
  std::vector<JournalRecord> journal_pending_;  // GUARDED_BY(mu_)
  std::vector<JournalRecord> journal_taken_;    // the writer's: records it is writing
  uint64_t journal_written_ = 0;                // GUARDED_BY(mu_)
  uint64_t journal_applied_ = 0;                // GUARDED_BY(mu_)
  bool journal_wake_ = false;                   // GUARDED_BY(mu_)
  std::thread syncer_;
  std::thread thread_;
};

}  // namespace pxd
