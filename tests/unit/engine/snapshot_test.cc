#include <doctest/doctest.h>

#include "tests/support/pool_fixture.h"

namespace pxd {
namespace {

using testing::all_bytes;
using testing::kTestChunk;
using testing::PoolFixture;

TEST_CASE("a snapshot keeps the content of its moment") {
  PoolFixture f;
  f.create("v");
  auto v = f.open("v");
  REQUIRE(f.io.write_fill(*v, 0, 2 * kTestChunk, 0xA1) == 0);
  f.snapshot("v", "s1");
  REQUIRE(f.io.write_fill(*v, 4096, 4096, 0xB2) == 0);     // copy-on-write of chunk 0
  REQUIRE(f.io.discard(*v, kTestChunk, kTestChunk) == 0);  // chunk 1 leaves the volume only
  auto s = f.open("s1");
  CHECK(s->read_only());
  CHECK(all_bytes(f.io.read(*s, 0, 2 * kTestChunk), 0xA1));
  auto d = f.io.read(*v, 0, 2 * kTestChunk);
  CHECK(all_bytes({d.begin(), d.begin() + 4096}, 0xA1));
  CHECK(all_bytes({d.begin() + 4096, d.begin() + 8192}, 0xB2));
  CHECK(all_bytes({d.begin() + 8192, d.begin() + kTestChunk}, 0xA1));
  CHECK(all_bytes({d.begin() + kTestChunk, d.end()}, 0));
  CHECK(f.io.write_fill(*s, 0, 4096, 1) == -EROFS);
  CHECK(f.io.discard(*s, 0, 4096) == -EROFS);
  CHECK(f.io.flush(*s) == 0);
  CHECK(f.used() == 3 * kTestChunk);
}

TEST_CASE("deleting a snapshot frees only what nothing else references") {
  PoolFixture f;
  f.create("v");
  auto v = f.open("v");
  REQUIRE(f.io.write_fill(*v, 0, 4 * kTestChunk, 1) == 0);
  f.snapshot("v", "s1");
  REQUIRE(f.io.write_fill(*v, 0, kTestChunk, 2) == 0);  // s1 alone keeps chunk 0 v1
  f.snapshot("v", "s2");
  REQUIRE(f.io.write_fill(*v, kTestChunk, kTestChunk, 3) == 0);  // s1+s2 share chunk 1 v1
  CHECK(f.used() == 6 * kTestChunk);
  f.remove("s1");  // frees chunk 0's first version only
  CHECK(f.used() == 5 * kTestChunk);
  auto s2 = f.open("s2");
  auto d = f.io.read(*s2, 0, 2 * kTestChunk);
  CHECK(all_bytes({d.begin(), d.begin() + kTestChunk}, 2));
  CHECK(all_bytes({d.begin() + kTestChunk, d.end()}, 1));
  s2.reset();
  f.remove("s2");
  CHECK(f.used() == 4 * kTestChunk);
  v.reset();
  f.remove("v");
  CHECK(f.used() == 0);
  CHECK(f.pool->list().empty());
}

TEST_CASE("removal is refused while open or while snapshots remain") {
  PoolFixture f;
  f.create("v");
  f.snapshot("v", "s");
  {
    auto s = f.open("s");
    CHECK(f.pool->remove("s").code() == StatusCode::kBusy);
  }
  CHECK(f.pool->remove("v").code() == StatusCode::kFailedPrecondition);
  {
    auto v = f.open("v");
    CHECK(f.pool->restore("v", "s").code() == StatusCode::kBusy);
  }
  f.remove("s");
  f.remove("v");
}

TEST_CASE("restore makes the volume equal its snapshot") {
  PoolFixture f;
  f.create("v");
  {
    auto v = f.open("v");
    REQUIRE(f.io.write_fill(*v, 0, 2 * kTestChunk, 1) == 0);
    f.snapshot("v", "s");
    REQUIRE(f.io.write_fill(*v, 0, kTestChunk, 2) == 0);
    REQUIRE(f.io.discard(*v, kTestChunk, kTestChunk) == 0);
    REQUIRE(f.io.write_fill(*v, 2 * kTestChunk, kTestChunk, 3) == 0);
  }
  REQUIRE(f.pool->restore("v", "s").is_ok());
  auto v = f.open("v");
  CHECK(all_bytes(f.io.read(*v, 0, 2 * kTestChunk), 1));
  CHECK(all_bytes(f.io.read(*v, 2 * kTestChunk, kTestChunk), 0));
  CHECK(f.used() == 2 * kTestChunk);
  // Writing after a restore copies: the snapshot must not change.
  REQUIRE(f.io.write_fill(*v, 0, 4096, 9) == 0);
  auto s = f.open("s");
  CHECK(all_bytes(f.io.read(*s, 0, 2 * kTestChunk), 1));
  CHECK(f.pool->restore("v", "v").code() == StatusCode::kInvalidArgument);
}

TEST_CASE("clones of snapshots, of volumes, of clones; snapshots of clones") {
  PoolFixture f;
  f.create("base");
  auto base = f.open("base");
  REQUIRE(f.io.write_fill(*base, 0, kTestChunk, 1) == 0);
  f.snapshot("base", "snap");
  f.clone("snap", "c1");
  f.clone("base", "c2");  // implicit snapshot of a live volume
  REQUIRE(f.io.write_fill(*base, 0, 4096, 2) == 0);
  auto c1 = f.open("c1");
  auto c2 = f.open("c2");
  CHECK(all_bytes(f.io.read(*c1, 0, kTestChunk), 1));
  CHECK(all_bytes(f.io.read(*c2, 0, kTestChunk), 1));
  REQUIRE(f.io.write_fill(*c1, 0, 4096, 3) == 0);
  f.snapshot("c1", "c1snap");
  REQUIRE(f.io.write_fill(*c1, 0, 4096, 4) == 0);
  f.clone("c1snap", "c3");
  auto c3 = f.open("c3");
  auto d = f.io.read(*c3, 0, kTestChunk);
  CHECK(all_bytes({d.begin(), d.begin() + 4096}, 3));
  CHECK(all_bytes({d.begin() + 4096, d.end()}, 1));
  CHECK(f.info("c3").origin == "c1snap");
  CHECK(f.info("c1").origin == "snap");
  CHECK(f.info("c2").origin == "base");
  // The sources are untouched.
  auto snap = f.open("snap");
  CHECK(all_bytes(f.io.read(*snap, 0, kTestChunk), 1));
  CHECK(f.info("base").snapshots == std::vector<std::string>{"snap"});
  // Deleting the origin snapshot leaves clones intact.
  snap.reset();
  f.remove("snap");
  CHECK(all_bytes(f.io.read(*c2, 0, kTestChunk), 1));
  CHECK(f.info("c1").origin.empty());
  // Everything gone: nothing used.
  base.reset();
  c1.reset();
  c2.reset();
  c3.reset();
  for (const char* n : {"c3", "c1snap", "c1", "c2", "base"}) f.remove(n);
  CHECK(f.used() == 0);
}

TEST_CASE("thousands of snapshots, each still reading its own moment") {
  PoolFixture f(256 * kMiB);
  f.create("v", 4 * kMiB);
  auto v = f.open("v");
  constexpr int kSnaps = 2000;
  for (int i = 0; i < kSnaps; ++i) {
    // Block i % 64 of chunk 0 records the snapshot number.
    std::vector<uint8_t> data(4096, static_cast<uint8_t>(i & 0xff));
    REQUIRE(f.io.write(*v, (i % 16) * 4096, data) == 0);
    f.snapshot("v", "s" + std::to_string(i));
  }
  CHECK(f.info("v").snapshots.size() == kSnaps);
  for (int i : {0, 1, 999, 1998, 1999}) {
    auto s = f.open("s" + std::to_string(i));
    CHECK(all_bytes(f.io.read(*s, (i % 16) * 4096, 4096), static_cast<uint8_t>(i & 0xff)));
  }
}

TEST_CASE("exclusive and shared bytes") {
  PoolFixture f;
  f.create("v");
  auto v = f.open("v");
  REQUIRE(f.io.write_fill(*v, 0, 3 * kTestChunk, 1) == 0);
  CHECK(f.info("v").exclusive_bytes == 3 * kTestChunk);
  CHECK(f.info("v").shared_bytes == 0);
  auto created = f.pool->create_snapshot("v", "s");
  REQUIRE(created.has_value());
  // What create answers without walking the tree equals what inspect computes.
  CHECK(created.value().exclusive_bytes == f.info("s").exclusive_bytes);
  CHECK(created.value().shared_bytes == f.info("s").shared_bytes);
  CHECK(f.info("v").exclusive_bytes == 0);
  CHECK(f.info("v").shared_bytes == 3 * kTestChunk);
  REQUIRE(f.io.write_fill(*v, 0, 4096, 2) == 0);
  CHECK(f.info("v").exclusive_bytes == kTestChunk);
  CHECK(f.info("v").shared_bytes == 2 * kTestChunk);
  CHECK(f.info("s").exclusive_bytes == kTestChunk);
  CHECK(f.info("s").shared_bytes == 2 * kTestChunk);
  f.clone("s", "c");
  CHECK(f.info("s").exclusive_bytes == 0);
  CHECK(f.info("c").shared_bytes == 3 * kTestChunk);
  CHECK(f.used() == 4 * kTestChunk);
}

}  // namespace
}  // namespace pxd
