#include "engine/pool.h"

#include <doctest/doctest.h>

#include "common/units.h"
#include "tests/support/pool_fixture.h"
#include "tests/support/sync_io.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using testing::all_bytes;
using testing::PoolFixture;
using testing::TempDir;

constexpr uint32_t kChunk = testing::kTestChunk;

TEST_CASE("a new volume reads zeros and returns what was written") {
  PoolFixture f;
  auto& pool = f.pool;
  auto& io = f.io;
  f.create("v");
  auto v = f.open("v");
  CHECK(all_bytes(io.read(*v, 0, 128 * 1024), 0));
  CHECK(io.write_fill(*v, 4096, 8192, 0xAB) == 0);
  auto data = io.read(*v, 0, 16384);
  CHECK(all_bytes({data.begin(), data.begin() + 4096}, 0));
  CHECK(all_bytes({data.begin() + 4096, data.begin() + 12288}, 0xAB));
  CHECK(all_bytes({data.begin() + 12288, data.end()}, 0));
  // Spanning two chunks.
  CHECK(io.write_fill(*v, kChunk - 4096, 8192, 0x11) == 0);
  CHECK(all_bytes(io.read(*v, kChunk - 4096, 8192), 0x11));
  CHECK(pool->usage().used_bytes == 2 * kChunk);
  CHECK(io.flush(*v) == 0);
}

TEST_CASE("an overwrite of an owned chunk writes no metadata") {
  PoolFixture f;
  auto& pool = f.pool;
  auto& io = f.io;
  f.create("v");
  auto v = f.open("v");
  REQUIRE(io.write_fill(*v, 0, 4096, 1) == 0);
  // The first write's extent, in the store and durable: what follows needs nothing more.
  REQUIRE(io.flush(*v) == 0);
  uint64_t commits = pool->usage().metadata_commits;
  for (int i = 0; i < 10; ++i) REQUIRE(io.write_fill(*v, 4096 * i, 4096, 2) == 0);
  CHECK(io.write_fill(*v, 0, 4096, 3, kIoFua) == 0);
  CHECK(pool->usage().metadata_commits == commits);
  CHECK(all_bytes(io.read(*v, 0, 4096), 3));
}

TEST_CASE("discard and write-zeroes read as zeros and give whole chunks back") {
  PoolFixture f;
  auto& pool = f.pool;
  auto& io = f.io;
  f.create("v");
  auto v = f.open("v");
  REQUIRE(io.write_fill(*v, 0, 4 * kChunk, 0x5A) == 0);
  CHECK(pool->usage().used_bytes == 4 * kChunk);
  CHECK(io.discard(*v, 0, kChunk) == 0);                // whole chunk
  CHECK(io.write_zeroes(*v, kChunk, 2 * kChunk) == 0);  // two whole chunks
  CHECK(io.discard(*v, 3 * kChunk + 4096, 8192) == 0);  // inside a chunk
  CHECK(pool->usage().used_bytes == kChunk);
  auto data = io.read(*v, 0, 4 * kChunk);
  CHECK(all_bytes({data.begin(), data.begin() + 3 * kChunk}, 0));
  CHECK(all_bytes({data.begin() + 3 * kChunk, data.begin() + 3 * kChunk + 4096}, 0x5A));
  CHECK(all_bytes({data.begin() + 3 * kChunk + 4096, data.begin() + 3 * kChunk + 12288}, 0));
  CHECK(all_bytes({data.begin() + 3 * kChunk + 12288, data.end()}, 0x5A));
  // Freed chunks become allocatable once zeroed, right after the requests that freed them.
  testing::wait_for_reclaim(*pool);
  CHECK(pool->usage().reclaiming_bytes == 0);
  CHECK(pool->usage().free_bytes + pool->usage().used_bytes == pool->usage().capacity_bytes);
}

TEST_CASE("bad I/O is refused with EINVAL and changes nothing") {
  PoolFixture f;
  auto& pool = f.pool;
  auto& io = f.io;
  f.create("v", 1 * kMiB);
  auto v = f.open("v");
  testing::AlignedBuf buf(8192);
  CHECK(io.run(*v, IoOp::kWrite, 0, 0, buf.data) == -EINVAL);                  // zero length
  CHECK(io.run(*v, IoOp::kWrite, 512, 4096, buf.data) == -EINVAL);             // misaligned
  CHECK(io.run(*v, IoOp::kWrite, 0, 1000, buf.data) == -EINVAL);               // odd length
  CHECK(io.run(*v, IoOp::kWrite, 1 * kMiB, 4096, buf.data) == -EINVAL);        // past the end
  CHECK(io.run(*v, IoOp::kRead, 1 * kMiB - 4096, 8192, buf.data) == -EINVAL);  // crosses it
  CHECK(io.run(*v, IoOp::kRead, 0, 4096, buf.data + 1) == -EINVAL);            // buffer
  CHECK(io.run(*v, IoOp::kDiscard, UINT64_MAX - 4095, 4096, nullptr) == -EINVAL);
  CHECK(pool->usage().used_bytes == 0);
}

TEST_CASE("512-byte blocks") {
  PoolFixture f;
  auto& io = f.io;
  f.create("small", 1 * kMiB, 512);
  auto v = f.open("small");
  CHECK(v->block_size() == 512);
  CHECK(io.write_fill(*v, 512, 512, 7) == 0);
  auto d = io.read(*v, 0, 1536);
  CHECK(all_bytes({d.begin(), d.begin() + 512}, 0));
  CHECK(all_bytes({d.begin() + 512, d.begin() + 1024}, 7));
}

TEST_CASE("names, sizes and block sizes are checked") {
  PoolFixture f;
  auto& pool = f.pool;
  auto try_create = [&](const std::string& name, uint64_t size, uint32_t bs = 4096) {
    VolumeSpec spec{name, size, bs, {}, {}};
    auto r = pool->create_volume(spec);
    return r.has_error() ? r.error() : Status::ok();
  };
  CHECK(try_create("", kMiB).code() == StatusCode::kInvalidArgument);
  CHECK(try_create(std::string(256, 'x'), kMiB).code() == StatusCode::kInvalidArgument);
  CHECK(try_create(std::string(255, 'x'), kMiB).is_ok());
  CHECK(try_create("a/b", kMiB).code() == StatusCode::kInvalidArgument);
  CHECK(try_create("..", kMiB).code() == StatusCode::kInvalidArgument);
  CHECK(try_create("tab\there", kMiB).code() == StatusCode::kInvalidArgument);
  CHECK(try_create("zero", 0).code() == StatusCode::kInvalidArgument);
  CHECK(try_create("odd", kMiB + 512).code() == StatusCode::kInvalidArgument);
  CHECK(try_create("huge", kMaxVolumeBytes + 4096).code() == StatusCode::kInvalidArgument);
  CHECK(try_create("bs", kMiB, 1024).code() == StatusCode::kInvalidArgument);
  CHECK(try_create("ok", kMiB).is_ok());
  CHECK(try_create("ok", kMiB).code() == StatusCode::kAlreadyExists);
  CHECK(pool->list().size() == 2);
  CHECK(pool->inspect("missing").error().code() == StatusCode::kNotFound);
}

TEST_CASE("volumes grow online and refuse to shrink") {
  PoolFixture f;
  auto& pool = f.pool;
  auto& io = f.io;
  f.create("v", 1 * kMiB);
  auto v = f.open("v");
  CHECK(io.write_fill(*v, 1 * kMiB, 4096, 1) == -EINVAL);
  auto grown = pool->resize("v", 2 * kMiB);
  REQUIRE(grown.has_value());
  CHECK(v->size_bytes() == 2 * kMiB);
  CHECK(io.write_fill(*v, 1 * kMiB, 4096, 1) == 0);
  CHECK(all_bytes(io.read(*v, 1 * kMiB, 4096), 1));
  auto shrunk = pool->resize("v", 1 * kMiB);
  REQUIRE(shrunk.has_error());
  CHECK(shrunk.error().message().find("only grow") != std::string::npos);
  CHECK(pool->inspect("v").value().size_bytes == 2 * kMiB);
}

TEST_CASE("data, volumes and snapshots survive close and reopen") {
  PoolFixture f;
  {
    f.create("v");
    auto v = f.open("v");
    REQUIRE(f.io.write_fill(*v, 0, kChunk, 0x42) == 0);
    f.snapshot("v", "s1");
    REQUIRE(f.io.write_fill(*v, 0, 4096, 0x43) == 0);
    REQUIRE(f.io.flush(*v) == 0);
  }
  f.pool.reset();
  auto reopened = Pool::open(f.dir / "meta");
  REQUIRE_MESSAGE(reopened.has_value(), reopened.error().to_string());
  f.pool = std::move(reopened).value();
  auto v = f.open("v");
  auto s = f.open("s1");
  CHECK(all_bytes(f.io.read(*v, 0, 4096), 0x43));
  CHECK(all_bytes(f.io.read(*v, 4096, kChunk - 4096), 0x42));
  CHECK(all_bytes(f.io.read(*s, 0, kChunk), 0x42));
  CHECK(f.used() == 2 * kChunk);
}

TEST_CASE("opening a missing pool or a device of another pool fails clearly") {
  TempDir empty;
  auto r = Pool::open(empty / "nothing");
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kNotFound);
  PoolFixture mine, other;
  mine.pool.reset();
  other.pool.reset();
  const TempDir& dir = mine.dir;
  // Swap in another pool's device file.
  std::filesystem::copy_file(other.dir / "pool0.img", dir / "pool0.img",
                             std::filesystem::copy_options::overwrite_existing);
  auto mixed = Pool::open(dir / "meta");
  REQUIRE(mixed.has_error());
  CHECK(mixed.error().code() == StatusCode::kCorruption);
  CHECK(mixed.error().message().find("belongs to pool") != std::string::npos);
  // Creating over an existing pool is refused.
  PoolOptions opts;
  opts.devices.push_back({dir / "pool1.img", 8 * kMiB});
  CHECK(Pool::create(dir / "meta", opts).error().code() == StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace pxd
