// tests/crash/control_crash_test.cc: crashes racing one control operation against I/O.
//
// Regression tests for two bugs engine_crash_test found (fixed in "Engine: order control
// batches before the I/O commits that depend on them"). Both came from one pattern: a
// control operation changed the tree in memory, where the I/O path sees it at once,
// before its metadata batch was queued, so an I/O commit could reach the store first, or
// I/O could act on a state a crash then undid.
//
// Each attempt forks a child (the test has no threads while its pool is closed), which
// opens the pool, races one write against one control operation and SIGKILLs itself
// once the write completed; the parent reopens the pool and checks. Against the broken
// engine the first case failed within two attempts and the second within about thirty.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>

#include "common/units.h"
#include "engine/pool.h"
#include "tests/support/pool_fixture.h"
#include "tests/support/sync_io.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using testing::SyncIo;
using testing::TempDir;

constexpr uint32_t kChunk = 64 * 1024;

void make_pool(const TempDir& dir) {
  PoolOptions opts;
  opts.devices.push_back({dir / "pool0.img", 32 * kMiB});
  opts.chunk_size = kChunk;
  auto pool = Pool::create(dir / "meta", opts);
  REQUIRE_MESSAGE(pool.has_value(), pool.error().to_string());
  REQUIRE(pool.value()->create_volume({"v", 1 * kMiB, 4096, {}, {}}).has_value());
}

// In a forked child: runs `control` on a thread; once it has started, waits a random
// 0..max_spin_us, writes one block of 0xFF at `offset` of "v", and SIGKILLs itself as
// soon as that write completed. Exits normally if `control` finished first.
[[noreturn]] void race_and_die(const TempDir& dir, uint64_t seed, uint64_t offset,
                               uint64_t max_spin_us, const std::function<void(Pool&)>& control,
                               int settle_ms) {
  std::mt19937_64 rng(seed);
  auto pool = Pool::open(dir / "meta").value();
  auto v = pool->open_volume("v").value();
  auto ring = IoRing::create(256).value();
  testing::AlignedBuf data(4096);
  std::memset(data.data, 0xFF, 4096);
  std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
  std::atomic<bool> started{false};
  std::thread thread([&] {
    started = true;
    control(*pool);
    std::_Exit(0);
  });
  while (!started) {
  }
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % max_spin_us);
  while (std::chrono::steady_clock::now() < until) {
  }
  IoRequest w;
  w.op = IoOp::kWrite;
  w.offset = offset;
  w.length = 4096;
  w.buffer = data.data;
  bool done = false;
  w.user = &done;
  w.done = [](IoRequest* req, int) { *static_cast<bool*>(req->user) = true; };
  v->submit(*ring, &w);
  ring->run_until([&] { return done; });
  ::raise(SIGKILL);
  std::_Exit(1);
}

// Forks race_and_die(...); true if the child was killed (rather than the control
// operation finishing first).
bool run_attempt(const std::function<void()>& child) {
  pid_t pid = ::fork();
  if (pid == 0) child();
  REQUIRE(pid > 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFSIGNALED(status);
}

TEST_CASE("a crash inside a snapshot delete never brings the snapshot back changed") {
  // The bug: Pool::remove(snapshot) erased the snapshot from tree->snapshots before its
  // deletion batch was written. A write in that window saw the chunk the snapshot shares
  // as exclusive (birth > newest_snapshot()) and overwrote it in place (or a
  // copy-on-write dropped the snapshot's extent). A crash before the batch reached the
  // WAL brought the snapshot back holding the new data (or zeros). Right after open the
  // metadata thread is busy refilling the allocation reserve, which keeps the batch
  // waiting long enough.
  TempDir dir;
  make_pool(dir);
  std::random_device rd;
  for (int attempt = 0; attempt < 20; ++attempt) {
    const uint8_t marker = static_cast<uint8_t>(1 + attempt % 200);
    {
      auto pool = Pool::open(dir / "meta").value();
      if (pool->inspect("s").has_value()) REQUIRE(pool->remove("s").is_ok());
      SyncIo io;
      auto v = pool->open_volume("v").value();
      REQUIRE(io.write_fill(*v, 0, 4096, marker) == 0);
      REQUIRE(io.flush(*v) == 0);
      v.reset();
      REQUIRE(pool->create_snapshot("v", "s").has_value());
    }
    const uint64_t seed = rd();
    bool killed = run_attempt([&] {
      race_and_die(
          dir, seed, 0, 400, [](Pool& pool) { (void)pool.remove("s"); }, 0);
    });
    if (!killed) continue;
    auto pool = Pool::open(dir / "meta").value();
    if (!pool->inspect("s").has_value()) continue;  // the delete had committed
    SyncIo io;
    auto block = io.read(*pool->open_volume("s").value(), 0, 4096);
    INFO("attempt " << attempt);
    REQUIRE_MESSAGE(testing::all_bytes(block, marker),
                    "snapshot s holds a write made while it was being deleted (byte "
                        << int{block[0]} << ", expected " << int{marker} << ")");
  }
  // The last attempt's child may have ended without being killed, and without closing
  // the pool: a clean open and close leaves no extent journal behind in /dev/shm.
  REQUIRE(Pool::open(dir / "meta").has_value());
}

TEST_CASE("a crash inside create_snapshot never leaves a pool that fails to open") {
  // The bug: Pool::create_snapshot moved tree->generation to g+1 under the tree lock,
  // then built and queued its batch. A write dispatched in between committed an extent
  // born at g+1, queued (and possibly written) before the batch recording generation
  // g+1. A crash between the two writes left an extent newer than its volume, and
  // Pool::open failed: "extent ... has generations out of order". clone() of a live
  // volume had the same window. Many labels widen it (copied before the lock, encoded
  // after it); without them it showed about once in 400 attempts.
  TempDir dir;
  make_pool(dir);
  std::random_device rd;
  Labels labels;
  for (int i = 0; i < 20000; ++i) labels["label-" + std::to_string(i)] = "value";
  for (int attempt = 0; attempt < 40; ++attempt) {
    {
      auto pool = Pool::open(dir / "meta").value();
      if (pool->inspect("s").has_value()) REQUIRE(pool->remove("s").is_ok());
      SyncIo io;
      REQUIRE(io.discard(*pool->open_volume("v").value(), 0, 1 * kMiB) == 0);
    }
    const uint64_t seed = rd();
    const uint64_t offset = (1 + seed % 15) * kChunk;  // unmapped: a fresh allocation
    run_attempt([&] {
      race_and_die(
          dir, seed, offset, 4000,
          [&](Pool& pool) { (void)pool.create_snapshot("v", "s", labels); },
          /*settle_ms=*/30);  // the reserve refill after open is done: the writer is idle
    });
    auto pool = Pool::open(dir / "meta");
    INFO("attempt " << attempt);
    REQUIRE_MESSAGE(pool.has_value(), "Pool::open after the crash: " << pool.error().to_string());
  }
}

}  // namespace
}  // namespace pxd
