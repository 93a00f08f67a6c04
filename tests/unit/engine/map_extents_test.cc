// Volume::map_extents: the allocation map frontends report (NBD block status, export).
#include <doctest/doctest.h>

#include "engine/pool.h"
#include "tests/support/pool_fixture.h"
#include "tests/support/sync_io.h"

namespace pxd {
namespace {

using testing::PoolFixture;
constexpr uint64_t kChunk = testing::kTestChunk;

std::vector<VolumeExtent> map_of(const Volume& v, uint64_t offset, uint64_t length) {
  std::vector<VolumeExtent> out;
  v.map_extents(offset, length, out);
  return out;
}

bool same(const std::vector<VolumeExtent>& got, const std::vector<VolumeExtent>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i].offset != want[i].offset || got[i].length != want[i].length ||
        got[i].allocated != want[i].allocated)
      return false;
  return true;
}

TEST_CASE("the map shows written chunks as allocated and the rest as holes") {
  PoolFixture f;
  f.create("v", 8 * kChunk);
  auto v = f.open("v");
  CHECK(same(map_of(*v, 0, 8 * kChunk), {{0, 8 * kChunk, false}}));
  REQUIRE(f.io.write_fill(*v, 2 * kChunk + 4096, 4096, 1) == 0);
  REQUIRE(f.io.write_fill(*v, 3 * kChunk, 4096, 1) == 0);
  REQUIRE(f.io.write_fill(*v, 7 * kChunk, 4096, 1) == 0);
  CHECK(same(map_of(*v, 0, 8 * kChunk), {{0, 2 * kChunk, false},
                                         {2 * kChunk, 2 * kChunk, true},
                                         {4 * kChunk, 3 * kChunk, false},
                                         {7 * kChunk, kChunk, true}}));
  // Clipped to the query and to the volume's end.
  CHECK(same(map_of(*v, 2 * kChunk + 8192, kChunk), {{2 * kChunk + 8192, kChunk, true}}));
  CHECK(same(map_of(*v, 7 * kChunk + 4096, 100 * kChunk), {{7 * kChunk + 4096, kChunk - 4096, true}}));
  CHECK(map_of(*v, 8 * kChunk, 4096).empty());
  // A discarded chunk is a hole again.
  REQUIRE(f.io.discard(*v, 3 * kChunk, kChunk) == 0);
  CHECK(same(map_of(*v, 2 * kChunk, 2 * kChunk), {{2 * kChunk, kChunk, true},
                                                  {3 * kChunk, kChunk, false}}));
}

TEST_CASE("a snapshot maps what it saw; a huge sparse volume maps quickly") {
  PoolFixture f;
  f.create("v", 1ULL << 40);  // 1 TiB: walking every chunk index would take long
  auto v = f.open("v");
  REQUIRE(f.io.write_fill(*v, 5 * kChunk, 4096, 1) == 0);
  REQUIRE(f.pool->create_snapshot("v", "s").has_value());
  REQUIRE(f.io.write_fill(*v, (1ULL << 39), 4096, 2) == 0);
  auto s = f.pool->open_volume("s");
  REQUIRE(s.has_value());
  CHECK(same(map_of(*s.value(), 0, 1ULL << 40),
             {{0, 5 * kChunk, false}, {5 * kChunk, kChunk, true},
              {6 * kChunk, (1ULL << 40) - 6 * kChunk, false}}));
  auto live = map_of(*v, 0, 1ULL << 40);
  REQUIRE(live.size() == 5);
  CHECK(live[3].offset == (1ULL << 39));
  CHECK(live[3].allocated);
}

}  // namespace
}  // namespace pxd
