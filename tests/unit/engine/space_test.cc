#include <doctest/doctest.h>

#include "engine/pool_device.h"
#include "tests/support/pool_fixture.h"

namespace pxd {
namespace {

using testing::all_bytes;
using testing::kTestChunk;
using testing::PoolFixture;

TEST_CASE("a full pool fails only the writes that need a new chunk") {
  PoolFixture f(kDeviceHeaderBytes + 8 * kTestChunk);
  CHECK(f.pool->usage().capacity_bytes == 8 * kTestChunk);
  f.create("v", 16 * kTestChunk);
  auto v = f.open("v");
  REQUIRE(f.io.write_fill(*v, 0, 8 * kTestChunk, 1) == 0);
  CHECK(f.pool->usage().free_bytes == 0);
  CHECK(f.io.write_fill(*v, 8 * kTestChunk, 4096, 2) == -ENOSPC);
  // A write that needs one new chunk among owned ones changes nothing.
  CHECK(f.io.write_fill(*v, 7 * kTestChunk, 2 * kTestChunk, 3) == -ENOSPC);
  CHECK(all_bytes(f.io.read(*v, 7 * kTestChunk, kTestChunk), 1));
  // Reads and overwrites keep working.
  CHECK(all_bytes(f.io.read(*v, 0, 8 * kTestChunk), 1));
  CHECK(f.io.write_fill(*v, 0, 4096, 4) == 0);
  // A snapshot pins every chunk: now overwrites need copies, and fail.
  f.snapshot("v", "s");
  CHECK(f.io.write_fill(*v, 0, 4096, 5) == -ENOSPC);
  // Discard works, even full; the freed space is usable again.
  f.remove("s");
  CHECK(f.io.discard(*v, 0, 2 * kTestChunk) == 0);
  CHECK(f.used() == 6 * kTestChunk);
  testing::wait_for_reclaim(*f.pool);
  CHECK(f.io.write_fill(*v, 8 * kTestChunk, 2 * kTestChunk, 6) == 0);
  CHECK(all_bytes(f.io.read(*v, 8 * kTestChunk, 2 * kTestChunk), 6));
  CHECK(f.io.write_fill(*v, 10 * kTestChunk, 4096, 7) == -ENOSPC);
}

TEST_CASE("freed chunks read as zeros when another volume gets them") {
  PoolFixture f(kDeviceHeaderBytes + 4 * kTestChunk);
  f.create("a", 4 * kTestChunk);
  f.create("b", 4 * kTestChunk);
  {
    auto a = f.open("a");
    REQUIRE(f.io.write_fill(*a, 0, 4 * kTestChunk, 0xCC) == 0);
  }
  f.remove("a");
  auto b = f.open("b");
  // One block per chunk: the rest of each chunk must read zero, not a's data.
  for (uint32_t i = 0; i < 4; ++i) REQUIRE(f.io.write_fill(*b, i * kTestChunk, 4096, 0x11) == 0);
  for (uint32_t i = 0; i < 4; ++i) {
    CHECK(all_bytes(f.io.read(*b, i * kTestChunk + 4096, kTestChunk - 4096), 0));
  }
}

}  // namespace
}  // namespace pxd
