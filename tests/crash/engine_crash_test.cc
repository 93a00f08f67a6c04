// tests/crash/engine_crash_test.cc: SIGKILL the engine at random moments, many times over,
// and check the durability contract (DESIGN.md) on what it left behind.
//
// Each cycle starts engine_crash_child (crash_child.cc) on the pool, lets it run a random
// concurrent workload for a random few to few hundred milliseconds, SIGKILLs it, reopens
// the pool here and checks every block of every volume and snapshot against the child's
// journal (crash_model.h), and the space accounting. The next child continues from what
// was found. At the end everything is deleted and the pool must be empty: a crash never
// leaks a chunk for good.
//
// Only process crashes: the page cache survives them, so a flush that was skipped goes
// unnoticed here; what is caught is data that never reached the kernel (or reached the
// wrong place) when the contract says it had, torn or foreign blocks, and recovery that
// gets the metadata wrong. Focused regression tests for the engine bugs it found are in
// control_crash_test.cc.
//
// Environment: PXD_CRASH_SEED (replay a run; kill timing still varies), PXD_CRASH_CYCLES
// (default 50), PXD_CRASH_TIME_LIMIT (seconds, default 600: stops starting cycles after
// it), PXD_CRASH_KEEP_DIR (on failure, copy the pool and journals there).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/units.h"
#include "engine/pool.h"
#include "tests/crash/crash_format.h"
#include "tests/crash/crash_model.h"
#include "tests/support/pool_fixture.h"
#include "tests/support/temp_dir.h"

#ifndef PXD_CRASH_CHILD_PATH
#error "PXD_CRASH_CHILD_PATH must name the engine_crash_child executable"
#endif

namespace pxd::crash {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kChunk = 64 * 1024;
constexpr uint64_t kPoolBytes = 64 * kMiB;
constexpr uint64_t kVolumeBytes = 4 * kMiB;
constexpr int kVolumes = 3;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoull(v) : fallback;
}

std::string tail_of(const std::string& path, size_t max_bytes = 4000) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s.size() > max_bytes ? "..." + s.substr(s.size() - max_bytes) : s;
}

// A child process that is SIGKILLed and reaped on every path out of the test.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& args, const std::string& output_path) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int out = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE_MESSAGE(out >= 0, "open " << output_path);
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls until exec.
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out);
    REQUIRE_MESSAGE(pid_ > 0, "fork failed");
  }
  ~ChildProcess() { kill_and_wait(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // False once it has exited (it should never exit on its own).
  bool running() {
    if (reaped_) return false;
    if (::waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return !reaped_;
  }
  // The wait status.
  int kill_and_wait() {
    if (!reaped_ && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
  return "stopped";
}

struct Totals {
  int cycles = 0;
  int killed_before_ready = 0;
  int killed_with_requests = 0;
  int killed_with_flush = 0;
  int killed_in_snapshot_op = 0;
  int killed_in_copy_on_write = 0;
  uint64_t in_flight = 0;
  uint64_t mutations = 0;
  uint64_t durable = 0;
  uint64_t flushes = 0;
  uint64_t snapshot_ops = 0;
  uint64_t blocks_checked = 0;
  uint64_t lost_completed = 0;
  uint64_t in_flight_landed = 0;
};

void keep_on_failure(const testing::TempDir& dir) {
  const char* keep = std::getenv("PXD_CRASH_KEEP_DIR");
  if (!keep || !*keep) return;
  std::error_code ec;
  std::filesystem::copy(dir.path(), keep, std::filesystem::copy_options::recursive, ec);
  std::fprintf(stderr, "engine_crash_test: pool and journals copied to %s%s\n", keep,
               ec ? (" (failed: " + ec.message() + ")").c_str() : "");
}

std::unique_ptr<Pool> open_pool(const testing::TempDir& dir) {
  auto pool = Pool::open(dir / "meta");
  REQUIRE_MESSAGE(pool.has_value(), "Pool::open: " << pool.error().to_string());
  return std::move(pool).value();
}

void check_space(Pool& pool, std::vector<std::string>& failures) {
  PoolUsage u = pool.usage();
  if (u.used_bytes + u.free_bytes + u.reclaiming_bytes != u.capacity_bytes) {
    failures.push_back("space: used " + std::to_string(u.used_bytes) + " + free " +
                       std::to_string(u.free_bytes) + " + reclaiming " +
                       std::to_string(u.reclaiming_bytes) + " != capacity " +
                       std::to_string(u.capacity_bytes));
  }
  // Exclusive and shared bytes, counted at open from the extents, equal a walk of them.
  std::vector<ObjectInfo> counted = pool.list();
  std::vector<ObjectInfo> walked = pool.list_recounted();
  for (size_t i = 0; i < counted.size() && i < walked.size(); ++i) {
    if (counted[i].exclusive_bytes != walked[i].exclusive_bytes ||
        counted[i].shared_bytes != walked[i].shared_bytes) {
      failures.push_back("space of " + counted[i].name + ": counted " +
                         std::to_string(counted[i].exclusive_bytes) + " exclusive, " +
                         std::to_string(counted[i].shared_bytes) + " shared; walked " +
                         std::to_string(walked[i].exclusive_bytes) + ", " +
                         std::to_string(walked[i].shared_bytes));
    }
  }
}

TEST_CASE("SIGKILL at random moments never breaks the durability contract") {
  const uint64_t seed =
      env_u64("PXD_CRASH_SEED", std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32));
  const int cycles = static_cast<int>(env_u64("PXD_CRASH_CYCLES", 50));
  const auto time_limit = std::chrono::seconds(env_u64("PXD_CRASH_TIME_LIMIT", 600));
  std::fprintf(stderr, "engine_crash_test: seed %llu, %d cycles (replay: PXD_CRASH_SEED=%llu)\n",
               static_cast<unsigned long long>(seed), cycles,
               static_cast<unsigned long long>(seed));
  INFO("seed " << seed << " (replay with PXD_CRASH_SEED=" << seed << ")");

  testing::TempDir dir;
  REQUIRE(!dir.path().empty());
  std::vector<ModelVolume> volumes;
  {
    PoolOptions opts;
    opts.devices.push_back({dir / "pool0.img", kPoolBytes});
    opts.chunk_size = kChunk;
    auto created = Pool::create(dir / "meta", opts);
    REQUIRE_MESSAGE(created.has_value(), created.error().to_string());
    for (int i = 0; i < kVolumes; ++i) {
      VolumeSpec spec{"vol" + std::to_string(i), kVolumeBytes, 4096, {}, {}};
      auto info = created.value()->create_volume(spec);
      REQUIRE_MESSAGE(info.has_value(), info.error().to_string());
      volumes.push_back({spec.name, info.value().id, kVolumeBytes / kBlockBytes});
    }
  }
  CrashModel model(volumes);
  Totals totals;
  const auto started = Clock::now();

  for (int cycle = 0; cycle < cycles; ++cycle) {
    if (Clock::now() - started > time_limit) {
      std::fprintf(stderr, "engine_crash_test: time limit reached after %d cycles\n", cycle);
      break;
    }
    CAPTURE(cycle);
    std::mt19937_64 rng(mix64(seed ^ mix64(static_cast<uint64_t>(cycle))));
    auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
    const int io_threads = pick(100) < 35 ? 2 : 1;
    const uint64_t depth = 16 + pick(17);
    const bool snapshots = pick(100) < 75;
    // A fifth of the kills land while the child starts and opens the pool (about 60 ms:
    // recovery, zeroing chunks); the rest spread log-uniformly over 60 to 600 ms of I/O.
    const double delay_ms =
        pick(100) < 20 ? 1.0 + static_cast<double>(pick(70))
                       : 60.0 * std::exp(std::log(10.0) * static_cast<double>(pick(1000)) / 1000.0);
    const std::string journal = dir / ("journal-" + std::to_string(cycle));
    const std::string output = dir / "child-output.txt";
    {
      ChildProcess child({PXD_CRASH_CHILD_PATH, dir / "meta", journal, std::to_string(rng()),
                          std::to_string(cycle), std::to_string(io_threads), std::to_string(depth),
                          snapshots ? "1" : "0"},
                         output);
      const auto kill_at =
          Clock::now() + std::chrono::microseconds(static_cast<int64_t>(delay_ms * 1000.0));
      while (Clock::now() < kill_at && child.running())
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      const bool exited_early = !child.running();
      int status = child.kill_and_wait();
      if (exited_early || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        keep_on_failure(dir);
        FAIL("the child " << describe_status(status) << " before it was killed; its output:\n"
                          << tail_of(output));
      }
    }

    uint64_t torn_bytes = 0;
    std::vector<Record> records = read_journal(journal, &torn_bytes);
    std::vector<std::string> failures;
    CycleReport report;
    model.replay(static_cast<uint64_t>(cycle), records, report, failures);
    if (torn_bytes >= sizeof(Record))
      failures.push_back("journal: " + std::to_string(torn_bytes) + " bytes after a bad record");
    {
      auto pool = Pool::open(dir / "meta");
      if (pool.has_error()) {
        failures.push_back("Pool::open after the kill: " + pool.error().to_string());
      } else {
        check_space(*pool.value(), failures);
        if (failures.empty()) model.verify(*pool.value(), report, failures);
      }
    }
    if (!failures.empty()) {
      std::ostringstream all;
      for (const auto& f : failures) all << "\n  " << f;
      keep_on_failure(dir);
      FAIL("cycle " << cycle << " (kill after " << delay_ms << " ms, " << io_threads
                    << " ring threads, depth " << depth << ", " << report.mutations
                    << " mutations, " << report.in_flight << " in flight):" << all.str()
                    << "\nchild output:\n"
                    << tail_of(output));
    }
    std::filesystem::remove(journal);

    ++totals.cycles;
    totals.killed_before_ready += !report.ready;
    totals.killed_with_requests += report.in_flight > 0;
    totals.killed_with_flush += report.flushes_in_flight > 0;
    totals.killed_in_snapshot_op += report.snapshot_op_in_flight;
    totals.killed_in_copy_on_write += report.copy_on_write_in_flight > 0;
    totals.in_flight += report.in_flight;
    totals.mutations += report.mutations;
    totals.durable += report.durable;
    totals.flushes += report.flushes_done;
    totals.snapshot_ops += report.snapshot_ops;
    totals.blocks_checked += report.blocks_checked;
    totals.lost_completed += report.lost_completed;
    totals.in_flight_landed += report.in_flight_landed;
  }

  // A crash never leaks chunks for good: with everything deleted the pool is empty, and
  // stays empty across a reopen.
  {
    auto pool = open_pool(dir);
    std::vector<ObjectInfo> objects = pool->list();
    for (const auto& o : objects) {
      if (o.is_snapshot) CHECK_MESSAGE(pool->remove(o.name).is_ok(), "remove " << o.name);
    }
    for (const auto& o : objects) {
      if (!o.is_snapshot) CHECK_MESSAGE(pool->remove(o.name).is_ok(), "remove " << o.name);
    }
    testing::wait_for_reclaim(*pool);
    PoolUsage u = pool->usage();
    CHECK(u.used_bytes == 0);
    CHECK(u.reclaiming_bytes == 0);
    CHECK(u.free_bytes == u.capacity_bytes);
  }
  {
    auto pool = open_pool(dir);
    PoolUsage u = pool->usage();
    CHECK(u.used_bytes == 0);
    CHECK(u.free_bytes == u.capacity_bytes);
    CHECK(pool->list().empty());
  }

  // A kill of the process (not a power cut) loses nothing that completed, flushed or not:
  // a frontend that outlives pxd (ublk recovery, the NBD relay) flushes it through the next
  // pxd (doc/engine.md, "Fresh allocation").
  CHECK(totals.lost_completed == 0);

  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::fprintf(stderr,
               "engine_crash_test: %d cycles in %.1f s; kills: %d before the pool was open, %d "
               "with mutations in flight (%llu in all), %d with a flush in flight, %d in a "
               "snapshot create/delete, %d with a copy-on-write in flight; %llu mutations (%llu "
               "durable at the kill), %llu flushes, "
               "%llu snapshot operations; %llu blocks checked, %llu held data of a write in flight "
               "at the kill, %llu lost a completed but unflushed mutation\n",
               totals.cycles, seconds, totals.killed_before_ready, totals.killed_with_requests,
               static_cast<unsigned long long>(totals.in_flight), totals.killed_with_flush,
               totals.killed_in_snapshot_op, totals.killed_in_copy_on_write,
               static_cast<unsigned long long>(totals.mutations),
               static_cast<unsigned long long>(totals.durable),
               static_cast<unsigned long long>(totals.flushes),
               static_cast<unsigned long long>(totals.snapshot_ops),
               static_cast<unsigned long long>(totals.blocks_checked),
               static_cast<unsigned long long>(totals.in_flight_landed),
               static_cast<unsigned long long>(totals.lost_completed));
}

}  // namespace
}  // namespace pxd::crash
