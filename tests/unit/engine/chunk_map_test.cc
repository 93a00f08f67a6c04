// ChunkMap: the per-chunk map behind every volume's and opened snapshot's extents.
#include "engine/chunk_map.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <map>
#include <random>

namespace pxd {
namespace {

struct Value {
  uint64_t chunk;
  uint32_t birth;
  uint32_t flags;
};
static_assert(sizeof(Value) == 16);

// Every entry of `map` equals `model`'s, found both ways (find and for_each).
void check_same(ChunkMap<Value>& map, const std::map<uint64_t, Value>& model) {
  REQUIRE(map.size() == model.size());
  for (const auto& [ci, v] : model) {
    const Value* got = map.find(ci);
    REQUIRE(got);
    CHECK(got->chunk == v.chunk);
    CHECK(got->birth == v.birth);
  }
  size_t seen = 0;
  map.for_each([&](uint64_t ci, Value& v) {
    ++seen;
    auto it = model.find(ci);
    REQUIRE(it != model.end());
    CHECK(v.chunk == it->second.chunk);
  });
  CHECK(seen == model.size());
}

TEST_CASE("chunk map: random adds, erases and erase_if agree with std::map") {
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  ChunkMap<Value> map;
  std::map<uint64_t, Value> model;
  // Mostly within a small range (dense groups, many collisions of group numbers in the
  // table), some anywhere below 2^40 (sparse groups).
  auto pick = [&] { return rng() % 4 ? rng() % 5000 : rng() % (uint64_t{1} << 40); };
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 2000; ++i) {
      uint64_t ci = pick();
      if (rng() % 3) {
        Value v{rng(), static_cast<uint32_t>(rng()), 0};
        auto [slot, added] = map.emplace(ci, v);
        auto [it, model_added] = model.emplace(ci, v);
        REQUIRE(added == model_added);
        CHECK(slot->chunk == it->second.chunk);
      } else {
        CHECK(map.erase(ci) == (model.erase(ci) == 1));
      }
      const uint64_t probe = pick();
      CHECK((map.find(probe) != nullptr) == model.count(probe));
    }
    check_same(map, model);
    // erase_if, changing the entries it keeps (as Pool::restore does through set_unique).
    const uint64_t mod = 2 + rng() % 5;
    size_t erased = map.erase_if([&](uint64_t ci, Value& v) {
      if (ci % mod == 0) return true;
      v.birth += 1;
      return false;
    });
    size_t model_erased = 0;
    for (auto it = model.begin(); it != model.end();) {
      if (it->first % mod == 0) {
        it = model.erase(it);
        ++model_erased;
      } else {
        it->second.birth += 1;
        ++it;
      }
    }
    CHECK(erased == model_erased);
    check_same(map, model);
  }
  ChunkMap<Value> moved = std::move(map);
  CHECK(map.empty());
  check_same(moved, model);
  moved.clear();
  CHECK(moved.empty());
  CHECK(moved.find(model.begin()->first) == nullptr);
}

TEST_CASE("chunk map: erasing every entry of every group leaves an empty, usable map") {
  ChunkMap<Value> map;
  for (uint64_t ci = 0; ci < 10000; ci += 3) map.emplace(ci, Value{ci, 1, 0});
  for (uint64_t ci = 0; ci < 10000; ci += 3) REQUIRE(map.erase(ci));
  CHECK(map.empty());
  CHECK(map.memory_bytes() > 0);  // the table stays; groups are gone
  map.emplace(7, Value{7, 1, 0});
  CHECK(map.find(7)->chunk == 7);
  CHECK(map.erase_if([](uint64_t, Value&) { return true; }) == 1);
  CHECK(map.empty());
  CHECK(map.memory_bytes() == 0);
}

// The memory budget (doc/engine.md): a densely written volume costs its 16-byte entries
// and little more; a sparse one no more than a node-based hash map did (64 bytes).
TEST_CASE("chunk map: bytes per entry, dense and sparse") {
  std::mt19937_64 rng(1);
  ChunkMap<Value> dense;
  const uint64_t chunks = 65536;
  for (uint64_t i = 0; i < 4 * chunks; ++i) dense.emplace(rng() % chunks, Value{i, 1, 0});
  const double dense_bytes = static_cast<double>(dense.memory_bytes()) / dense.size();
  MESSAGE("dense: " << dense.size() << " entries, " << dense_bytes << " bytes each");
  CHECK(dense.size() > chunks * 95 / 100);
  CHECK(dense_bytes < 17.5);

  ChunkMap<Value> sparse;
  for (uint64_t i = 0; i < 20000; ++i) sparse.emplace(rng() % (uint64_t{1} << 32), Value{i, 1, 0});
  const double sparse_bytes = static_cast<double>(sparse.memory_bytes()) / sparse.size();
  MESSAGE("sparse: " << sparse.size() << " entries, " << sparse_bytes << " bytes each");
  CHECK(sparse_bytes < 64);
}

}  // namespace
}  // namespace pxd
