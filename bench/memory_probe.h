// bench/memory_probe.h: metadata and memory cost of random 4 KiB writes into a large thin
// volume. Runs in a fresh process (pxbench's memory-probe subcommand) so that the RSS
// delta is not hidden by memory that earlier cases freed and malloc would hand out again.
// The metadata store is on the measured filesystem; the pool file, whose speed is not
// what is measured here, on /dev/shm when there is one (see bench_pool.h).
//
// Memory per GiB is a rate: what grows with the data. One probe's RSS growth also holds
// costs that do not grow with it (threads' stacks, the metadata store's table readers,
// the pool's reserve), so memory_cost_subprocess runs two probes at the same density, the
// second with twice the data in a volume twice as large, and divides the difference of
// their RSS growth by the difference of their data. Each probe reads the RSS after the
// metadata store's write buffers are flushed: those hold the latest writes' records and
// are bounded (16 MiB each, at most two) however much is mapped; the probe reports their
// size, and the RSS before the flush, beside the figure.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace pxd::bench {

struct MemoryProbeSpec {
  std::string dir;          // filesystem; the probe works in its own scratch dir there
  uint32_t chunk_size = 0;  // 0 = the pool default
  uint64_t volume_bytes = 0;
  uint64_t write_bytes = 0;  // in random 4 KiB writes at queue depth 32
  double max_seconds = 0;    // stop early after this long (0 = no bound)
};

struct MemoryProbeResult {
  uint64_t rss_before = 0;             // pool and volume open, buffers allocated, nothing written
  uint64_t rss_after = 0;              // after the writes, a pool sync and a metadata buffer flush
  uint64_t rss_with_buffer = 0;        // the same before the metadata buffer flush
  uint64_t metadata_buffer_bytes = 0;  // the metadata write buffers before the flush
  uint64_t extent_map_bytes = 0;       // the engine's extent maps (PoolUsage)
  uint64_t written_bytes = 0;
  uint64_t used_bytes = 0;  // usage().used_bytes
  uint64_t metadata_bytes = 0;
  uint64_t metadata_wal_bytes = 0;
  uint64_t metadata_sst_bytes = 0;
  uint64_t mapped_extents = 0;
  uint64_t metadata_commits = 0;
  double seconds = 0;
  double iops = 0;

  nlohmann::json to_json() const;
  static MemoryProbeResult from_json(const nlohmann::json& j);
};

// In this process.
MemoryProbeResult run_memory_probe(const MemoryProbeSpec& spec);
// In a child process running `self` memory-probe; throws BenchError if it fails and
// Interrupted (after stopping it) if this process is interrupted.
MemoryProbeResult memory_probe_subprocess(const std::string& self, const MemoryProbeSpec& spec);

struct MemoryCost {
  MemoryProbeResult half;  // half of spec's writes into half of its volume
  MemoryProbeResult full;  // spec itself
  double mib_per_gib_written = 0;
  double mib_per_gib_used = 0;
  double bytes_per_extent = 0;  // RSS per mapped extent, at the same rate
  double fixed_mib = 0;         // full's RSS growth less the rate times its data
  // full's RSS growth over its data, fixed costs included (and with the write buffers)
  double single_mib_per_gib_written = 0;
  double single_with_buffer_mib_per_gib_written = 0;
};
// The two probes above, in child processes.
MemoryCost memory_cost_subprocess(const std::string& self, const MemoryProbeSpec& spec);

}  // namespace pxd::bench
