#include "bench/engine_bench.h"

#include <algorithm>

#include "bench/bench_pool.h"
#include "bench/load.h"
#include "bench/raw_io.h"
#include "common/units.h"
#include "engine/pool_state.h"

namespace pxd::bench {
namespace {

struct Workload {
  const char* name;
  IoOp op;
  Pattern pattern;
  uint32_t block;
  double goal;  // minimum pxd/raw ratio; 0 = no target
};

constexpr Workload kWorkloads[] = {
    {"randread-4k", IoOp::kRead, Pattern::kRandom, 4096, 0.9},
    {"overwrite-4k", IoOp::kWrite, Pattern::kRandom, 4096, 0.9},
    {"seqwrite-1m", IoOp::kWrite, Pattern::kSequential, 1 << 20, 0},
    {"seqread-1m", IoOp::kRead, Pattern::kSequential, 1 << 20, 0},
};
constexpr uint32_t kQueueDepths[] = {1, 32};
constexpr double kFreshWriteGoal = 0.7;
constexpr double kSnapshotReadGoal = 0.95;

std::string qd_name(const std::string& base, uint32_t qd) {
  return base + "-qd" + std::to_string(qd);
}

// The throughput of a run in the unit its block size calls for.
double throughput(const LoadResult& r, uint32_t block) {
  return block >= (1u << 20) ? r.mib_per_s() : r.iops();
}

void add_throughput_rows(Report& report, const std::string& name, uint32_t qd, uint32_t block,
                         const LoadResult& pxd, const LoadResult& raw, double goal) {
  Row row = raw_row(qd_name(name, qd), throughput(pxd, block), throughput(raw, block),
                    block >= (1u << 20) ? "MiB/s" : "iops");
  if (goal > 0) {
    row.goal = Goal::kRatioAtLeast;
    row.goal_value = goal;
  }
  report.add(row);
  if (qd == 1) {
    report.add(
        raw_row(qd_name(name, qd) + "-lat", pxd.mean_latency_us(), raw.mean_latency_us(), "us"));
  }
}

LoadSpec spec_for(IoOp op, Pattern pattern, uint32_t block, uint32_t qd, uint64_t region,
                  double seconds) {
  LoadSpec spec;
  spec.op = op;
  spec.pattern = pattern;
  spec.block_bytes = block;
  spec.queue_depth = qd;
  spec.region_bytes = region;
  spec.seconds = seconds;
  return spec;
}

// 4 KiB random writes into brand-new volumes of a thin pool: most allocate a chunk.
//
// Twice: on a thick pool file (written whole at creation, as the raw baseline's file is,
// so that both overwrite allocated blocks: what a pool on a block device sees), and on a
// large sparse pool file (pxd's default), where every first write also has the filesystem
// allocate blocks in its journal. A second peer, `layout`, writes where pxd's writes land
// in its pool file (a random block of each chunk in turn, each round further on), so the
// rows can tell the engine's cost from the layout's: each first write takes a new chunk,
// so pxd's writes spread over ops x chunk size of the pool where the baseline's stay in
// its file. For the thick pool that peer's file is written whole too; for the sparse pool
// it is sparse, and shows the filesystem's share.
//
// Each round writes a new volume, and the peers do the same number of writes in turn (the
// order alternates between rounds: a case is short, and one journal commit of the
// filesystem can stall whichever target runs then).
void bench_fresh_pool(const EngineParams& p, BenchPool& pool, IoTarget& raw, RawFile& layout,
                      bool sparse, const std::string& suffix, Report& report) {
  const uint64_t capacity = pool->usage().capacity_bytes;
  const uint64_t chunks = capacity / pool.chunk_size();
  {
    // A new pool's allocation reserve starts small and grows each time writes wait for it
    // (to its maximum at once when 32 wait together); a pool in service has long grown it.
    // Grow it first.
    VolumeTarget warmup(pool.create_volume("warmup", capacity));
    LoadSpec spec = spec_for(IoOp::kWrite, Pattern::kStrided, 4096, 32, capacity, 0);
    spec.stride_bytes = pool.chunk_size();
    spec.max_ops = std::min<uint64_t>(p.fresh_warmup_ops, chunks / 4);
    run_load_checked(warmup, spec, "warm up the allocation reserve");
  }
  const int rounds = std::max(p.rounds, 1);
  uint64_t layout_next = 0;  // chunk-sized strides of the layout peer's file written so far
  for (uint32_t qd : kQueueDepths) {
    const std::string name = qd_name("freshwrite-4k", qd) + suffix;
    if (!p.wants(name)) continue;
    progress("engine: " + name);
    // The thick pool is sized for every round; the sparse one is far larger.
    const uint64_t room = sparse ? chunks / 2 / std::size(kQueueDepths) : UINT64_MAX;
    const uint64_t ops = std::min(qd == 1 ? p.fresh_ops_qd1 : p.fresh_ops_qd32, room) /
                         static_cast<uint64_t>(rounds);
    LoadResult x, r, s;
    PoolUsage u0 = pool->usage();
    for (int round = 0; round < rounds; ++round) {
      VolumeTarget volume(pool.create_volume(name + "-" + std::to_string(round), capacity));
      LoadSpec spec = spec_for(IoOp::kWrite, Pattern::kRandom, 4096, qd, capacity, 0);
      spec.max_ops = ops;
      spec.seed += static_cast<uint64_t>(round);
      LoadSpec same = spec;
      same.region_bytes = raw.size_bytes();
      LoadSpec scattered = spec;
      scattered.pattern = Pattern::kScattered;
      scattered.stride_bytes = pool.chunk_size();
      scattered.region_bytes = 0;
      scattered.first_index = layout_next;
      layout_next += ops;
      auto run_pxd = [&] { x += run_load_checked(volume, spec, "pxd " + name); };
      auto run_peers = [&] {
        r += run_load_checked(raw, same, "raw " + name);
        s += run_load_checked(layout, scattered, "raw spread " + name);
      };
      if (round % 2 == 0) {
        run_pxd();
        run_peers();
      } else {
        run_peers();
        run_pxd();
      }
    }
    PoolUsage u = pool->usage();

    Row row = raw_row(name, x.iops(), r.iops(), "iops");
    if (!sparse) {
      row.goal = Goal::kRatioAtLeast;
      row.goal_value = kFreshWriteGoal;
    }
    double done = static_cast<double>(std::max<uint64_t>(x.ops, 1));
    row.extra["allocating_fraction"] =
        static_cast<double>(u.used_bytes - u0.used_bytes) / pool.chunk_size() / done;
    row.extra["metadata_commits_per_write"] =
        static_cast<double>(u.metadata_commits - u0.metadata_commits) / done;
    row.extra["ops"] = x.ops;
    row.extra["rounds"] = rounds;
    row.extra["pxd_cpu_us_per_op"] = x.cpu_us_per_op();
    row.extra["baseline_cpu_us_per_op"] = r.cpu_us_per_op();
    report.add(row);
    if (qd == 1) report.add(raw_row(name + "-lat", x.mean_latency_us(), r.mean_latency_us(), "us"));
    Row diag = raw_row(name + (sparse ? "-vs-sparse" : "-vs-spread"), x.iops(), s.iops(), "iops");
    diag.baseline_name = sparse ? "raw-sparse-odirect-uring" : "raw-spread-odirect-uring";
    diag.extra["pxd_cpu_us_per_op"] = x.cpu_us_per_op();
    diag.extra["baseline_cpu_us_per_op"] = s.cpu_us_per_op();
    report.add(diag);
  }
}

}  // namespace

void bench_fresh_writes(const EngineParams& p, const std::string& scratch, RawFile& raw,
                        Report& report) {
  if (p.wants_any({"freshwrite-4k-qd1", "freshwrite-4k-qd32"})) {
    // Chunks for the warm-up and every round at both depths, and a spare: the whole pool
    // fits in its allocation reserve, so no refill (a metadata sync) falls in the rounds.
    const uint64_t capacity =
        (p.fresh_warmup_ops + p.fresh_ops_qd1 + p.fresh_ops_qd32 + p.fresh_thick_spare) *
        kDefaultChunkSize;
    // Until session 11 it was 34 GiB: the reserve then held 32 of them, fell below half in
    // the last QD32 round of a full run, and that round's refill sync stalled its writes.
    if (capacity > PoolState::kMaxReserveBytesUnbacked)
      throw BenchError("the thick fresh-write pool must fit in its allocation reserve");
    ScratchDir dir(scratch, "fresh-thick-");
    progress("engine: writing a thick pool file of " + format_size(capacity));
    BenchPool pool(dir.path(), capacity, kDefaultChunkSize, "", /*thick=*/true);
    const uint64_t spread_bytes = (p.fresh_ops_qd1 + p.fresh_ops_qd32) * kDefaultChunkSize;
    progress("engine: writing the spread peer's file of " + format_size(spread_bytes));
    auto spread = RawFile::create(dir / "spread.img", spread_bytes, RawLayout::kWritten);
    bench_fresh_pool(p, pool, raw, *spread, false, "", report);
  }
  if (p.wants_any({"freshwrite-4k-qd1-sparse-pool", "freshwrite-4k-qd32-sparse-pool"})) {
    ScratchDir dir(scratch, "fresh-");  // removed (with its sparse pool file) on return
    BenchPool pool(dir.path(), p.fresh_capacity);
    auto sparse = RawFile::create(dir / "sparse.img", p.fresh_capacity, RawLayout::kSparse);
    bench_fresh_pool(p, pool, raw, *sparse, true, "-sparse-pool", report);
  }
}

namespace {

// Section 2: random reads while the volume's chain of snapshots grows. Before each
// snapshot a few random 4 KiB writes change the volume, so each snapshot has its own
// history (copied chunks), as a real volume's would. The 0-snapshot case is a second
// volume, written the same way and never snapshotted, measured alternately with the
// first at each point, so that the machine's drift does not pass for a snapshot cost.
SnapshotTimes bench_snapshot_chain(const EngineParams& p, BenchPool& pool, VolumeTarget& volume,
                                   VolumeTarget& plain, Report& report) {
  const uint64_t chunks = p.size / pool.chunk_size();
  const uint64_t writes_per_round = std::max<uint64_t>(2, chunks / 256);
  std::vector<double> create_ms;
  uint32_t snapshots = 0;
  for (uint32_t target : p.chain) {
    while (snapshots < target) {
      LoadSpec w =
          spec_for(IoOp::kWrite, Pattern::kRandom, 4096,
                   static_cast<uint32_t>(std::min<uint64_t>(writes_per_round, 32)), p.size, 0);
      w.max_ops = writes_per_round;
      w.seed = 1000 + snapshots;
      run_load_checked(volume, w, "overwrite before snapshot");
      double t0 = now_seconds();
      check(pool->create_snapshot("main", "main-snap-" + std::to_string(snapshots)),
            "create snapshot");
      create_ms.push_back((now_seconds() - t0) * 1e3);
      ++snapshots;
      throw_if_interrupted();
    }
    std::string name = "randread-4k-qd32-snap" + std::to_string(target);
    progress("engine: " + name);
    Comparison c = compare_loads(
        volume, plain, spec_for(IoOp::kRead, Pattern::kRandom, 4096, 32, p.size, p.seconds),
        p.rounds, name);
    Row row;
    row.bench = "engine";
    row.name = name;
    row.pxd = c.a.iops();
    row.baseline = c.b.iops();
    row.baseline_name = "pxd-0-snapshots";
    row.unit = "iops";
    if (target == p.chain.back()) {
      row.goal = Goal::kRatioAtLeast;
      row.goal_value = kSnapshotReadGoal;
    }
    row.extra["snapshots"] = target;
    row.extra["mapped_extents"] = pool->usage().mapped_extents;
    report.add(row);
  }
  SnapshotTimes times;
  times.p50_ms = percentile(create_ms, 50);
  times.p99_ms = percentile(create_ms, 99);
  times.mapped_extents = pool->usage().mapped_extents;
  return times;
}

}  // namespace

Row raw_row(const std::string& name, double pxd, double raw, const std::string& unit) {
  Row row;
  row.bench = "engine";
  row.name = name;
  row.pxd = pxd;
  row.baseline = raw;
  row.baseline_name = kRawBaselineName;
  row.unit = unit;
  return row;
}

EngineParams EngineParams::from(const BenchOptions& o) {
  EngineParams p;
  if (o.quick || o.smoke) {
    p.seconds = 1;
    p.rounds = 2;
    p.size = 256 * kMiB;
    p.fresh_capacity = 128 * kGiB;
    p.fresh_ops_qd1 = 300;
    p.fresh_ops_qd32 = 1500;
    p.fresh_thick_spare = 4096;
    p.delete_chunks = 1024;
    p.extents = 100000;
    p.clones = 2;
    p.shm_size = 128 * kMiB;
    p.fresh_cpu_ops = 5000;
    p.memory_write = 256 * kMiB;
    p.memory_volume = 16 * kGiB;
  }
  if (o.smoke) {
    p.seconds = 0.2;
    p.rounds = 1;
    p.size = 64 * kMiB;
    p.fresh_capacity = 16 * kGiB;
    p.fresh_ops_qd1 = 100;
    p.fresh_ops_qd32 = 500;
    p.fresh_thick_spare = 512;
    p.delete_chunks = 64;
    p.chain = {0, 4, 16};
    p.extents = 4096;
    p.snapshot_creates = 20;
    p.clones = 1;
    p.clone_writes = 50;
    p.history_writes = 100;
    p.shm_size = 32 * kMiB;
    p.fresh_cpu_ops = 500;
    p.memory_write = 16 * kMiB;
    p.memory_volume = 1 * kGiB;
  }
  if (o.seconds > 0) p.seconds = o.seconds;
  if (o.size > 0) p.size = o.size;
  p.only = o.only;
  if (p.size % (1 << 20) != 0 || p.size < 4 * kMiB)
    throw BenchError("--size must be a multiple of 1 MiB and at least 4 MiB");
  return p;
}

SnapshotTimes bench_data_path(const EngineParams& p, const std::string& scratch, RawFile& raw,
                              Report& report) {
  progress("engine: writing a " + format_size(p.size) + " pxd volume");
  const uint64_t chunk = kDefaultChunkSize;
  const uint64_t chain_copies = p.chain.back() * std::max<uint64_t>(2, p.size / chunk / 256);
  BenchPool pool(scratch + "/data", 3 * p.size + chain_copies * chunk + 256 * kMiB);
  VolumeTarget volume(pool.create_volume("main", p.size));
  fill_sequential(volume, p.size, "fill pxd volume");
  VolumeTarget plain(pool.create_volume("plain", p.size));  // section 2's 0-snapshot peer
  fill_sequential(plain, p.size, "fill pxd volume");

  for (const Workload& w : kWorkloads) {
    for (uint32_t qd : kQueueDepths) {
      if (!p.wants(qd_name(w.name, qd))) continue;
      LoadSpec spec = spec_for(w.op, w.pattern, w.block, qd, p.size, p.seconds);
      progress("engine: " + qd_name(w.name, qd));
      Comparison c = compare_loads(volume, raw, spec, p.rounds, w.name);
      add_throughput_rows(report, w.name, qd, w.block, c.a, c.b, w.goal);
    }
  }
  bool chain = false;
  for (uint32_t n : p.chain) chain = chain || p.wants("randread-4k-qd32-snap" + std::to_string(n));
  if (!chain) return {};
  return bench_snapshot_chain(p, pool, volume, plain, report);
}

void run_engine(const BenchOptions& options, Report& report) {
  EngineParams p = EngineParams::from(options);
  ScratchDir scratch(options.dir, "pxbench-");
  progress("engine: working in " + scratch.path() + " (" + describe_filesystem(scratch.path()) +
           ")");
  progress("engine: writing a " + format_size(p.size) + " raw file");
  auto raw = RawFile::create(scratch / "raw.img", p.size, RawLayout::kWritten);
  SnapshotTimes small = bench_data_path(p, scratch.path(), *raw, report);
  if (p.wants_any({"fill-extents-4k-qd32", "snapcreate-p50", "snapcreate-p99", "inspect-volume-p50",
                   "list-objects", "read-qd1-p99.9-lat-during-snapcreate",
                   "read-qd1-max-lat-during-snapcreate", "read-qd1-p99.9-lat-during-list",
                   "read-qd1-max-lat-during-list"}))
    bench_large_volume_snapshots(p, scratch.path(), report, small);
  if (p.wants_any({"cpu-randread-4k-qd32", "cpu-overwrite-4k-qd32", "cpu-engine-randread-4k-qd32",
                   "cpu-engine-overwrite-4k-qd32", "cpu-freshwrite-4k-qd32"}))
    bench_cpu(p, report);
  if (p.wants_any({"metadata-per-used", "metadata-per-written", "memory-per-gib-used",
                   "memory-per-gib-written"}))
    bench_metadata_memory(p, options.self, scratch.path(), report);
  // Last: these write and delete about 50 GiB of files, and the filesystem's discards of
  // them slow the disk for minutes after (reads of the snapshot chain's 0-snapshot volume
  // ran at a tenth of their speed when this came before section 2).
  bench_fresh_writes(p, scratch.path(), *raw, report);
  bench_delete_stall(p, scratch.path(), report);
}

}  // namespace pxd::bench
