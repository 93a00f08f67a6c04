// bench/raw_io.h: the baseline: a plain preallocated file opened O_DIRECT and driven by
// io_uring (pxd's IoRing), with the same driver, queue depth and block sizes as pxd.
//
// Thread safety: as IoTarget (one ring thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/load.h"

namespace pxd::bench {

inline constexpr const char* kRawBaselineName = "raw-odirect-uring";

enum class RawLayout {
  // Preallocated and written once with non-zero data, so that reads reach the device
  // rather than unwritten extents the filesystem answers with zeros: the baseline.
  kWritten,
  // Sparse (ftruncate only): every first write allocates filesystem blocks, as writes
  // into a pxd pool file's fresh chunks do. A diagnostic, not the baseline.
  kSparse,
};

class RawFile final : public IoTarget {
 public:
  // Creates `path`, `bytes` long, and opens it O_DIRECT. Throws BenchError, e.g. when the
  // filesystem refuses O_DIRECT.
  static std::unique_ptr<RawFile> create(const std::string& path, uint64_t bytes, RawLayout layout);
  ~RawFile() override;

  uint64_t size_bytes() const override { return size_; }
  void start(IoRing& ring, LoadSlot& slot) override;

 private:
  RawFile(int fd, uint64_t size) : fd_(fd), size_(size) {}
  int fd_;
  uint64_t size_;
};

// Latencies (ms) of `count` appends of `bytes` each to a new file in `dir`, each followed
// by fdatasync: what one durable metadata write (a RocksDB WAL sync) costs here.
std::vector<double> durable_append_ms(const std::string& dir, int count, size_t bytes = 512);

}  // namespace pxd::bench
