// A randomized test of the engine against an in-memory model (in the spirit of fsx and
// RocksDB's db_stress): volumes, snapshots, clones, restores, deletes, growth, reopening
// the pool, bad input, many requests in flight and two writer threads, each checked byte
// for byte and against the pool's space accounting.
//
//   PXD_STRESS_SEED=123 ./engine_model_test    replays run 123 (the seed is printed)
//   PXD_STRESS_OPS=30000 ./engine_model_test   a longer run (default 3000 operations)
//   PXD_STRESS_VERBOSE=1                       prints every operation to stderr
//   PXD_STRESS_CHECK_EVERY=1                   checks space after every operation (default 8)
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>

#include "tests/stress/stress_run.h"

namespace pxd::stress {
namespace {

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 0);
}

TEST_CASE("the engine matches a simple model under random operations") {
  uint64_t seed = env_u64("PXD_STRESS_SEED", 0);
  if (seed == 0) {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32 | rd()) | 1;
  }
  const uint64_t ops = env_u64("PXD_STRESS_OPS", 3000);
  MESSAGE("PXD_STRESS_SEED=" << seed << " PXD_STRESS_OPS=" << ops);
  INFO("replay with PXD_STRESS_SEED=" << seed << " PXD_STRESS_OPS=" << ops);
  auto start = std::chrono::steady_clock::now();
  StressRun run(seed);
  run.run(ops);
  MESSAGE(run.summary());
  run.finish();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  MESSAGE(ops << " operations in " << ms << " ms");
}

}  // namespace
}  // namespace pxd::stress
