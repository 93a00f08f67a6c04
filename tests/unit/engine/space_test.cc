#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <string>

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

uint64_t allocated_bytes(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

TEST_CASE("reserve chunks are preallocated in a pool file and given back at a clean close") {
  PoolFixture f;
  const std::string file = f.dir / "pool0.img";
  struct statfs fs;
  REQUIRE(::statfs(f.dir.path().c_str(), &fs) == 0);
  if (static_cast<uint64_t>(fs.f_bavail) * fs.f_bsize < 2 * kPreallocateHeadroom) {
    MESSAGE("skipped: the test filesystem has too little free space to preallocate");
    return;
  }
  {
    const std::string probe = f.dir / "probe";
    int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    bool supported = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096) == 0 || errno != EOPNOTSUPP;
    ::close(fd);
    ::unlink(probe.c_str());
    if (!supported) {
      MESSAGE("skipped: the test filesystem has no fallocate");
      return;
    }
  }
  // Creating a volume is queued after the first refill: the reserve (64 chunks) is in.
  f.create("v", 16 * kTestChunk);
  CHECK(allocated_bytes(file) >= 64 * kTestChunk);
  {
    auto v = f.open("v");
    REQUIRE(f.io.write_fill(*v, 2 * kTestChunk, 4096, 7) == 0);
  }
  f.pool.reset();
  // Left: the header and the written chunk's space, not the unused reserve's.
  CHECK(allocated_bytes(file) <= 2 * kTestChunk + kDeviceHeaderBytes);
  auto reopened = Pool::open(f.dir / "meta");
  REQUIRE(reopened.has_value());
  auto v = reopened.value()->open_volume("v");
  REQUIRE(v.has_value());
  CHECK(all_bytes(f.io.read(*v.value(), 2 * kTestChunk, 4096), 7));
  CHECK(all_bytes(f.io.read(*v.value(), 2 * kTestChunk + 4096, kTestChunk - 4096), 0));
}

TEST_CASE("an overcommitted pool file is not preallocated") {
  // 8 TiB of 64 MiB chunks in a sparse file: more than the test filesystem can hold, so a
  // chunk written with 4 KiB must keep taking about 4 KiB of it, not 64 MiB.
  PoolFixture f(8 * kTiB, 64 * kMiB);
  const std::string file = f.dir / "pool0.img";
  struct statfs fs;
  REQUIRE(::statfs(f.dir.path().c_str(), &fs) == 0);
  if (static_cast<uint64_t>(fs.f_bavail) * fs.f_bsize >= 8 * kTiB) {
    MESSAGE("skipped: the test filesystem could hold an 8 TiB file");
    return;
  }
  f.create("v", 1 * kTiB);
  auto v = f.open("v");
  REQUIRE(f.io.write_fill(*v, 5 * 64 * kMiB, 4096, 3) == 0);
  CHECK(allocated_bytes(file) < 64 * kMiB);
}

}  // namespace
}  // namespace pxd
