// tests/support/sync_io.h: blocking I/O on a Volume for tests, on a private IoRing.
#pragma once

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/io_ring.h"
#include "engine/volume.h"

namespace pxd::testing {

struct AlignedBuf {
  explicit AlignedBuf(size_t n) : size(n) {
    void* p = nullptr;
    if (posix_memalign(&p, 4096, n ? n : 4096) != 0) std::abort();
    data = static_cast<std::byte*>(p);
    std::memset(data, 0, n);
  }
  ~AlignedBuf() { std::free(data); }
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
  std::byte* data;
  size_t size;
};

class SyncIo {
 public:
  SyncIo() : ring_(IoRing::create(256).value()) {}
  IoRing& ring() { return *ring_; }

  int run(Volume& v, IoOp op, uint64_t offset, uint64_t length, std::byte* buf,
          uint32_t flags = 0) {
    IoRequest req;
    req.op = op;
    req.offset = offset;
    req.length = length;
    req.buffer = buf;
    req.flags = flags;
    bool done = false;
    int result = 1;
    struct Ctx {
      bool* done;
      int* result;
    } ctx{&done, &result};
    req.user = &ctx;
    req.done = [](IoRequest* r, int res) {
      auto* c = static_cast<Ctx*>(r->user);
      *c->result = res;
      *c->done = true;
    };
    v.submit(*ring_, &req);
    ring_->run_until([&] { return done; });
    return result;
  }
  int write(Volume& v, uint64_t offset, const std::vector<uint8_t>& data, uint32_t flags = 0) {
    AlignedBuf buf(data.size());
    std::memcpy(buf.data, data.data(), data.size());
    return run(v, IoOp::kWrite, offset, data.size(), buf.data, flags);
  }
  int write_fill(Volume& v, uint64_t offset, uint64_t length, uint8_t value, uint32_t flags = 0) {
    return write(v, offset, std::vector<uint8_t>(length, value), flags);
  }
  // Returns the data, or an empty vector with *err set.
  std::vector<uint8_t> read(Volume& v, uint64_t offset, uint64_t length, int* err = nullptr) {
    AlignedBuf buf(length);
    std::memset(buf.data, 0xEE, length);
    int rc = run(v, IoOp::kRead, offset, length, buf.data);
    if (err) *err = rc;
    if (rc != 0) return {};
    auto* p = reinterpret_cast<uint8_t*>(buf.data);
    return std::vector<uint8_t>(p, p + length);
  }
  int flush(Volume& v) { return run(v, IoOp::kFlush, 0, 0, nullptr); }
  int discard(Volume& v, uint64_t offset, uint64_t length) {
    return run(v, IoOp::kDiscard, offset, length, nullptr);
  }
  int write_zeroes(Volume& v, uint64_t offset, uint64_t length) {
    return run(v, IoOp::kWriteZeroes, offset, length, nullptr);
  }

 private:
  std::unique_ptr<IoRing> ring_;
};

inline bool all_bytes(const std::vector<uint8_t>& v, uint8_t value) {
  for (uint8_t b : v)
    if (b != value) return false;
  return !v.empty();
}

}  // namespace pxd::testing
