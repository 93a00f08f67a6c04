// tests/unit/nbd/test_volumes.h: Volumes stacked on a real one, to make NBD tests honest.
//
// GateVolume holds requests back until a number of them wait at once (shows how many
// the server runs in parallel); DelayVolume completes every request a fixed time late
// (so requests are surely in flight when a client vanishes or the server stops).
// WrappedExports serves the pool's volumes through one of them.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/io_ring.h"
#include "engine/volume.h"
#include "tests/unit/nbd/nbd_fixture.h"

namespace pxd::testing {

// Forwards everything but submit() to `inner`.
class ForwardingVolume : public Volume {
 public:
  explicit ForwardingVolume(std::shared_ptr<Volume> inner) : inner_(std::move(inner)) {}
  uint64_t id() const override { return inner_->id(); }
  uint64_t size_bytes() const override { return inner_->size_bytes(); }
  uint32_t block_size() const override { return inner_->block_size(); }
  bool read_only() const override { return inner_->read_only(); }
  void map_extents(uint64_t o, uint64_t l, std::vector<VolumeExtent>& out) const override {
    inner_->map_extents(o, l, out);
  }

 protected:
  std::shared_ptr<Volume> inner_;
};

// Holds requests back until `target` of them are waiting (or 3 s pass), then lets every
// request through.
class GateVolume : public ForwardingVolume {
 public:
  GateVolume(std::shared_ptr<Volume> inner, uint32_t target)
      : ForwardingVolume(std::move(inner)), target_(target) {}
  void submit(IoRing& ring, IoRequest* req) override {
    held_.push_back(req);
    peak_ = std::max<uint32_t>(peak_, static_cast<uint32_t>(held_.size()));
    if (held_.size() >= target_ || released_) {
      release(ring);
      return;
    }
    if (!timer_armed_) {
      // Release anyway after a while: the test then fails on the peak, never hangs.
      timer_armed_ = true;
      timer_.gate = this;
      timer_.ring = &ring;
      timer_.ts.tv_sec = 3;
      io_uring_sqe* sqe = ring.get_sqe(&timer_);
      io_uring_prep_timeout(sqe, &timer_.ts, 0, 0);
      io_uring_sqe_set_data(sqe, &timer_);
    }
  }
  uint32_t peak() const { return peak_; }

 private:
  struct Timer final : IoCompletion {
    void on_complete(int) override { gate->release(*ring); }
    GateVolume* gate = nullptr;
    IoRing* ring = nullptr;
    __kernel_timespec ts{};
  };
  void release(IoRing& ring) {
    released_ = true;
    std::vector<IoRequest*> now;
    now.swap(held_);
    for (IoRequest* r : now) inner_->submit(ring, r);
  }
  const uint32_t target_;
  std::vector<IoRequest*> held_;
  Timer timer_;
  uint32_t peak_ = 0;
  bool released_ = false;
  bool timer_armed_ = false;
};

// Completes every request `delay_ms` after the real volume did.
class DelayVolume : public ForwardingVolume {
 public:
  DelayVolume(std::shared_ptr<Volume> inner, uint32_t delay_ms)
      : ForwardingVolume(std::move(inner)), delay_ms_(delay_ms) {}
  void submit(IoRing& ring, IoRequest* req) override {
    auto* d = new Delayed;
    d->req = req;
    d->ring = &ring;
    d->done = req->done;
    d->user = req->user;
    d->ts.tv_sec = delay_ms_ / 1000;
    d->ts.tv_nsec = static_cast<long long>(delay_ms_ % 1000) * 1000000;
    d->inflight = &inflight_;
    req->user = d;
    req->done = &DelayVolume::inner_done;
    ++inflight_;
    inner_->submit(ring, req);
  }
  // Requests taken and not yet completed to the server.
  int inflight() const { return inflight_.load(); }

 private:
  struct Delayed final : IoCompletion {
    void on_complete(int) override {
      req->done = done;
      req->user = user;
      --*inflight;
      done(req, result);
      delete this;
    }
    IoRequest* req;
    IoRing* ring;
    void (*done)(IoRequest*, int);
    void* user;
    int result = 0;
    __kernel_timespec ts{};
    std::atomic<int>* inflight;
  };
  static void inner_done(IoRequest* req, int result) {
    auto* d = static_cast<Delayed*>(req->user);
    d->result = result;
    io_uring_sqe* sqe = d->ring->get_sqe(d);
    io_uring_prep_timeout(sqe, &d->ts, 0, 0);
    io_uring_sqe_set_data(sqe, d);
  }
  const uint32_t delay_ms_;
  std::atomic<int> inflight_{0};
};

// Serves the pool's volumes, each opened one wrapped in a new W(volume, args...).
template <class W>
class WrappedExports : public nbd::ExportProvider {
 public:
  template <class Arg>
  WrappedExports(Pool& pool, Arg arg)
      : inner_(pool), make_([arg](std::shared_ptr<Volume> v) {
          return std::make_shared<W>(std::move(v), arg);
        }) {}
  Result<std::shared_ptr<Volume>> open_export(const std::string& name) override {
    PXD_TRY(auto v, inner_.open_export(name));
    std::lock_guard<std::mutex> lock(mu_);
    last_ = make_(std::move(v));
    return std::shared_ptr<Volume>(last_);
  }
  std::vector<std::string> list_exports() override { return inner_.list_exports(); }
  std::shared_ptr<W> last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }

 private:
  PoolExports inner_;
  std::function<std::shared_ptr<W>(std::shared_ptr<Volume>)> make_;
  std::mutex mu_;
  std::shared_ptr<W> last_;
};

}  // namespace pxd::testing
