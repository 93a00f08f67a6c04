// bench/load.h: the queue-depth driver. Keeps `queue_depth` requests in flight against
// one target (a pxd Volume or a raw O_DIRECT file) on one IoRing, resubmitting each slot
// from its completion until the time or operation budget is spent.
//
// Both targets see the same offsets for the same spec (std::mt19937_64 with the spec's
// seed), the same buffers (non-zero data, aligned for O_DIRECT) and the same ring.
//
// Thread safety: run_load() runs on the calling thread, which owns the ring it creates.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/io_ring.h"
#include "engine/volume.h"

namespace pxd::bench {

class LoadDriver;

// One request slot: the IoRequest a Volume runs, and the completion a raw SQE reports to.
struct LoadSlot final : IoCompletion {
  IoRequest req;  // op, offset, length and buffer are set by the driver for each request
  LoadDriver* driver = nullptr;
  uint64_t started_ns = 0;

  // A raw SQE's result: bytes transferred or -errno.
  void on_complete(int result) override;
};

// Where the driver's requests go.
class IoTarget {
 public:
  virtual ~IoTarget() = default;
  virtual uint64_t size_bytes() const = 0;
  // Starts slot.req. Its completion must reach LoadDriver::finished(slot, 0 or -errno) on
  // this ring's thread, from a later run_once().
  virtual void start(IoRing& ring, LoadSlot& slot) = 0;
};

// A pxd volume.
class VolumeTarget final : public IoTarget {
 public:
  explicit VolumeTarget(std::shared_ptr<Volume> volume) : volume_(std::move(volume)) {}
  uint64_t size_bytes() const override { return volume_->size_bytes(); }
  void start(IoRing& ring, LoadSlot& slot) override;

 private:
  std::shared_ptr<Volume> volume_;
};

enum class Pattern {
  kRandom,      // uniformly random block-aligned offsets
  kSequential,  // 0, block, 2*block, ... wrapping at the region's end
  kStrided,     // 0, stride, 2*stride, ... wrapping (e.g. one block per chunk)
  kScattered,   // a random block within each stride in turn: where pxd's fresh writes land
};

struct LoadSpec {
  IoOp op = IoOp::kRead;  // kRead or kWrite
  Pattern pattern = Pattern::kRandom;
  uint32_t block_bytes = 4096;
  uint32_t queue_depth = 1;
  uint64_t region_bytes = 0;  // requests fall in [0, region_bytes); 0 = the whole target
  uint64_t stride_bytes = 0;  // kStrided
  uint64_t first_index = 0;   // kSequential, kStrided, kScattered: where the sequence starts
  double seconds = 0;         // stop issuing after this long; 0 = no time limit
  uint64_t max_ops = 0;       // stop issuing after this many; 0 = no limit
  uint64_t seed = 0x5eed;
  uint32_t write_flags = 0;  // kIoFua
  // Stop issuing once this is set (by another thread); null = never.
  const std::atomic<bool>* stop = nullptr;
  bool record_latencies = false;  // keep every request's latency in LoadResult::latencies_us
};

struct LoadResult {
  uint64_t ops = 0;  // completed successfully
  uint64_t bytes = 0;
  double seconds = 0;      // first submit to last completion
  double cpu_seconds = 0;  // process user + system over the run
  double latency_sum_us = 0;
  double latency_max_us = 0;
  std::vector<double> latencies_us;  // with LoadSpec::record_latencies
  uint64_t errors = 0;
  int first_error = 0;  // -errno of the first failed request

  LoadResult& operator+=(const LoadResult& other);
  double iops() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
  double mib_per_s() const;
  double mean_latency_us() const { return ops ? latency_sum_us / static_cast<double>(ops) : 0; }
  double cpu_us_per_op() const { return ops ? cpu_seconds * 1e6 / static_cast<double>(ops) : 0; }
};

// Runs the load and returns what completed. Stops issuing at the first error (the result
// says so) and when interrupted (then throws Interrupted once the slots have drained).
LoadResult run_load(IoTarget& target, const LoadSpec& spec);

// As run_load, but a failed request is a BenchError naming `what`.
LoadResult run_load_checked(IoTarget& target, const LoadSpec& spec, const std::string& what);

// Runs `spec` against `a` and `b` in `rounds` alternating rounds (a b, b a, a b, ...), each
// with spec.seconds / rounds and its own seed, and sums the results: drift in the machine
// (a neighbour's I/O, the host's cache) then weighs on both alike.
struct Comparison {
  LoadResult a;
  LoadResult b;
};
Comparison compare_loads(IoTarget& a, IoTarget& b, const LoadSpec& spec, int rounds,
                         const std::string& what);

// Writes [0, bytes) of the target sequentially in 1 MiB requests at queue depth 32.
LoadResult fill_sequential(IoTarget& target, uint64_t bytes, const std::string& what);

class LoadDriver {
 public:
  LoadDriver(IoTarget& target, const LoadSpec& spec);
  ~LoadDriver();
  LoadResult run();
  void finished(LoadSlot& slot, int result);

 private:
  struct State;
  void issue(LoadSlot& slot);
  std::unique_ptr<State> state_;
};

}  // namespace pxd::bench
