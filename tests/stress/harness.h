// tests/stress/harness.h: the engine side of the stress test: a pool in a private
// directory, its open handles, batched asynchronous I/O, and data patterns.
//
// Thread safety: Harness belongs to the test's main thread. run_batch() may run on any
// thread with its own ring, and uses no doctest assertions (they are not thread-safe).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/io_ring.h"
#include "engine/pool.h"
#include "engine/volume.h"
#include "tests/support/sync_io.h"
#include "tests/support/temp_dir.h"

namespace pxd::stress {

// Fills `length` bytes meant for volume offset `offset` with the pattern of write number
// `counter`: every 8-byte word depends on both, so data landing at the wrong offset, a lost
// write or a stale chunk all show.
void fill_pattern(uint8_t* out, uint64_t offset, uint64_t length, uint64_t counter);

// "" if equal; else where and how `actual` first differs from `expected` (`offset` is the
// volume offset of the first byte), and how many bytes differ.
std::string describe_difference(const uint8_t* expected, const uint8_t* actual, uint64_t length,
                                uint64_t offset);

// One request of a batch. `result` is 1 until it completes.
struct BatchItem {
  Volume* volume = nullptr;
  IoOp op = IoOp::kRead;
  uint32_t flags = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::byte* buffer = nullptr;
  int result = 1;
  bool done_inside_submit = false;  // the contract forbids completing from submit()
  // steady_clock times just before submit() and when done() ran.
  int64_t submitted_ns = 0;
  int64_t completed_ns = 0;
};

int64_t now_ns();

// Submits every item (at most `depth` in flight at once; 0: all), runs `ring` until all
// have completed. Returns false if the ring failed.
bool run_batch(IoRing& ring, std::vector<BatchItem>& items, size_t depth = 0);

class Harness {
 public:
  Harness(uint64_t pool_bytes, uint32_t chunk_size);
  ~Harness();

  Pool& pool() { return *pool_; }
  testing::SyncIo& io() { return io_; }
  const std::string& dir() const { return dir_.path(); }

  // The open handle of `name` (opened on first use).
  Volume& handle(const std::string& name);
  bool is_open(const std::string& name) const { return handles_.count(name) != 0; }
  void close(const std::string& name) { handles_.erase(name); }
  void close_all() { handles_.clear(); }
  // Closes every handle, destroys the Pool and opens it again from disk. Returns the
  // error text of Pool::open, or "".
  std::string reopen();

 private:
  testing::TempDir dir_;  // first: removed last, after the pool is gone
  std::unique_ptr<Pool> pool_;
  testing::SyncIo io_;
  std::map<std::string, std::shared_ptr<Volume>> handles_;
};

}  // namespace pxd::stress
