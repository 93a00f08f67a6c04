#include "engine/chunk_allocator.h"

#include <doctest/doctest.h>

#include <set>

namespace pxd {
namespace {

TEST_CASE("chunks are numbered pool-wide across devices") {
  ChunkAllocator a({10, 5});
  CHECK(a.capacity_chunks() == 15);
  CHECK(a.locate(0) == std::pair<uint32_t, uint64_t>{0, 0});
  CHECK(a.locate(9) == std::pair<uint32_t, uint64_t>{0, 9});
  CHECK(a.locate(10) == std::pair<uint32_t, uint64_t>{1, 0});
  CHECK(a.locate(14) == std::pair<uint32_t, uint64_t>{1, 4});
}

TEST_CASE("runs of consecutive chunks are cut at devices and at the piece size") {
  ChunkAllocator a({10, 20});
  struct Run {
    uint32_t dev;
    uint64_t local, count;
    bool operator==(const Run&) const = default;
  };
  std::vector<Run> runs;
  auto note = [&](uint32_t dev, uint64_t local, uint64_t count) {
    runs.push_back({dev, local, count});
    return Status::ok();
  };
  // Unsorted; 7..12 crosses from device 0 into device 1; 14..25 is one run of 12.
  std::vector<uint64_t> chunks{12, 3, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                               23, 24, 25};
  REQUIRE(a.for_each_run(chunks, 5, note).is_ok());
  CHECK(runs == std::vector<Run>{{0, 3, 1}, {0, 7, 3}, {1, 0, 3}, {1, 4, 5}, {1, 9, 5},
                                 {1, 14, 2}});
  runs.clear();
  REQUIRE(a.for_each_run(chunks, 1000, note).is_ok());
  CHECK(runs == std::vector<Run>{{0, 3, 1}, {0, 7, 3}, {1, 0, 3}, {1, 4, 12}});
  // A piece size of 0 is taken as 1; the first error stops the walk.
  int calls = 0;
  Status failed = a.for_each_run(chunks, 0, [&](uint32_t, uint64_t, uint64_t count) {
    CHECK(count == 1);
    return ++calls == 3 ? Status(StatusCode::kIoError, "stop") : Status::ok();
  });
  CHECK(!failed.is_ok());
  CHECK(calls == 3);
}

TEST_CASE("allocation comes only from the reserve") {
  ChunkAllocator a({8});
  a.finish_load({});
  CHECK(a.usage().free == 8);
  uint64_t c = kNoChunk;
  bool woke = false;
  CHECK(a.allocate(&c, 7, [&] { woke = true; }) == ChunkAllocator::AllocStatus::kWait);
  REQUIRE(a.wants_refill());
  auto taken = a.take_for_reserve();
  CHECK(taken.size() == 8);  // the batch is larger than the pool
  a.add_to_reserve(taken);
  a.finish_refill();
  CHECK(woke);
  std::set<uint64_t> got;
  for (int i = 0; i < 8; ++i) {
    REQUIRE(a.allocate(&c, 7, [] {}) == ChunkAllocator::AllocStatus::kOk);
    got.insert(c);
  }
  CHECK(got.size() == 8);
  CHECK(*got.begin() == 0);
  CHECK(a.allocate(&c, 7, [] {}) == ChunkAllocator::AllocStatus::kNoSpace);
  auto u = a.usage();
  CHECK(u.referenced == 8);
  CHECK(u.free == 0);
}

// A refill scans the free map from its cursor: it must take every free chunk it may, and
// hand them out lowest first, refill after refill (an earlier scan skipped every other
// word of the map, so a refill took about half of what it should and scattered the pool's
// first writes; doc/engine.md, session 9).
TEST_CASE("refills take free chunks in order, from where the last one stopped") {
  // A target larger than the pool: one refill takes all of it.
  ChunkAllocator whole({1000}, 4096, 4096);
  whole.finish_load({});
  REQUIRE(whole.wants_refill());
  CHECK(whole.take_for_reserve().size() == 1000);

  // A smaller target: each refill goes on after the last, lowest first.
  ChunkAllocator a({1000}, 256, 256);
  a.finish_load({});
  uint64_t c = kNoChunk;
  uint64_t expect = 0;
  for (int refill = 0; refill < 8 && expect < 1000; ++refill) {
    INFO("refill " << refill);
    REQUIRE(a.wants_refill());
    auto taken = a.take_for_reserve();
    CHECK(taken.size() == std::min<uint64_t>(256, 1000 - expect));
    a.add_to_reserve(taken);
    a.finish_refill();
    for (size_t i = 0; i < taken.size(); ++i) {
      REQUIRE(a.allocate(&c, 7, [] {}) == ChunkAllocator::AllocStatus::kOk);
      REQUIRE(c == expect);
      ++expect;
    }
  }
  CHECK(expect == 1000);
  CHECK(a.allocate(&c, 7, [] {}) == ChunkAllocator::AllocStatus::kNoSpace);
}

TEST_CASE("the reserve doubles while callers wait, up to its limit") {
  ChunkAllocator a({100000}, 200);
  a.finish_load({});
  uint64_t c = kNoChunk;
  // Each time the reserve is empty when someone allocates, the next refill is twice as big.
  size_t last = 0;
  for (int round = 0; round < 6; ++round) {
    while (a.allocate(&c, 7, [] {}) == ChunkAllocator::AllocStatus::kOk) {
    }
    REQUIRE(a.wants_refill());
    auto taken = a.take_for_reserve();
    CHECK(taken.size() >= last);
    CHECK(taken.size() <= 200);
    last = taken.size();
    a.add_to_reserve(taken);
    a.finish_refill();
  }
  CHECK(last == 200);
}

TEST_CASE("a refill that lands with the reserve nearly dry makes the reserve grow") {
  ChunkAllocator a({100000}, 1024);
  a.finish_load({});
  uint64_t c = kNoChunk;
  auto take = [&](int n) {
    for (int i = 0; i < n; ++i)
      REQUIRE(a.allocate(&c, 7, [] {}) == ChunkAllocator::AllocStatus::kOk);
  };
  auto refill = [&] {
    REQUIRE(a.wants_refill());
    auto chunks = a.take_for_reserve();
    a.add_to_reserve(chunks);
    a.finish_refill();
    return chunks.size();
  };
  CHECK(refill() == 64);   // landed on an empty reserve: the target grows to 128
  take(14);                // 50 left, below half
  CHECK(refill() == 78);   // landed on 50 of 128, above a quarter: no growth
  take(100);               // 28 left
  CHECK(refill() == 100);  // landed on 28, below a quarter: the target grows to 256
  take(70);
  CHECK(refill() == 256 - 58);
}

TEST_CASE("references, drops and reclaim keep the counts exact") {
  ChunkAllocator a({4});
  CHECK(a.load_reference(1, 10));
  CHECK(a.load_reference(1, 11));
  CHECK(a.load_reference(2, 10));
  CHECK_FALSE(a.load_reference(4, 10));  // beyond the pool
  a.finish_load({3});                    // 3 is dirty and unreferenced: reclaiming
  auto u = a.usage();
  CHECK(u.referenced == 2);
  CHECK(u.free == 1);
  CHECK(u.reclaiming == 1);
  CHECK(a.drop_reference(1, 10).left == 1);
  CHECK(a.drop_reference(1, 11).left == 0);
  CHECK(a.usage().reclaiming == 2);
  a.finish_reclaim({1, 3});
  u = a.usage();
  CHECK(u.referenced == 1);
  CHECK(u.free == 3);
  CHECK(u.reclaiming == 0);
  CHECK(u.referenced + u.free + u.reclaiming == u.capacity);
}

TEST_CASE("the last reference left names the tree that holds it") {
  ChunkAllocator a({4});
  CHECK(a.load_reference(0, 3));
  CHECK(a.load_reference(0, 3));  // one tree may hold two (a restore's live entry and history)
  CHECK(a.load_reference(0, 9));
  a.finish_load({});
  CHECK(a.add_reference(0, 12) == 4);
  CHECK(a.drop_reference(0, 3).left == 3);
  CHECK(a.drop_reference(0, 12).left == 2);
  ChunkAllocator::Dropped d = a.drop_reference(0, 9);
  CHECK(d.left == 1);
  CHECK(d.last_referrer == 3);
  CHECK(a.add_reference(0, 5) == 2);
  d = a.drop_reference(0, 3);
  CHECK(d.left == 1);
  CHECK(d.last_referrer == 5);
  CHECK(a.drop_reference(0, 5).left == 0);
}

TEST_CASE("an unused allocation goes back to the reserve") {
  ChunkAllocator a({2});
  a.finish_load({});
  REQUIRE(a.wants_refill());
  a.add_to_reserve(a.take_for_reserve());
  a.finish_refill();
  uint64_t c;
  REQUIRE(a.allocate(&c, 7, [] {}) == ChunkAllocator::AllocStatus::kOk);
  CHECK(a.references(c) == 1);
  a.unallocate(c);
  CHECK(a.references(c) == 0);
  CHECK(a.usage().free == 2);
}

}  // namespace
}  // namespace pxd
