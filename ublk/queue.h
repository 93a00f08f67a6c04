// ublk/queue.h: one hardware queue of a ublk device and the thread serving it (internal).
//
// The thread owns one IoRing. It first sends FETCH_REQ for every tag, then loops: a
// completed fetch means the driver wrote a request into the tag's descriptor (the mmap of
// /dev/ublkcN); the thread runs it on the Volume (submit on the same ring), and when the
// Volume completes, sends COMMIT_AND_FETCH_REQ with the result, which both completes the
// block request and waits for the tag's next one. Under USER_COPY a write's data is first
// read from /dev/ublkcN and a read's data written there before the commit: up to 64 KiB
// with a plain pread/pwrite on the queue thread (a memcpy between our buffer and request
// pages the driver holds pinned: it never waits for I/O, and costs less than the io_uring
// worker the ring would hand it to), larger copies on the same ring (doc/ublk.md).
//
// Every request the thread accepted is committed, errors included (an unknown operation,
// a bad range, a Volume error, a failed copy), before the thread exits or its buffer is
// freed. A fetch that completes with UBLK_IO_RES_ABORT (the device stopped) ends its tag.
//
// The thread exits when every tag has ended (the device was stopped), or after
// begin_exit() once no accepted request is still running: requests the driver hands over
// after begin_exit() are left unanswered, and the driver re-issues them to the next server
// of a recoverable device once this queue's ring is gone.
//
// Thread safety: start() and the destructor on the device's control thread; begin_exit()
// and counters from any thread; everything else on the queue thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <thread>

#include "common/status.h"
#include "engine/io_ring.h"
#include "engine/volume.h"

struct ublksrv_io_desc;  // linux/ublk_cmd.h

namespace pxd::ublk {

struct QueueConfig {
  int char_fd = -1;  // /dev/ublkcN, open read-write
  uint16_t queue_id = 0;
  uint16_t depth = 0;
  uint32_t max_io_bytes = 0;
  bool user_copy = false;
  bool ioctl_encode = false;  // UBLK_U_IO_* opcodes rather than the legacy ones
  Volume* volume = nullptr;
};

struct QueueCounters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> read_bytes{0};
  std::atomic<uint64_t> write_bytes{0};
};

class Queue {
 public:
  // Maps the queue's descriptors and buffers, starts the thread and waits until its ring
  // exists and the fetches are submitted.
  static Result<std::unique_ptr<Queue>> start(const QueueConfig& config);
  // begin_exit(), then joins the thread and unmaps.
  ~Queue();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  void begin_exit();
  void join();
  const QueueCounters& counters() const { return counters_; }

  class Tag;

 private:
  explicit Queue(const QueueConfig& config);
  void run(std::shared_ptr<std::promise<Status>> ready);
  Status setup_ring();
  void send_fetch(Tag& tag, bool commit, int result);
  void on_command(Tag& tag, int result);
  void start_request(Tag& tag);
  void run_on_volume(Tag& tag);
  void on_volume_done(Tag& tag, int result);
  // USER_COPY: moves the request's data in (write) or out (read) through /dev/ublkcN.
  void copy_data(Tag& tag);
  void on_copy_done(Tag& tag, int result);
  void complete(Tag& tag, int result);
  bool finished() const;

  QueueConfig config_;
  std::unique_ptr<IoRing> ring_;  // created and destroyed on the thread
  const ::ublksrv_io_desc* descriptors_ = nullptr;
  size_t descriptors_size_ = 0;
  std::byte* buffers_ = nullptr;
  size_t buffers_size_ = 0;
  std::unique_ptr<Tag[]> tags_;
  std::thread thread_;

  // ---- queue thread only ----
  uint32_t running_ = 0;      // accepted requests not yet committed
  uint32_t ended_tags_ = 0;   // tags whose command ended (abort or error)
  bool exiting_ = false;      // begin_exit() seen
  bool logged_error_ = false;

  std::atomic<bool> exit_requested_{false};
  QueueCounters counters_;
};

}  // namespace pxd::ublk
