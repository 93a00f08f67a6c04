// engine/io_ring.h: one io_uring owned by one thread, with completions as callbacks.
//
// A thread that does I/O (a ublk queue thread, an NBD connection thread, a test) owns one
// IoRing and calls run_once() in its loop. Every SQE's user_data points to an
// IoCompletion whose on_complete() runs on that thread when the CQE is reaped. Frontends
// put their own SQEs (ublk URING_CMD, socket reads) on the same ring as the engine's
// pool I/O, so one wait covers both.
//
// The cross-thread bridge: post() hands a function to the owning thread from any other
// thread (the metadata committer, kj event loops). It is queued under a mutex and the
// ring wakes through an eventfd read kept armed on the ring. This is the only way work
// crosses into a ring thread.
//
// Thread safety: post() may be called from any thread. Everything else only from the
// owning thread (the one that calls run_once()).
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"

namespace pxd {

// Something waiting for a completion. `result` is the CQE's res (>= 0, or -errno).
class IoCompletion {
 public:
  virtual void on_complete(int result) = 0;

 protected:
  ~IoCompletion() = default;
};

class IoRing {
 public:
  // `entries` is the submission queue size; the completion queue is twice that.
  static Result<std::unique_ptr<IoRing>> create(unsigned entries = 256);
  ~IoRing();
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;

  // A cleared SQE whose completion will go to `completion`. If the submission queue is
  // full, queued SQEs are submitted first; never returns null.
  io_uring_sqe* get_sqe(IoCompletion* completion);

  void read(int fd, void* buf, uint32_t len, uint64_t offset, IoCompletion* completion);
  // rw_flags: RWF_DSYNC for a write that is durable when it completes (FUA).
  void write(int fd, const void* buf, uint32_t len, uint64_t offset, int rw_flags,
             IoCompletion* completion);
  void fdatasync(int fd, IoCompletion* completion);
  void fallocate(int fd, int mode, uint64_t offset, uint64_t len, IoCompletion* completion);

  // Calls completion->on_complete(result) from the next run_once(), on this thread. Used
  // to complete a request without calling back into the code that submitted it.
  void defer(IoCompletion* completion, int result);

  // Runs `fn` on this ring's thread from a later run_once(). Safe from any thread.
  void post(std::function<void()> fn);

  // While a PostBatch lives on a thread, post() calls made on that thread are held, and
  // handed to their rings when the outermost one ends, in the order they were made: each
  // ring's queue is locked once and its thread woken at most once for all of them. The
  // metadata writer holds one around the callbacks of a group commit, so that a ring wakes
  // once for the requests the group completes instead of once every few of them (each
  // wake of a ring thread is a context switch; see doc/engine.md). A ring posted to must
  // outlive the batch, as it must outlive any post().
  class PostBatch {
   public:
    PostBatch();
    ~PostBatch();
    PostBatch(const PostBatch&) = delete;
    PostBatch& operator=(const PostBatch&) = delete;
  };

  // Calls fn(arg) on this thread once the SQEs queued so far are submitted: in the next
  // run_once(), before it waits. For waking another thread that works alongside this I/O
  // (the metadata writer) only when the I/O is on its way: woken first, it can take the
  // CPU this thread needs to submit (see doc/engine.md, "The I/O path and its threads").
  // A pair already queued is not queued twice.
  void after_submit(void (*fn)(void*), void* arg);

  // Submits queued SQEs; if `wait` and nothing is ready, waits up to timeout_ms (-1:
  // forever) for an event; then dispatches every ready completion, deferred completion and
  // posted function. Returns how many it dispatched, or -errno.
  int run_once(bool wait, int timeout_ms = -1);

  // Runs until done() is true, waiting between rounds.
  void run_until(const std::function<bool()>& done);

  // SQEs handed out by get_sqe() whose completions have not run yet.
  uint64_t inflight() const { return inflight_; }

 private:
  IoRing() = default;
  class WakeCompletion;
  void arm_wake();
  // Appends fns to posted_ and wakes the thread if it is not woken yet.
  void post_all(std::function<void()>* fns, size_t count);
  int dispatch_ready();
  int submit();  // io_uring_submit(), then the after_submit() calls

  io_uring ring_{};
  bool ring_ready_ = false;
  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  std::unique_ptr<WakeCompletion> wake_;
  uint64_t inflight_ = 0;
  std::vector<std::pair<IoCompletion*, int>> deferred_;
  std::vector<std::pair<IoCompletion*, int>> deferred_running_;
  std::vector<std::pair<void (*)(void*), void*>> after_submit_;
  std::vector<std::pair<void (*)(void*), void*>> after_submit_running_;

  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;  // REQUIRES: posted_mu_ held
  std::atomic<bool> wake_pending_{false};
};

}  // namespace pxd
