#include "bench/memory_probe.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "bench/bench_pool.h"
#include "bench/load.h"

extern char** environ;

namespace pxd::bench {

nlohmann::json MemoryProbeResult::to_json() const {
  return {{"rss_before", rss_before},
          {"rss_after", rss_after},
          {"rss_with_buffer", rss_with_buffer},
          {"metadata_buffer_bytes", metadata_buffer_bytes},
          {"extent_map_bytes", extent_map_bytes},
          {"written_bytes", written_bytes},
          {"used_bytes", used_bytes},
          {"metadata_bytes", metadata_bytes},
          {"metadata_wal_bytes", metadata_wal_bytes},
          {"metadata_sst_bytes", metadata_sst_bytes},
          {"mapped_extents", mapped_extents},
          {"metadata_commits", metadata_commits},
          {"seconds", seconds},
          {"iops", iops}};
}

MemoryProbeResult MemoryProbeResult::from_json(const nlohmann::json& j) {
  MemoryProbeResult r;
  r.rss_before = j.at("rss_before");
  r.rss_after = j.at("rss_after");
  r.rss_with_buffer = j.at("rss_with_buffer");
  r.metadata_buffer_bytes = j.at("metadata_buffer_bytes");
  r.extent_map_bytes = j.at("extent_map_bytes");
  r.written_bytes = j.at("written_bytes");
  r.used_bytes = j.at("used_bytes");
  r.metadata_bytes = j.at("metadata_bytes");
  r.metadata_wal_bytes = j.at("metadata_wal_bytes");
  r.metadata_sst_bytes = j.at("metadata_sst_bytes");
  r.mapped_extents = j.at("mapped_extents");
  r.metadata_commits = j.at("metadata_commits");
  r.seconds = j.at("seconds");
  r.iops = j.at("iops");
  return r;
}

MemoryProbeResult run_memory_probe(const MemoryProbeSpec& spec) {
  ScratchDir scratch(spec.dir, "pxbench-mem-");
  ScratchDir data(ram_dir(spec.dir), "pxbench-mem-data-");
  uint32_t chunk = spec.chunk_size ? spec.chunk_size : kDefaultChunkSize;
  BenchPool pool(scratch.path(), spec.volume_bytes, chunk, data.path());
  VolumeTarget volume(pool.create_volume("thin", spec.volume_bytes));

  LoadSpec load;
  load.op = IoOp::kWrite;
  load.pattern = Pattern::kRandom;
  load.queue_depth = 32;
  load.max_ops = spec.write_bytes / load.block_bytes;
  load.seconds = spec.max_seconds;
  LoadDriver driver(volume, load);
  PoolUsage before = pool->usage();

  // Both RSS readings follow malloc_trim: memory malloc holds free (after the flush, the
  // buffers' arenas) is not what the data costs.
  MemoryProbeResult r;
  ::malloc_trim(0);
  r.rss_before = rss_bytes();
  LoadResult written = driver.run();
  if (written.errors)
    throw BenchError(std::string("memory probe writes failed: ") +
                     std::strerror(-written.first_error));
  check(pool->sync(), "sync pool");
  r.rss_with_buffer = rss_bytes();
  PoolUsage after = pool->usage();
  r.metadata_buffer_bytes = after.metadata_buffer_bytes;
  r.extent_map_bytes = after.extent_map_bytes;
  MetadataFiles files = metadata_files(scratch / "meta");  // as written, before the flush
  check(pool->flush_metadata_buffer(), "flush the metadata buffer");
  // RocksDB frees a flushed buffer on its flush thread just after the flush returns.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::malloc_trim(0);
  r.rss_after = rss_bytes();
  r.written_bytes = written.bytes;
  r.used_bytes = after.used_bytes - before.used_bytes;
  r.metadata_bytes = after.metadata_bytes;
  r.metadata_wal_bytes = files.wal;
  r.metadata_sst_bytes = files.sst;
  r.mapped_extents = after.mapped_extents;
  r.metadata_commits = after.metadata_commits - before.metadata_commits;
  r.seconds = written.seconds;
  r.iops = written.iops();
  return r;
}

MemoryProbeResult memory_probe_subprocess(const std::string& self, const MemoryProbeSpec& spec) {
  std::vector<std::string> args = {self,
                                   "memory-probe",
                                   "--dir",
                                   spec.dir,
                                   "--chunk-size",
                                   std::to_string(spec.chunk_size),
                                   "--volume-size",
                                   std::to_string(spec.volume_bytes),
                                   "--write",
                                   std::to_string(spec.write_bytes),
                                   "--seconds",
                                   std::to_string(spec.max_seconds)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw BenchError(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, self.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw BenchError("start " + self + " memory-probe: " + std::strerror(rc));
  }
  std::string out;
  bool stopped = false;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      break;
    }
    if (interrupted() && !stopped) {
      ::kill(pid, SIGTERM);  // the child cleans up its own scratch directory
      stopped = true;
    }
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  throw_if_interrupted();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw BenchError("memory probe subprocess failed (status " + std::to_string(status) + ")");
  try {
    return MemoryProbeResult::from_json(nlohmann::json::parse(out));
  } catch (const nlohmann::json::exception& e) {
    throw BenchError(std::string("memory probe output: ") + e.what());
  }
}

MemoryCost memory_cost_subprocess(const std::string& self, const MemoryProbeSpec& spec) {
  MemoryProbeSpec half = spec;
  half.volume_bytes = spec.volume_bytes / 2;
  half.write_bytes = spec.write_bytes / 2;
  MemoryCost c;
  c.half = memory_probe_subprocess(self, half);
  c.full = memory_probe_subprocess(self, spec);
  auto growth = [](const MemoryProbeResult& m) {
    return (static_cast<double>(m.rss_after) - static_cast<double>(m.rss_before)) / kMiBf;
  };
  const double d_mib = growth(c.full) - growth(c.half);
  const double d_written =
      (static_cast<double>(c.full.written_bytes) - static_cast<double>(c.half.written_bytes)) /
      kGiBf;
  const double d_used =
      (static_cast<double>(c.full.used_bytes) - static_cast<double>(c.half.used_bytes)) / kGiBf;
  const double d_extents =
      static_cast<double>(c.full.mapped_extents) - static_cast<double>(c.half.mapped_extents);
  if (d_written > 0) c.mib_per_gib_written = d_mib / d_written;
  if (d_used > 0) c.mib_per_gib_used = d_mib / d_used;
  if (d_extents > 0) c.bytes_per_extent = d_mib * kMiBf / d_extents;
  const double written = static_cast<double>(c.full.written_bytes) / kGiBf;
  c.fixed_mib = growth(c.full) - c.mib_per_gib_written * written;
  if (written > 0) {
    c.single_mib_per_gib_written = growth(c.full) / written;
    c.single_with_buffer_mib_per_gib_written =
        (static_cast<double>(c.full.rss_with_buffer) - static_cast<double>(c.full.rss_before)) /
        kMiBf / written;
  }
  return c;
}

}  // namespace pxd::bench
