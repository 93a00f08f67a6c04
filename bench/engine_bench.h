// bench/engine_bench.h: `pxbench engine`: the pxd engine against raw O_DIRECT io_uring
// I/O on the same filesystem, plus the engine's own costs (snapshots, CPU, metadata,
// memory). Sections, in the order they run:
//   1. data path: 4 KiB random read / overwrite / fresh-thin write, 1 MiB sequential
//      write / read, each at queue depth 1 and 32, pxd and raw;
//   2. random read with 0, 16 and 256 snapshots in the volume's chain;
//   3. snapshot-create latency on a volume with a million mapped extents, and the time
//      of listing it with its snapshots and clones (exclusive and shared bytes);
//   4. CPU time per 4 KiB I/O on a RAM-backed pool (/dev/shm);
//   5. metadata bytes and memory per GiB of randomly written data.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "bench/bench.h"
#include "bench/load.h"
#include "bench/raw_io.h"

namespace pxd::bench {

struct EngineParams {
  double seconds = 4;          // per measured case and target
  int rounds = 4;              // pxd and its peer alternate in this many rounds (see compare_loads)
  uint64_t size = 1ULL << 30;  // section 1 and 2 volume and raw file
  uint64_t fresh_capacity = 512ULL << 30;  // logical bytes of the sparse fresh-thin pool
  // Fresh-thin writes at QD1 and QD32, in all over `rounds`, into each of two pools: a
  // thick one sized for them (written whole first, at about 1 GiB/s, so a chunk per
  // write costs a second per thousand) and the sparse one, where each leaves a filesystem
  // extent of its own, and on a filesystem mounted with `discard` deleting the file then
  // costs a discard per extent (about 3 ms each on the development VMs, so 10,000 of them
  // add half a minute to the run). The thick pool's reserve (up to 32 GiB, from the
  // start) holds all of its free space, so no refill falls in the rounds; in a large pool
  // one comes every 16384 fresh 1 MiB chunks (a metadata sync each, which stalls first
  // writes 15-55 ms on the development VMs: doc/engine.md), which these rounds, like a
  // pool's first 16384 fresh chunks, do not show. The sparse pool's small reserve is
  // refilled during the rounds at its natural rate.
  uint64_t fresh_ops_qd1 = 8000;
  uint64_t fresh_ops_qd32 = 16000;
  uint64_t fresh_warmup_ops = 256;
  uint64_t fresh_thick_spare = 8192;  // chunks of the thick pool beyond the writes
  uint64_t delete_chunks = 4096;      // a volume of this many chunks is deleted under fresh writes
  std::vector<uint32_t> chain = {0, 16, 256};
  uint64_t extents = 1000000;  // section 3
  int snapshot_creates = 200;
  int clones = 8;                      // of the large volume's snapshots
  uint64_t clone_writes = 500;         // random 4 KiB writes into each clone
  uint64_t history_writes = 2000;      // into the large volume after its snapshots
  uint64_t shm_size = 256ULL << 20;    // section 4
  uint64_t fresh_cpu_ops = 20000;      // section 4: fresh writes into a RAM-backed pool
  uint64_t memory_write = 1ULL << 30;  // section 5
  uint64_t memory_volume = 64ULL << 30;

  std::string only;  // run only the parts with a case whose name contains this ("" = all)

  static EngineParams from(const BenchOptions& options);
  bool wants(std::string_view case_name) const {
    return only.empty() || case_name.find(only) != std::string_view::npos;
  }
  bool wants_any(std::initializer_list<std::string_view> case_names) const {
    for (std::string_view name : case_names)
      if (wants(name)) return true;
    return false;
  }
};

void run_engine(const BenchOptions& options, Report& report);

// The sections; `scratch` is a directory on the measured filesystem.
struct SnapshotTimes {
  double p50_ms = 0;
  double p99_ms = 0;
  uint64_t mapped_extents = 0;
};
// Sections 1 and 2 (they share the written volume), against `raw`. Returns the
// snapshot-create times seen while building the chain, for comparison with section 3.
SnapshotTimes bench_data_path(const EngineParams& p, const std::string& scratch, RawFile& raw,
                              Report& report);
// First writes into thin space, against `raw` (and a spread peer of its own).
void bench_fresh_writes(const EngineParams& p, const std::string& scratch, RawFile& raw,
                        Report& report);
void bench_large_volume_snapshots(const EngineParams& p, const std::string& scratch, Report& report,
                                  const SnapshotTimes& small_volume);
void bench_cpu(const EngineParams& p, Report& report);
void bench_metadata_memory(const EngineParams& p, const std::string& self,
                           const std::string& scratch, Report& report);

// A row of the engine bench comparing pxd to the raw baseline.
Row raw_row(const std::string& name, double pxd, double raw, const std::string& unit);

struct ReadStall {
  LoadResult during;  // the load while `action` ran
  LoadResult quiet;   // the same load, as long, with nothing else running
};
// `load` (default: random 4 KiB reads at queue depth 1) on a thread of its own while the
// calling thread runs `action`, then as long again alone; latencies recorded.
ReadStall measure_read_stall(VolumeTarget& volume, const std::function<void()>& action,
                             const LoadSpec& load = {});
void bench_delete_stall(const EngineParams& p, const std::string& scratch, Report& report);

}  // namespace pxd::bench
