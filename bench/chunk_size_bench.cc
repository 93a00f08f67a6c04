#include "bench/chunk_size_bench.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <vector>

#include "bench/bench_pool.h"
#include "bench/load.h"
#include "bench/memory_probe.h"
#include "bench/raw_io.h"
#include "common/units.h"

namespace pxd::bench {
namespace {

constexpr uint32_t kChunkSizes[] = {64 << 10, 128 << 10, 256 << 10, 512 << 10,
                                    1 << 20,  2 << 20,   4 << 20};

struct ChunkParams {
  double seconds = 3;
  uint64_t volume = 256 * kMiB;        // (a) and (d)
  uint64_t cow_writes = 4096;          // (a): the same writes for every chunk size
  uint64_t fresh_chunks = 256 * 1024;  // (b): pool capacity in chunks
  uint64_t fresh_ops = 3000;           // (b): at most (see EngineParams::fresh_ops_qd1)
  uint64_t memory_write = 256 * kMiB;  // (c)
  uint64_t memory_volume = 16 * kGiB;
};

ChunkParams params_from(const BenchOptions& o) {
  ChunkParams p;
  if (o.quick) {
    p.seconds = 1;
    p.cow_writes = 2048;
    p.fresh_chunks = 64 * 1024;
    p.fresh_ops = 1500;
    p.memory_write = 64 * kMiB;
    p.memory_volume = 4 * kGiB;
  }
  if (o.smoke) {
    p.seconds = 0.2;
    p.volume = 32 * kMiB;
    p.cow_writes = 256;
    p.fresh_chunks = 16 * 1024;
    p.fresh_ops = 300;
    p.memory_write = 8 * kMiB;
    p.memory_volume = 1 * kGiB;
  }
  if (o.seconds > 0) p.seconds = o.seconds;
  return p;
}

struct Line {
  uint32_t chunk = 0;
  double randread_iops = 0;
  double cow_iops = 0;
  double cow_copied_mib = 0;
  double cow_amplification = 0;  // bytes written to the pool per byte written by the user
  double fresh_iops = 0;
  double fresh_allocating = 0;
  double meta_per_used = 0;     // %
  double meta_per_written = 0;  // %
  double mem_per_gib_used = 0;  // MiB
  double mem_per_gib_written = 0;
};

std::string chunk_label(uint32_t chunk) {
  return chunk >= (1u << 20) ? std::to_string(chunk >> 20) + "m"
                             : std::to_string(chunk >> 10) + "k";
}

LoadSpec random_4k(IoOp op, double seconds) {
  LoadSpec spec;
  spec.op = op;
  spec.queue_depth = 32;
  spec.seconds = seconds;
  return spec;
}

// (d) then (a): random reads of a written volume, then copy-on-write after a snapshot.
void measure_cow(const ChunkParams& p, const std::string& dir, Line& line) {
  // Room for the volume, a copy of every chunk, and the reserve.
  BenchPool pool(dir, 2 * p.volume + 64 * uint64_t{line.chunk} + 16 * kMiB, line.chunk);
  VolumeTarget volume(pool.create_volume("vol", p.volume));
  fill_sequential(volume, p.volume, "fill");
  line.randread_iops =
      run_load_checked(volume, random_4k(IoOp::kRead, p.seconds), "randread").iops();

  check(pool->create_snapshot("vol", "snap"), "snapshot");
  uint64_t used0 = pool->usage().used_bytes;
  LoadSpec cow = random_4k(IoOp::kWrite, 20 * p.seconds);
  cow.max_ops = p.cow_writes;
  LoadResult r = run_load_checked(volume, cow, "copy-on-write");
  // The snapshot keeps every old chunk, so each copy is one more used chunk.
  uint64_t copied = pool->usage().used_bytes - used0;
  line.cow_iops = r.iops();
  line.cow_copied_mib = static_cast<double>(copied) / kMiBf;
  line.cow_amplification = r.bytes ? static_cast<double>(copied) / static_cast<double>(r.bytes) : 0;
}

// (b): random writes into a brand-new volume that spans the whole pool.
void measure_fresh(const ChunkParams& p, const std::string& dir, Line& line) {
  const uint64_t capacity = p.fresh_chunks * line.chunk;
  BenchPool pool(dir, capacity, line.chunk);
  VolumeTarget volume(pool.create_volume("fresh", capacity));
  LoadSpec spec = random_4k(IoOp::kWrite, p.seconds);
  spec.max_ops = std::min(p.fresh_ops, p.fresh_chunks / 2);
  LoadResult r = run_load_checked(volume, spec, "fresh write");
  line.fresh_iops = r.iops();
  double allocated = static_cast<double>(pool->usage().used_bytes) / line.chunk;
  line.fresh_allocating = r.ops ? allocated / static_cast<double>(r.ops) : 0;
}

// (c): in fresh processes (see memory_probe.h).
void measure_memory(const ChunkParams& p, const BenchOptions& o, const std::string& dir,
                    Line& line) {
  MemoryProbeSpec spec;
  spec.dir = dir;
  spec.chunk_size = line.chunk;
  spec.volume_bytes = p.memory_volume;
  spec.write_bytes = p.memory_write;
  spec.max_seconds = 30 * p.seconds;
  MemoryCost cost = memory_cost_subprocess(o.self, spec);
  const MemoryProbeResult& m = cost.full;
  double used = static_cast<double>(m.used_bytes), written = static_cast<double>(m.written_bytes);
  double meta = static_cast<double>(m.metadata_bytes);
  line.meta_per_used = used > 0 ? meta / used * 100 : 0;
  line.meta_per_written = written > 0 ? meta / written * 100 : 0;
  line.mem_per_gib_used = cost.mib_per_gib_used;
  line.mem_per_gib_written = cost.mib_per_gib_written;
}

void add_rows(Report& report, const Line& l, double raw_read, double raw_write) {
  auto add = [&](const std::string& name, double value, const std::string& unit,
                 std::optional<double> raw) {
    Row row;
    row.bench = "chunk-size";
    row.name = name + "-chunk" + chunk_label(l.chunk);
    row.pxd = value;
    row.unit = unit;
    if (raw) {
      row.baseline = raw;
      row.baseline_name = kRawBaselineName;
    }
    row.extra["chunk_size"] = l.chunk;
    report.add(row);
  };
  add("randread-4k-qd32", l.randread_iops, "iops", raw_read);
  add("cow-4k-qd32", l.cow_iops, "iops", raw_write);
  add("cow-copied", l.cow_copied_mib, "MiB", std::nullopt);
  add("cow-amplification", l.cow_amplification, "x", std::nullopt);
  add("freshwrite-4k-qd32", l.fresh_iops, "iops", raw_write);
  add("metadata-per-used", l.meta_per_used, "%", std::nullopt);
  add("metadata-per-written", l.meta_per_written, "%", std::nullopt);
  add("memory-per-gib-used", l.mem_per_gib_used, "MiB/GiB", std::nullopt);
  add("memory-per-gib-written", l.mem_per_gib_written, "MiB/GiB", std::nullopt);
}

void print_lines(const std::vector<Line>& lines, double raw_read, double raw_write) {
  std::printf("%-6s %10s %10s %10s %8s %10s %7s %9s %9s %9s %9s\n", "chunk", "randread", "cow",
              "copied", "cow-amp", "freshwrite", "alloc", "meta/used", "meta/wr", "mem/used",
              "mem/wr");
  std::printf("%-6s %10s %10s %10s %8s %10s %7s %9s %9s %9s %9s\n", "", "iops", "iops", "MiB", "x",
              "iops", "frac", "%", "%", "MiB/GiB", "MiB/GiB");
  for (const Line& l : lines) {
    std::printf("%-6s %10.0f %10.0f %10.1f %8.1f %10.0f %7.2f %9.4f %9.3f %9.3f %9.2f\n",
                chunk_label(l.chunk).c_str(), l.randread_iops, l.cow_iops, l.cow_copied_mib,
                l.cow_amplification, l.fresh_iops, l.fresh_allocating, l.meta_per_used,
                l.meta_per_written, l.mem_per_gib_used, l.mem_per_gib_written);
  }
  std::printf("%-6s %10.0f %10.0f %10s %8s %10.0f\n", "raw", raw_read, raw_write, "-", "-",
              raw_write);
  std::fflush(stdout);
}

}  // namespace

void run_chunk_size(const BenchOptions& options, Report& report) {
  ChunkParams p = params_from(options);
  ScratchDir scratch(options.dir, "pxbench-");
  progress("chunk-size: working in " + scratch.path() + " (" + describe_filesystem(scratch.path()) +
           ")");
  auto raw = RawFile::create(scratch / "raw.img", p.volume, RawLayout::kWritten);
  double raw_read = run_load_checked(*raw, random_4k(IoOp::kRead, p.seconds), "raw read").iops();
  double raw_write = run_load_checked(*raw, random_4k(IoOp::kWrite, p.seconds), "raw write").iops();
  raw.reset();

  std::vector<Line> lines;
  for (uint32_t chunk : kChunkSizes) {
    Line line;
    line.chunk = chunk;
    std::string label = chunk_label(chunk);
    progress("chunk-size: " + label + ": random read and copy-on-write");
    measure_cow(p, ScratchDir(scratch.path(), "cow-" + label + "-").path(), line);
    progress("chunk-size: " + label + ": fresh-thin write");
    measure_fresh(p, ScratchDir(scratch.path(), "fresh-" + label + "-").path(), line);
    progress("chunk-size: " + label + ": metadata and memory");
    measure_memory(p, options, scratch.path(), line);
    add_rows(report, line, raw_read, raw_write);
    lines.push_back(line);
  }
  if (!options.json) {
    std::printf("pxbench chunk-size on %s (%s); 4 KiB requests at queue depth 32\n",
                options.dir.c_str(), describe_filesystem(options.dir).c_str());
    print_lines(lines, raw_read, raw_write);
  }
}

}  // namespace pxd::bench
