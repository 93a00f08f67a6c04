#include "engine/io_ring.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace pxd {

// Keeps one read of the eventfd armed so that post() from another thread wakes the ring.
class IoRing::WakeCompletion final : public IoCompletion {
 public:
  explicit WakeCompletion(IoRing* ring) : ring_(ring) {}
  void on_complete(int) override {
    ring_->wake_pending_.store(false, std::memory_order_release);
    ring_->arm_wake();
  }

 private:
  IoRing* ring_;
};

Result<std::unique_ptr<IoRing>> IoRing::create(unsigned entries) {
  std::unique_ptr<IoRing> ring(new IoRing());
  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE;
  params.cq_entries = entries * 2;
  int rc = io_uring_queue_init_params(entries, &ring->ring_, &params);
  if (rc < 0) return errno_status(-rc, "io_uring_queue_init");
  ring->ring_ready_ = true;
  ring->wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (ring->wake_fd_ < 0) return errno_status(errno, "eventfd");
  ring->wake_ = std::make_unique<WakeCompletion>(ring.get());
  ring->arm_wake();
  return ring;
}

IoRing::~IoRing() {
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void IoRing::arm_wake() {
  // Not counted in inflight_: it is the ring's own, always pending.
  io_uring_sqe* sqe = get_sqe(wake_.get());
  --inflight_;
  io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
}

io_uring_sqe* IoRing::get_sqe(IoCompletion* completion) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_sqe_set_data(sqe, completion);
  ++inflight_;
  return sqe;
}

void IoRing::read(int fd, void* buf, uint32_t len, uint64_t offset, IoCompletion* completion) {
  io_uring_sqe* sqe = get_sqe(completion);
  io_uring_prep_read(sqe, fd, buf, len, offset);
  io_uring_sqe_set_data(sqe, completion);
}

void IoRing::write(int fd, const void* buf, uint32_t len, uint64_t offset, int rw_flags,
                   IoCompletion* completion) {
  io_uring_sqe* sqe = get_sqe(completion);
  io_uring_prep_write(sqe, fd, buf, len, offset);
  sqe->rw_flags = rw_flags;
  io_uring_sqe_set_data(sqe, completion);
}

void IoRing::fdatasync(int fd, IoCompletion* completion) {
  io_uring_sqe* sqe = get_sqe(completion);
  io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data(sqe, completion);
}

void IoRing::fallocate(int fd, int mode, uint64_t offset, uint64_t len, IoCompletion* completion) {
  io_uring_sqe* sqe = get_sqe(completion);
  io_uring_prep_fallocate(sqe, fd, mode, static_cast<off_t>(offset), static_cast<off_t>(len));
  io_uring_sqe_set_data(sqe, completion);
}

void IoRing::defer(IoCompletion* completion, int result) {
  ++inflight_;
  deferred_.emplace_back(completion, result);
}

namespace {

// The posts held by the PostBatch objects alive on this thread.
struct HeldPosts {
  int depth = 0;
  std::vector<std::pair<IoRing*, std::function<void()>>> posts;
};
thread_local HeldPosts held_posts;

}  // namespace

IoRing::PostBatch::PostBatch() {
  ++held_posts.depth;
}

IoRing::PostBatch::~PostBatch() {
  if (--held_posts.depth > 0) return;
  auto& posts = held_posts.posts;
  // Per ring, in the order posted. A batch reaches few rings (one per frontend thread),
  // so each pass takes the next ring not handed its posts yet.
  std::vector<std::function<void()>> fns;
  for (size_t first = 0; first < posts.size(); ++first) {
    IoRing* ring = posts[first].first;
    if (ring == nullptr) continue;
    fns.clear();
    for (size_t i = first; i < posts.size(); ++i) {
      if (posts[i].first != ring) continue;
      fns.push_back(std::move(posts[i].second));
      posts[i].first = nullptr;
    }
    ring->post_all(fns.data(), fns.size());
  }
  posts.clear();
}

void IoRing::post(std::function<void()> fn) {
  if (held_posts.depth > 0) {
    held_posts.posts.emplace_back(this, std::move(fn));
    return;
  }
  post_all(&fn, 1);
}

void IoRing::post_all(std::function<void()>* fns, size_t count) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    for (size_t i = 0; i < count; ++i) posted_.push_back(std::move(fns[i]));
  }
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
    uint64_t one = 1;
    // A full eventfd counter cannot happen (the ring reads it); EINTR is retried.
    while (::write(wake_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
  }
}

void IoRing::after_submit(void (*fn)(void*), void* arg) {
  for (const auto& [f, a] : after_submit_) {
    if (f == fn && a == arg) return;
  }
  after_submit_.emplace_back(fn, arg);
}

int IoRing::submit() {
  int rc = io_uring_submit(&ring_);
  after_submit_running_.swap(after_submit_);
  for (const auto& [fn, arg] : after_submit_running_) fn(arg);
  after_submit_running_.clear();
  return rc;
}

int IoRing::dispatch_ready() {
  int handled = 0;
  io_uring_cqe* cqe;
  unsigned head;
  unsigned seen = 0;
  // Collect first, then run: a completion may submit more SQEs or even reap.
  IoCompletion* batch[64];
  int results[64];
  for (;;) {
    seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      batch[seen] = static_cast<IoCompletion*>(io_uring_cqe_get_data(cqe));
      results[seen] = cqe->res;
      if (++seen == 64) break;
    }
    if (seen == 0) break;
    io_uring_cq_advance(&ring_, seen);
    for (unsigned i = 0; i < seen; ++i) {
      if (batch[i] != wake_.get()) --inflight_;
      batch[i]->on_complete(results[i]);
      ++handled;
    }
  }
  while (!deferred_.empty()) {
    deferred_running_.swap(deferred_);
    for (auto& [completion, result] : deferred_running_) {
      --inflight_;
      completion->on_complete(result);
      ++handled;
    }
    deferred_running_.clear();
  }
  std::vector<std::function<void()>> posted;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted.swap(posted_);
  }
  for (auto& fn : posted) {
    fn();
    ++handled;
  }
  return handled;
}

int IoRing::run_once(bool wait, int timeout_ms) {
  auto failed = [](int rc) { return rc < 0 && rc != -EBUSY && rc != -EINTR; };
  int rc;
  // after_submit() calls always run before the next completions are dispatched, so before
  // the requests that queued them can complete: first those queued outside run_once().
  if (!after_submit_.empty() && failed(rc = submit())) return rc;
  int handled = dispatch_ready();
  if (handled > 0 || !wait) {
    if (failed(rc = submit())) return rc;
    handled += dispatch_ready();
    if (!after_submit_.empty() && failed(rc = submit())) return rc;
    return handled;
  }
  io_uring_cqe* cqe = nullptr;
  if (timeout_ms < 0) {
    rc = io_uring_submit_and_wait(&ring_, 1);
  } else {
    __kernel_timespec ts{};
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
    rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) return rc;
  return dispatch_ready();
}

void IoRing::run_until(const std::function<bool()>& done) {
  while (!done()) {
    int rc = run_once(true, 100);
    if (rc < 0 && rc != -EINTR) return;
  }
}

}  // namespace pxd
