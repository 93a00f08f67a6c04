// tests/support/pool_fixture.h: a small pool in a private directory, and helpers.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "common/units.h"
#include "engine/pool.h"
#include "tests/support/sync_io.h"
#include "tests/support/temp_dir.h"

namespace pxd::testing {

inline constexpr uint32_t kTestChunk = 64 * 1024;

// Chunks freed by I/O are zeroed in the background once the requests that freed them
// finish; waits (bounded) until that is done.
inline void wait_for_reclaim(Pool& pool) {
  for (int i = 0; i < 2000 && pool.usage().reclaiming_bytes != 0; ++i) ::usleep(1000);
}

struct PoolFixture {
  explicit PoolFixture(uint64_t pool_bytes = 64 * kMiB, uint32_t chunk = kTestChunk) {
    PoolOptions opts;
    opts.devices.push_back({dir / "pool0.img", pool_bytes});
    opts.chunk_size = chunk;
    auto r = Pool::create(dir / "meta", opts);
    REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
    pool = std::move(r).value();
  }
  void create(const std::string& name, uint64_t size = 16 * kMiB, uint32_t block_size = 4096) {
    auto r = pool->create_volume(VolumeSpec{name, size, block_size, {}, {}});
    REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  }
  std::shared_ptr<Volume> open(const std::string& name) {
    auto v = pool->open_volume(name);
    REQUIRE_MESSAGE(v.has_value(), v.error().to_string());
    return v.value();
  }
  void snapshot(const std::string& vol, const std::string& name) {
    auto r = pool->create_snapshot(vol, name);
    REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  }
  void clone(const std::string& src, const std::string& name) {
    auto r = pool->clone(src, name);
    REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  }
  void remove(const std::string& name) {
    Status s = pool->remove(name);
    REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  }
  ObjectInfo info(const std::string& name) {
    auto r = pool->inspect(name);
    REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
    return r.value();
  }
  uint64_t used() { return pool->usage().used_bytes; }

  TempDir dir;
  std::unique_ptr<Pool> pool;
  SyncIo io;
};

}  // namespace pxd::testing
