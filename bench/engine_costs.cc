// Sections 3 to 5 of `pxbench engine`: what the engine costs beyond the data path.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_pool.h"
#include "bench/engine_bench.h"
#include "bench/load.h"
#include "bench/memory_probe.h"
#include "bench/raw_io.h"
#include "common/units.h"

namespace pxd::bench {
namespace {

constexpr double kSnapshotCreateGoalMs = 5;
constexpr double kEngineCpuGoalUs = 2;
constexpr double kMetadataGoalPercent = 1;
constexpr double kMemoryGoalMiBPerGiB = 2;

Row pxd_row(const std::string& name, double value, const std::string& unit) {
  Row row;
  row.bench = "engine";
  row.name = name;
  row.pxd = value;
  row.unit = unit;
  return row;
}

Row with_goal(Row row, double below) {
  row.goal = Goal::kPxdBelow;
  row.goal_value = below;
  return row;
}

double elapsed_ms(double since) {
  return (now_seconds() - since) * 1e3;
}

// Takes snapshots `first` .. `first + count - 1` of `volume`; returns each one's latency.
std::vector<double> time_snapshots(BenchPool& pool, const std::string& volume, int first,
                                   int count) {
  std::vector<double> ms;
  for (int i = first; i < first + count; ++i) {
    double t0 = now_seconds();
    check(pool->create_snapshot(volume, volume + "-snap-" + std::to_string(i)), "create snapshot");
    ms.push_back(elapsed_ms(t0));
    throw_if_interrupted();
  }
  return ms;
}

}  // namespace

// Random reads at queue depth 1 (or `load`) on a thread of their own while this thread
// runs `action`, then as long again alone: a control operation that holds the volume's
// lock shows as a stall of the reads.
ReadStall measure_read_stall(VolumeTarget& volume, const std::function<void()>& action,
                             const LoadSpec& load) {
  ReadStall stall;
  std::atomic<bool> stop{false};
  LoadSpec reads = load;
  reads.record_latencies = true;
  reads.stop = &stop;
  std::exception_ptr reader_error;
  std::thread reader([&] {
    try {
      stall.during = run_load_checked(volume, reads, "reads during a control operation");
    } catch (...) {
      reader_error = std::current_exception();
    }
  });
  std::exception_ptr error;
  try {
    ::usleep(10000);  // let the reader start
    action();
  } catch (...) {
    error = std::current_exception();
  }
  stop = true;
  reader.join();
  if (error) std::rethrow_exception(error);
  if (reader_error) std::rethrow_exception(reader_error);
  reads.stop = nullptr;
  reads.seconds = stall.during.seconds;
  stall.quiet = run_load_checked(volume, reads, "reads");
  return stall;
}

namespace {

void add_stall_rows(Report& report, const std::string& what, const ReadStall& stall,
                    const nlohmann::ordered_json& extra, const std::string& load = "read-qd1-") {
  for (double pct : {99.9, 100.0}) {
    Row row = pxd_row(load + (pct == 100 ? "max" : "p99.9") + "-lat-during-" + what,
                      percentile(stall.during.latencies_us, pct), "us");
    row.baseline = percentile(stall.quiet.latencies_us, pct);
    row.baseline_name = "pxd-quiet";
    row.extra["requests"] = stall.during.ops;
    for (const auto& [k, v] : extra.items()) row.extra[k] = v;
    report.add(row);
  }
}

// Clones of some of the large volume's snapshots, each written a little (so that its
// copies unshare chunks of the source), then a few thousand copy-on-write overwrites of
// the large volume (history the snapshots see): the listing then has volumes, clones and
// snapshots with exclusive and shared bytes of every kind.
void add_clones_and_history(const EngineParams& p, BenchPool& pool, VolumeTarget& volume,
                            int snapshots) {
  for (int i = 0; i < p.clones; ++i) {
    std::string snap = "big-snap-" + std::to_string(i * snapshots / std::max(1, p.clones));
    std::string name = "big-clone-" + std::to_string(i);
    progress("engine: " + name + " of " + snap);
    check(pool->clone(snap, name), "clone");
    VolumeTarget clone(check(pool->open_volume(name), "open clone"));
    LoadSpec w;
    w.op = IoOp::kWrite;
    w.queue_depth = 8;
    w.max_ops = p.clone_writes;
    w.seed = 77 + i;
    run_load_checked(clone, w, "write into " + name);
    throw_if_interrupted();
  }
  LoadSpec w;
  w.op = IoOp::kWrite;
  w.queue_depth = 8;
  w.max_ops = p.history_writes;
  run_load_checked(volume, w, "overwrite the large volume after its snapshots");
}

}  // namespace

// Section 3. One 4 KiB write per chunk maps one extent per chunk, so a million extents
// cost 4 GiB of data rather than a TiB. That data goes to /dev/shm (see bench_pool.h); the
// metadata, which is what a snapshot writes, stays on the measured filesystem. The peer
// of a snapshot is one durable append (write + fdatasync) to a file there: what a
// snapshot's synced metadata batch cannot beat. The peer of a listing (exclusive and
// shared bytes of every object) is Pool::list_recounted(), which walks every tree's
// extents for them as list() did before the counts were kept (doc/engine.md).
void bench_large_volume_snapshots(const EngineParams& p, const std::string& scratch, Report& report,
                                  const SnapshotTimes& small) {
  const uint64_t chunk = kDefaultChunkSize;
  const uint64_t volume_bytes = p.extents * chunk;
  // Room for the clones' and the volume's copies, beside the volume itself.
  const uint64_t copies = p.clones * p.clone_writes + p.history_writes;
  ScratchDir meta(scratch, "extents-");
  ScratchDir data(ram_dir(scratch), "pxbench-extents-");
  BenchPool pool(meta.path(), volume_bytes + copies * chunk + 64 * kMiB, chunk, data.path());
  VolumeTarget volume(pool.create_volume("big", volume_bytes));

  LoadSpec fill;
  fill.op = IoOp::kWrite;
  fill.pattern = Pattern::kStrided;
  fill.stride_bytes = chunk;
  fill.queue_depth = 32;
  fill.max_ops = p.extents;
  progress("engine: mapping " + std::to_string(p.extents) + " extents");
  LoadResult filled = run_load_checked(volume, fill, "fill the large volume");
  PoolUsage u = pool->usage();
  Row fill_row = pxd_row("fill-extents-4k-qd32", filled.seconds, "s");
  fill_row.extra["mapped_extents"] = u.mapped_extents;
  fill_row.extra["writes_per_s"] = filled.iops();
  fill_row.extra["data_dir"] = data.path();
  report.add(fill_row);

  progress("engine: " + std::to_string(p.snapshot_creates) + " snapshots of the large volume");
  std::vector<double> create_ms = time_snapshots(pool, "big", 0, p.snapshot_creates);
  const int stall_snapshots = std::max(5, p.snapshot_creates / 10);
  ReadStall snap_stall = measure_read_stall(
      volume, [&] { time_snapshots(pool, "big", p.snapshot_creates, stall_snapshots); });
  std::vector<double> append_ms = durable_append_ms(scratch, p.snapshot_creates);
  add_clones_and_history(p, pool, volume, p.snapshot_creates);

  // Where the time goes: inspect() builds the same ObjectInfo create_snapshot() returns, and
  // list() one for each volume and snapshot.
  PoolUsage listed = pool->usage();
  progress("engine: listing " + std::to_string(listed.volumes + listed.snapshots) +
           " objects over " + std::to_string(listed.mapped_extents) + " extents");
  std::vector<double> inspect_ms;
  for (int i = 0; i < 5; ++i) {
    double t0 = now_seconds();
    check(pool->inspect("big"), "inspect");
    inspect_ms.push_back(elapsed_ms(t0));
  }
  std::vector<double> list_ms;
  size_t objects = 0;
  for (int i = 0; i < 5; ++i) {
    double t0 = now_seconds();
    std::vector<ObjectInfo> counted = pool->list();
    list_ms.push_back(elapsed_ms(t0));
    objects = counted.size();
  }
  std::vector<ObjectInfo> walked;
  double walk_start = now_seconds();
  ReadStall list_stall = measure_read_stall(volume, [&] { walked = pool->list_recounted(); });
  double walk_ms = elapsed_ms(walk_start);
  std::vector<ObjectInfo> counted = pool->list();
  for (size_t i = 0; i < counted.size(); ++i) {
    if (i >= walked.size() || counted[i].exclusive_bytes != walked[i].exclusive_bytes ||
        counted[i].shared_bytes != walked[i].shared_bytes)
      throw BenchError("list() and list_recounted() disagree on " + counted[i].name);
  }
  // The same reads while list() runs again and again, for as long as the walk took.
  ReadStall counted_stall = measure_read_stall(volume, [&] {
    double until = now_seconds() + list_stall.during.seconds;
    while (now_seconds() < until) pool->list();
  });

  for (double pct : {50.0, 99.0}) {
    if (small.mapped_extents == 0) break;  // --only skipped the snapshot chain
    std::string tag = pct == 50 ? "p50" : "p99";
    Row small_row = pxd_row("snapcreate-" + tag + "-small-volume",
                            pct == 50 ? small.p50_ms : small.p99_ms, "ms");
    small_row.baseline = percentile(append_ms, pct);
    small_row.baseline_name = "raw-append-fdatasync";
    small_row.extra["mapped_extents"] = small.mapped_extents;
    report.add(small_row);
  }
  for (double pct : {50.0, 99.0}) {
    std::string tag = pct == 50 ? "p50" : "p99";
    Row row = pxd_row("snapcreate-" + tag, percentile(create_ms, pct), "ms");
    row.baseline = percentile(append_ms, pct);
    row.baseline_name = "raw-append-fdatasync";
    if (pct == 99) row = with_goal(row, kSnapshotCreateGoalMs);
    row.extra["mapped_extents"] = u.mapped_extents;
    row.extra["snapshots"] = create_ms.size();
    row.extra["max_ms"] = percentile(create_ms, 100);
    report.add(row);
  }
  nlohmann::ordered_json shape = {{"objects", objects},
                                  {"snapshots", listed.snapshots},
                                  {"mapped_extents", listed.mapped_extents}};
  Row inspect = pxd_row("inspect-volume-p50", percentile(inspect_ms, 50), "ms");
  inspect.extra = shape;
  report.add(inspect);
  Row list = pxd_row("list-objects", percentile(list_ms, 50), "ms");
  list.baseline = walk_ms;
  list.baseline_name = "walk-extents";
  list.extra = shape;
  list.extra["max_ms"] = percentile(list_ms, 100);
  report.add(list);
  add_stall_rows(report, "snapcreate", snap_stall,
                 {{"snapshots", stall_snapshots}, {"mapped_extents", u.mapped_extents}});
  // Against the quiet reads; the walk's figures are in the extra fields.
  nlohmann::ordered_json list_extra = shape;
  list_extra["walk_p99.9_us"] = percentile(list_stall.during.latencies_us, 99.9);
  list_extra["walk_max_us"] = percentile(list_stall.during.latencies_us, 100);
  add_stall_rows(report, "list", counted_stall, list_extra);
}

// What a first write into thin space costs in CPU: each 4 KiB write into a new volume of
// a RAM-backed pool lands in a chunk of its own, so each takes a chunk from the reserve
// and commits its extent. Where the disk is fast, this is what bounds fresh writes at
// high queue depth. No goal: the engine's goal is for I/O that needs no metadata change.
void bench_cpu_fresh(const EngineParams& p, const std::string& shm, RawFile& raw, Report& report) {
  progress("engine: cpu-freshwrite-4k-qd32");
  const uint64_t capacity = (p.fresh_cpu_ops + p.fresh_warmup_ops + 8192) * kDefaultChunkSize;
  BenchPool pool(shm + "/fresh-pool", capacity);  // sparse on tmpfs: 4 KiB of RAM a write
  VolumeTarget volume(pool.create_volume("cpu-fresh", capacity));
  LoadSpec warm;
  warm.op = IoOp::kWrite;
  warm.pattern = Pattern::kStrided;
  warm.queue_depth = 32;
  warm.seconds = 0;
  warm.stride_bytes = pool.chunk_size();
  warm.max_ops = p.fresh_warmup_ops;  // grows the allocation reserve
  run_load_checked(volume, warm, "warm up the allocation reserve");
  LoadSpec spec = warm;
  spec.pattern = Pattern::kScattered;
  spec.stride_bytes = pool.chunk_size();
  spec.first_index = p.fresh_warmup_ops;
  spec.max_ops = p.fresh_cpu_ops;
  LoadResult x = run_load_checked(volume, spec, "pxd fresh writes on /dev/shm");
  LoadSpec same = warm;
  same.pattern = Pattern::kRandom;
  same.max_ops = p.fresh_cpu_ops;
  LoadResult r = run_load_checked(raw, same, "raw writes on /dev/shm");
  Row row = raw_row("cpu-freshwrite-4k-qd32", x.cpu_us_per_op(), r.cpu_us_per_op(), "us/op");
  row.baseline_name = std::string(kRawBaselineName) + "-shm";
  row.extra["pxd_iops"] = x.iops();
  row.extra["baseline_iops"] = r.iops();
  row.extra["ops"] = x.ops;
  report.add(row);
}

// First writes into thin space (one per chunk, QD1) while another volume of the same
// pool is deleted: its chunks are zeroed (holes punched, the device synced) and freed.
// Those first writes each commit an extent on the metadata thread, so this shows whether
// the reclaim holds that thread up.
void bench_delete_stall(const EngineParams& p, const std::string& scratch, Report& report) {
  if (!p.wants_any(
          {"freshwrite-qd1-p99.9-lat-during-delete", "freshwrite-qd1-max-lat-during-delete"}))
    return;
  progress("engine: fresh writes while a volume is deleted");
  ScratchDir dir(scratch, "delete-");
  const uint64_t capacity = (p.delete_chunks + 2 * p.fresh_ops_qd1 + 16384) * kDefaultChunkSize;
  BenchPool pool(dir.path(), capacity);
  {
    VolumeTarget doomed(pool.create_volume("doomed", p.delete_chunks * kDefaultChunkSize));
    fill_sequential(doomed, p.delete_chunks * kDefaultChunkSize, "fill the volume to delete");
  }
  VolumeTarget fresh(pool.create_volume("fresh", capacity));
  LoadSpec writes;
  writes.op = IoOp::kWrite;
  writes.pattern = Pattern::kScattered;
  writes.stride_bytes = pool.chunk_size();
  writes.max_ops = p.fresh_ops_qd1;  // and stopped when the delete is done
  // The delete returns once its batch is durable; its chunks are zeroed in the background
  // once no request that started before it is in flight. Both belong to the action.
  ReadStall stall = measure_read_stall(
      fresh,
      [&] {
        check(pool->remove("doomed"), "delete");
        pool.wait_for_reclaim(60);
      },
      writes);
  add_stall_rows(report, "delete", stall,
                 {{"deleted_chunks", p.delete_chunks}, {"delete_seconds", stall.during.seconds}},
                 "freshwrite-qd1-");
}

// Section 4. getrusage counts every thread of the process (the metadata thread, RocksDB's,
// io_uring's workers), so this is all the CPU an I/O costs, kernel copy included; the
// raw file on the same tmpfs shows the part that is not the engine's.
void bench_cpu(const EngineParams& p, Report& report) {
  std::unique_ptr<ScratchDir> shm;
  std::unique_ptr<RawFile> raw;
  try {
    shm = std::make_unique<ScratchDir>("/dev/shm", "pxbench-");
    raw = RawFile::create(*shm / "raw.img", p.shm_size, RawLayout::kWritten);
  } catch (const BenchError& e) {
    progress(std::string("engine: no CPU figures on /dev/shm: ") + e.what());
    for (const char* name : {"cpu-randread-4k-qd32", "cpu-overwrite-4k-qd32"}) {
      Row row = pxd_row(name, 0, "us/op");
      row.extra["skipped"] = e.what();
      report.add(row);
    }
    return;
  }
  BenchPool pool(*shm / "pool", p.shm_size + 64 * kMiB);
  VolumeTarget volume(pool.create_volume("cpu", p.shm_size));
  fill_sequential(volume, p.shm_size, "fill the RAM-backed volume");

  for (IoOp op : {IoOp::kRead, IoOp::kWrite}) {
    std::string what = op == IoOp::kRead ? "randread-4k-qd32" : "overwrite-4k-qd32";
    if (!p.wants("cpu-" + what) && !p.wants("cpu-engine-" + what)) continue;
    progress("engine: cpu-" + what);
    LoadSpec spec;
    spec.op = op;
    spec.queue_depth = 32;
    spec.seconds = p.seconds;
    Comparison c = compare_loads(volume, *raw, spec, p.rounds, what + " on /dev/shm");
    const LoadResult& x = c.a;
    const LoadResult& r = c.b;
    Row total = raw_row("cpu-" + what, x.cpu_us_per_op(), r.cpu_us_per_op(), "us/op");
    total.baseline_name = std::string(kRawBaselineName) + "-shm";
    total.extra["pxd_iops"] = x.iops();
    total.extra["baseline_iops"] = r.iops();
    report.add(total);
    report.add(
        with_goal(pxd_row("cpu-engine-" + what, x.cpu_us_per_op() - r.cpu_us_per_op(), "us/op"),
                  kEngineCpuGoalUs));
  }
  if (p.wants("cpu-freshwrite-4k-qd32")) bench_cpu_fresh(p, shm->path(), *raw, report);
}

// Section 5, in subprocesses (see memory_probe.h).
void bench_metadata_memory(const EngineParams& p, const std::string& self,
                           const std::string& scratch, Report& report) {
  MemoryProbeSpec spec;
  spec.dir = scratch;
  spec.volume_bytes = p.memory_volume;
  spec.write_bytes = p.memory_write;
  spec.max_seconds = 30 * p.seconds;
  progress("engine: " + format_size(p.memory_write) + " of random 4 KiB writes into a " +
           format_size(p.memory_volume) + " volume, and half of that into half of it");
  MemoryCost cost = memory_cost_subprocess(self, spec);
  const MemoryProbeResult& m = cost.full;
  const double used = static_cast<double>(m.used_bytes);
  const double written = static_cast<double>(m.written_bytes);
  const double meta = static_cast<double>(m.metadata_bytes);
  nlohmann::ordered_json details = nlohmann::ordered_json::object();
  const nlohmann::json probe = m.to_json();
  for (const auto& [k, v] : probe.items()) details[k] = v;
  // The memory rows are rates (memory_probe.h); beside them, what one mapped chunk costs
  // (the RSS rate, and the engine's own count of its maps), what does not grow with the
  // data, and the single probe's plain ratio with and without the write buffers.
  details["rss_bytes_per_extent"] = cost.bytes_per_extent;
  if (m.mapped_extents > 0) {
    const double extents = static_cast<double>(m.mapped_extents);
    details["map_bytes_per_extent"] = static_cast<double>(m.extent_map_bytes) / extents;
    details["wal_bytes_per_extent"] = static_cast<double>(m.metadata_wal_bytes) / extents;
  }
  details["fixed_mib"] = cost.fixed_mib;
  details["single_mib_per_gib_written"] = cost.single_mib_per_gib_written;
  details["single_with_buffer_mib_per_gib_written"] = cost.single_with_buffer_mib_per_gib_written;

  auto add = [&](const std::string& name, double value, const std::string& unit, double goal) {
    Row row = with_goal(pxd_row(name, value, unit), goal);
    row.extra = details;
    report.add(row);
  };
  add("metadata-per-used", used > 0 ? meta / used * 100 : 0, "%", kMetadataGoalPercent);
  add("metadata-per-written", written > 0 ? meta / written * 100 : 0, "%", kMetadataGoalPercent);
  add("memory-per-gib-used", cost.mib_per_gib_used, "MiB/GiB", kMemoryGoalMiBPerGiB);
  add("memory-per-gib-written", cost.mib_per_gib_written, "MiB/GiB", kMemoryGoalMiBPerGiB);
}

}  // namespace pxd::bench
