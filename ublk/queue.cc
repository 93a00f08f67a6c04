#include "ublk/queue.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <string>

#include "common/log.h"
#include "ublk/uapi.h"

namespace pxd::ublk {

class Queue::Tag {
 public:
  // Completion of the tag's FETCH_REQ / COMMIT_AND_FETCH_REQ.
  struct Command final : IoCompletion {
    Tag* tag = nullptr;
    void on_complete(int result) override { tag->queue->on_command(*tag, result); }
  };
  // Completion of a USER_COPY read (a write's data in) or write (a read's data out).
  struct Copy final : IoCompletion {
    Tag* tag = nullptr;
    void on_complete(int result) override { tag->queue->on_copy_done(*tag, result); }
  };

  Queue* queue = nullptr;
  uint16_t index = 0;
  std::byte* buffer = nullptr;
  Command command;
  Copy copy;
  IoRequest request;
  uint8_t op = 0;      // UBLK_IO_OP_* of the running request
  uint64_t bytes = 0;  // its length
  bool ended = false;  // the driver will hand this tag no more requests
};

namespace {

size_t page_round_up(size_t n) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}

// USER_COPY copies up to this size are made with a plain pread/pwrite on the queue thread.
constexpr uint64_t kInlineCopyBytes = 64 * 1024;

unsigned ring_entries(uint16_t depth) {
  unsigned n = 256;
  while (n < 2u * depth) n *= 2;
  return n;
}

}  // namespace

Queue::Queue(const QueueConfig& config) : config_(config) {}

Result<std::unique_ptr<Queue>> Queue::start(const QueueConfig& config) {
  std::unique_ptr<Queue> q(new Queue(config));

  // The driver's descriptor array of this queue, read-only; queue q sits at q times the
  // size of the largest possible array.
  q->descriptors_size_ = page_round_up(config.depth * sizeof(ublksrv_io_desc));
  off_t offset = UBLKSRV_CMD_BUF_OFFSET +
                 static_cast<off_t>(config.queue_id) *
                     static_cast<off_t>(page_round_up(UBLK_MAX_QUEUE_DEPTH * sizeof(ublksrv_io_desc)));
  void* desc = ::mmap(nullptr, q->descriptors_size_, PROT_READ, MAP_SHARED | MAP_POPULATE,
                      config.char_fd, offset);
  if (desc == MAP_FAILED) return errno_status(errno, "mmap ublk descriptors");
  q->descriptors_ = static_cast<const ublksrv_io_desc*>(desc);

  // One buffer per tag, as large as the largest request. Reserved, not committed: a page
  // costs memory only once a request has used it (so at most depth x max_io_bytes per
  // queue, reached only by that many largest requests at once).
  q->buffers_size_ = static_cast<size_t>(config.depth) * config.max_io_bytes;
  void* buffers = ::mmap(nullptr, q->buffers_size_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (buffers == MAP_FAILED) return errno_status(errno, "mmap ublk buffers");
  q->buffers_ = static_cast<std::byte*>(buffers);
  // Without this, a kernel with transparent huge pages "always" backs the first 4 KiB a
  // small request touches with a whole 2 MiB page: 32 devices doing 4 KiB I/O then took
  // 1.8 GB and pxd was killed for lack of memory in the 2 GiB test guest.
  (void)::madvise(buffers, q->buffers_size_, MADV_NOHUGEPAGE);

  q->tags_ = std::make_unique<Tag[]>(config.depth);
  for (uint16_t i = 0; i < config.depth; ++i) {
    Tag& tag = q->tags_[i];
    tag.queue = q.get();
    tag.index = i;
    tag.buffer = q->buffers_ + static_cast<size_t>(i) * config.max_io_bytes;
    tag.command.tag = &tag;
    tag.copy.tag = &tag;
  }

  PXD_TRY(q->ring_, IoRing::create(ring_entries(config.depth)));

  auto ready = std::make_shared<std::promise<Status>>();
  std::future<Status> started = ready->get_future();
  q->thread_ = std::thread([raw = q.get(), ready] { raw->run(ready); });
  Status status = started.get();
  if (!status.is_ok()) return status;  // the destructor joins the thread
  return q;
}

Queue::~Queue() {
  begin_exit();
  join();
  ring_.reset();
  if (buffers_ != nullptr) ::munmap(buffers_, buffers_size_);
  if (descriptors_ != nullptr) ::munmap(const_cast<ublksrv_io_desc*>(descriptors_), descriptors_size_);
}

void Queue::begin_exit() {
  if (exit_requested_.exchange(true)) return;
  if (ring_) ring_->post([] {});  // wakes the thread, which then sees exit_requested_
}

void Queue::join() {
  if (thread_.joinable()) thread_.join();
}

void Queue::run(std::shared_ptr<std::promise<Status>> ready) {
  std::string name = "ublk-q" + std::to_string(config_.queue_id);
  pthread_setname_np(pthread_self(), name.c_str());

  // FETCH_REQ must come from this thread: the driver makes the thread that fetches a
  // queue's tags that queue's server and accepts its commands from no other.
  for (uint16_t i = 0; i < config_.depth; ++i) send_fetch(tags_[i], /*commit=*/false, 0);
  int rc = ring_->run_once(false);
  if (rc < 0) {
    ready->set_value(errno_status(-rc, "submit ublk fetches"));
    return;
  }
  ready->set_value(Status::ok());

  while (!finished()) {
    rc = ring_->run_once(true);
    if (rc < 0 && rc != -EINTR && !logged_error_) {
      logged_error_ = true;
      PXD_LOG(kError) << "ublk queue " << config_.queue_id << ": io_uring wait failed: "
                      << std::strerror(-rc);
    }
    if (exit_requested_.load(std::memory_order_acquire)) exiting_ = true;
  }
  // Submits the commits queued by the last completions.
  ring_->run_once(false);
}

bool Queue::finished() const {
  if (running_ > 0) return false;
  return exiting_ || ended_tags_ == config_.depth;
}

void Queue::send_fetch(Tag& tag, bool commit, int result) {
  io_uring_sqe* sqe = ring_->get_sqe(&tag.command);
  std::memset(sqe, 0, sizeof(*sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = config_.char_fd;
  if (config_.ioctl_encode) {
    sqe->cmd_op = commit ? UBLK_U_IO_COMMIT_AND_FETCH_REQ : UBLK_U_IO_FETCH_REQ;
  } else {
    sqe->cmd_op = commit ? UBLK_IO_COMMIT_AND_FETCH_REQ : UBLK_IO_FETCH_REQ;
  }
  // The 16-byte command fits in a 64-byte SQE's command area.
  ublksrv_io_cmd cmd{};
  cmd.q_id = config_.queue_id;
  cmd.tag = tag.index;
  cmd.result = result;
  cmd.addr = config_.user_copy ? 0 : reinterpret_cast<uintptr_t>(tag.buffer);
  static_assert(sizeof(cmd) <= 16);
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
  io_uring_sqe_set_data(sqe, static_cast<IoCompletion*>(&tag.command));
}

void Queue::on_command(Tag& tag, int result) {
  if (result == UBLK_IO_RES_OK) {
    if (exiting_ || exit_requested_.load(std::memory_order_acquire)) {
      // Left unanswered: the driver re-issues it to the next server (doc/ublk.md).
      exiting_ = true;
      return;
    }
    ++running_;
    start_request(tag);
    return;
  }
  // UBLK_IO_RES_ABORT: the device stopped or this server is going away. Anything else
  // (NEED_GET_DATA, which is never asked for, or an error) also ends the tag: the driver
  // refused the command, so it holds no request of ours to complete.
  tag.ended = true;
  ++ended_tags_;
  if (result != UBLK_IO_RES_ABORT && !logged_error_) {
    logged_error_ = true;
    PXD_LOG(kError) << "ublk queue " << config_.queue_id << " tag " << tag.index
                    << ": command failed: " << (result < 0 ? std::strerror(-result) : "unexpected result")
                    << " (" << result << ")";
  }
}

void Queue::start_request(Tag& tag) {
  // The driver wrote the descriptor before completing the command.
  const ublksrv_io_desc desc = descriptors_[tag.index];
  tag.op = static_cast<uint8_t>(desc.op_flags & 0xff);
  uint64_t offset = desc.start_sector << 9;
  tag.bytes = static_cast<uint64_t>(desc.nr_sectors) << 9;

  tag.request = IoRequest();
  IoRequest& req = tag.request;
  req.offset = offset;
  req.length = tag.bytes;
  req.user = &tag;
  req.done = [](IoRequest* r, int res) {
    Tag* t = static_cast<Tag*>(r->user);
    t->queue->on_volume_done(*t, res);
  };
  switch (tag.op) {
    case UBLK_IO_OP_READ:
      req.op = IoOp::kRead;
      break;
    case UBLK_IO_OP_WRITE:
      req.op = IoOp::kWrite;
      if (desc.op_flags & UBLK_IO_F_FUA) req.flags |= kIoFua;
      break;
    case UBLK_IO_OP_FLUSH:
      req.op = IoOp::kFlush;
      req.offset = 0;
      req.length = 0;
      break;
    case UBLK_IO_OP_DISCARD:
      req.op = IoOp::kDiscard;
      break;
    case UBLK_IO_OP_WRITE_ZEROES:
      req.op = IoOp::kWriteZeroes;
      break;
    default:
      complete(tag, -EOPNOTSUPP);
      return;
  }
  if (req.op == IoOp::kRead || req.op == IoOp::kWrite) {
    if (tag.bytes == 0 || tag.bytes > config_.max_io_bytes) {
      complete(tag, -EINVAL);
      return;
    }
    req.buffer = tag.buffer;
  }
  if (req.op != IoOp::kFlush) {
    Volume& volume = *config_.volume;
    uint32_t block = volume.block_size();
    if (req.length == 0 || req.offset % block != 0 || req.length % block != 0 ||
        req.offset + req.length > volume.size_bytes() || req.offset + req.length < req.offset) {
      complete(tag, -EINVAL);
      return;
    }
  }
  if (req.op == IoOp::kWrite && config_.user_copy) {
    // The write's data comes from the request's pages, through /dev/ublkcN.
    copy_data(tag);
    return;
  }
  run_on_volume(tag);
}

void Queue::run_on_volume(Tag& tag) { config_.volume->submit(*ring_, &tag.request); }

void Queue::on_volume_done(Tag& tag, int result) {
  if (result < 0) {
    complete(tag, result);
    return;
  }
  if (tag.op == UBLK_IO_OP_READ && config_.user_copy) {
    copy_data(tag);
    return;
  }
  complete(tag, 0);
}

void Queue::copy_data(Tag& tag) {
  uint64_t offset = user_copy_offset(config_.queue_id, tag.index);
  auto len = static_cast<uint32_t>(tag.bytes);
  if (tag.bytes <= kInlineCopyBytes) {
    // A small copy is a memcpy between pinned pages in the driver: a plain syscall costs
    // less than the io_uring worker the driver's file sends it to (doc/ublk.md).
    ssize_t n = tag.op == UBLK_IO_OP_WRITE
                    ? ::pread(config_.char_fd, tag.buffer, len, static_cast<off_t>(offset))
                    : ::pwrite(config_.char_fd, tag.buffer, len, static_cast<off_t>(offset));
    on_copy_done(tag, n < 0 ? -errno : static_cast<int>(n));
    return;
  }
  // A large one goes through the ring: an io_uring worker copies on another CPU while this
  // thread serves other requests.
  if (tag.op == UBLK_IO_OP_WRITE) {
    ring_->read(config_.char_fd, tag.buffer, len, offset, &tag.copy);
  } else {
    ring_->write(config_.char_fd, tag.buffer, len, offset, 0, &tag.copy);
  }
}

void Queue::on_copy_done(Tag& tag, int result) {
  bool whole = result >= 0 && static_cast<uint64_t>(result) == tag.bytes;
  if (!whole) {
    complete(tag, result < 0 ? result : -EIO);
    return;
  }
  if (tag.op == UBLK_IO_OP_WRITE) {
    run_on_volume(tag);
  } else {
    complete(tag, 0);
  }
}

void Queue::complete(Tag& tag, int result) {
  // READ and WRITE report the bytes done; a read reporting 0 would fail anyway.
  int committed = result;
  if (result == 0 && (tag.op == UBLK_IO_OP_READ || tag.op == UBLK_IO_OP_WRITE)) {
    committed = static_cast<int>(tag.bytes);
    if (tag.op == UBLK_IO_OP_READ) {
      counters_.read_bytes.fetch_add(tag.bytes, std::memory_order_relaxed);
    } else {
      counters_.write_bytes.fetch_add(tag.bytes, std::memory_order_relaxed);
    }
  }
  counters_.requests.fetch_add(1, std::memory_order_relaxed);
  if (result < 0) counters_.errors.fetch_add(1, std::memory_order_relaxed);
  --running_;
  send_fetch(tag, /*commit=*/true, committed);
}

}  // namespace pxd::ublk
