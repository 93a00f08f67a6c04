// Opening a pool whose metadata or devices are damaged fails, names the problem, and
// changes nothing.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "engine/pool_device.h"
#include "tests/support/pool_fixture.h"
#include "tests/support/sync_io.h"

namespace pxd {
namespace {

using testing::kTestChunk;
using testing::PoolFixture;

// Every record of the store, in order, as text: to check a failed open changed nothing.
std::string dump(const std::string& meta_dir) {
  auto store = metadb::MetaStore::open(meta_dir);
  REQUIRE_MESSAGE(store.has_value(), store.error().to_string());
  std::string out = "next " + std::to_string(store.value()->next_id()) + "\n";
  (void)store.value()->for_each_object([&](metadb::ObjectRecord&& r) {
    out += "object " + std::to_string(r.id) + " " + r.name + " gen " +
           std::to_string(r.generation) + "\n";
    return Status::ok();
  });
  (void)store.value()->for_each_extent(
      [&](const metadb::ExtentKey& k, const metadb::ExtentValue& v) {
        out += "extent " + std::to_string(k.tree) + "/" + std::to_string(k.chunk_index) + "/" +
               std::to_string(k.birth) + " -> " + std::to_string(v.pool_chunk) + " " +
               std::to_string(v.death) + "\n";
        return Status::ok();
      });
  (void)store.value()->for_each_dirty([&](uint64_t c) {
    out += "dirty " + std::to_string(c) + "\n";
    return Status::ok();
  });
  (void)store.value()->for_each_reserved_run([&](const metadb::ReservedRun& r) {
    out += "reserved run " + std::to_string(r.id) + ": " + std::to_string(r.first_chunk) + " + " +
           std::to_string(r.count) + "\n";
    return Status::ok();
  });
  return out;
}

void inject(const std::string& meta_dir, const std::function<void(metadb::MetaBatch&)>& fill) {
  auto store = metadb::MetaStore::open(meta_dir);
  REQUIRE(store.has_value());
  metadb::MetaBatch batch;
  fill(batch);
  REQUIRE(store.value()->write(batch, true).is_ok());
}

struct ClosedPool {
  ClosedPool() {
    f.create("v", 1 * kMiB);
    auto v = f.open("v");
    REQUIRE(f.io.write_fill(*v, 0, kTestChunk, 1) == 0);
    v.reset();
    f.snapshot("v", "s");
    f.pool.reset();
  }
  std::string meta() { return f.dir / "meta"; }
  PoolFixture f;
};

void expect_refused(const std::string& meta_dir, StatusCode code, const std::string& words) {
  std::string before = dump(meta_dir);
  auto r = Pool::open(meta_dir);
  REQUIRE(r.has_error());
  CHECK(r.error().code() == code);
  CHECK_MESSAGE(r.error().message().find(words) != std::string::npos, r.error().message());
  CHECK(dump(meta_dir) == before);
}

TEST_CASE("an extent beyond the pool is corruption") {
  ClosedPool p;
  inject(p.meta(), [](metadb::MetaBatch& b) {
    b.put_extent({1, 3, 1}, {1u << 30, metadb::kLiveGeneration});
  });
  expect_refused(p.meta(), StatusCode::kCorruption, "beyond the pool");
}

TEST_CASE("an extent of no volume is corruption") {
  ClosedPool p;
  inject(p.meta(), [](metadb::MetaBatch& b) {
    b.put_extent({77, 0, 1}, {0, metadb::kLiveGeneration});
  });
  expect_refused(p.meta(), StatusCode::kCorruption, "tree 77");
}

TEST_CASE("two live entries for one chunk, or generations out of order, are corruption") {
  ClosedPool p;
  inject(p.meta(), [](metadb::MetaBatch& b) {
    b.put_extent({1, 0, 2}, {5, metadb::kLiveGeneration});
  });
  expect_refused(p.meta(), StatusCode::kCorruption, "second live entry");
  ClosedPool q;
  inject(q.meta(), [](metadb::MetaBatch& b) {
    b.put_extent({1, 9, 50}, {5, metadb::kLiveGeneration});
  });
  expect_refused(q.meta(), StatusCode::kCorruption, "out of order");
}

TEST_CASE("a snapshot of a missing volume is corruption") {
  ClosedPool p;
  inject(p.meta(), [](metadb::MetaBatch& b) {
    metadb::ObjectRecord r;
    r.id = 3;
    r.kind = metadb::ObjectKind::kSnapshot;
    r.name = "orphan";
    r.size_bytes = kMiB;
    r.tree = 42;
    r.generation = 1;
    b.put_object(r);
    b.put_next_id(4);
  });
  expect_refused(p.meta(), StatusCode::kCorruption, "orphan");
}

TEST_CASE("a reserved run beyond the pool is corruption") {
  ClosedPool p;
  inject(p.meta(), [](metadb::MetaBatch& b) { b.put_reserved_run({9, 1000, 100}); });
  expect_refused(p.meta(), StatusCode::kCorruption, "reserved run 9 (chunks 1000 + 100)");
}

TEST_CASE("a clean close leaves no reserved run") {
  ClosedPool p;
  CHECK(dump(p.meta()).find("reserved run") == std::string::npos);
  CHECK(dump(p.meta()).find("dirty") == std::string::npos);
}

// Fills every chunk of the pool file that reads as zeros (all but the volume's) with 0xEE,
// as data a crash left in chunks no extent names; returns those chunks.
std::vector<uint64_t> plant_garbage(const std::string& file, uint64_t chunks) {
  std::vector<uint64_t> planted;
  int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::vector<uint8_t> buf(kTestChunk), garbage(kTestChunk, 0xEE);
  for (uint64_t c = 0; c < chunks; ++c) {
    off_t at = static_cast<off_t>(kDeviceHeaderBytes + c * kTestChunk);
    REQUIRE(::pread(fd, buf.data(), buf.size(), at) == static_cast<ssize_t>(buf.size()));
    if (!testing::all_bytes(buf, 0)) continue;  // the volume's chunk
    REQUIRE(::pwrite(fd, garbage.data(), garbage.size(), at) == static_cast<ssize_t>(kTestChunk));
    planted.push_back(c);
  }
  ::close(fd);
  return planted;
}

// What a crash between a first write's data and its extent's commit leaves: data in a
// chunk of a reserved run that no extent names. Open must zero it before the chunk can be
// handed out, keep referenced chunks as they are, and drop the run.
TEST_CASE("a reserved run left by a crash is zeroed where unreferenced, then dropped") {
  ClosedPool p;
  const std::string file = p.f.dir / "pool0.img";
  const uint64_t chunks = (std::filesystem::file_size(file) - kDeviceHeaderBytes) / kTestChunk;
  std::vector<uint64_t> planted = plant_garbage(file, chunks);
  REQUIRE(planted.size() == chunks - 1);
  inject(p.meta(), [&](metadb::MetaBatch& b) { b.put_reserved_run({4, 0, chunks}); });

  auto pool = Pool::open(p.meta());
  REQUIRE_MESSAGE(pool.has_value(), pool.error().to_string());
  {
    auto v = pool.value()->open_volume("v");
    REQUIRE(v.has_value());
    CHECK(testing::all_bytes(p.f.io.read(*v.value(), 0, kTestChunk), 1));
  }
  pool.value().reset();
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::vector<uint8_t> buf(kTestChunk);
  for (uint64_t c : planted) {
    REQUIRE(::pread(fd, buf.data(), buf.size(),
                    static_cast<off_t>(kDeviceHeaderBytes + c * kTestChunk)) ==
            static_cast<ssize_t>(buf.size()));
    CHECK_MESSAGE(testing::all_bytes(buf, 0), "chunk " << c);
  }
  ::close(fd);
  CHECK(dump(p.meta()).find("reserved run") == std::string::npos);
}

// The zeroing runs in the background after open: until a chunk is zeroed it is counted as
// reclaiming and never handed out, so writes into a new volume straight after the open
// either get zeroed chunks or ENOSPC (the planted chunks are all the free space there is),
// never one still holding another volume's data.
TEST_CASE("chunks an unclean shutdown left are never handed out before they are zeroed") {
  ClosedPool p;
  const std::string file = p.f.dir / "pool0.img";
  const uint64_t chunks = (std::filesystem::file_size(file) - kDeviceHeaderBytes) / kTestChunk;
  REQUIRE(plant_garbage(file, chunks).size() == chunks - 1);
  inject(p.meta(), [&](metadb::MetaBatch& b) { b.put_reserved_run({4, 0, chunks}); });

  auto opened = Pool::open(p.meta());
  REQUIRE_MESSAGE(opened.has_value(), opened.error().to_string());
  Pool& pool = *opened.value();
  PoolUsage u = pool.usage();
  CHECK(u.used_bytes == kTestChunk);
  CHECK(u.used_bytes + u.free_bytes + u.reclaiming_bytes == u.capacity_bytes);
  REQUIRE(pool.create_volume(VolumeSpec{"w", (chunks - 1) * kTestChunk, 4096, {}, {}}).has_value());
  auto w = pool.open_volume("w");
  REQUIRE(w.has_value());
  std::vector<uint8_t> mine(4096, 0x5A);
  uint64_t written = 0, refused = 0;
  for (uint64_t c = 0; c + 1 < chunks; ++c) {
    int rc = p.f.io.write(*w.value(), c * kTestChunk, mine);
    if (rc == -ENOSPC) {
      ++refused;
      testing::wait_for_reclaim(pool);
      rc = p.f.io.write(*w.value(), c * kTestChunk, mine);
    }
    REQUIRE_MESSAGE(rc == 0, "chunk " << c << ": " << rc);
    ++written;
    std::vector<uint8_t> got = p.f.io.read(*w.value(), c * kTestChunk, kTestChunk);
    CHECK_MESSAGE(std::equal(mine.begin(), mine.end(), got.begin()), "chunk " << c);
    CHECK_MESSAGE(std::all_of(got.begin() + 4096, got.end(), [](uint8_t b) { return b == 0; }),
                  "chunk " << c << " of the new volume shows old data");
  }
  MESSAGE(written << " chunks written, " << refused << " first refused while zeroing ran");
  testing::wait_for_reclaim(pool);
  u = pool.usage();
  CHECK(u.reclaiming_bytes == 0);
  CHECK(u.free_bytes == 0);
}

TEST_CASE("a missing device is named") {
  ClosedPool p;
  std::filesystem::rename(p.f.dir / "pool0.img", p.f.dir / "moved.img");
  expect_refused(p.meta(), StatusCode::kNotFound, "pool0.img");
  std::filesystem::rename(p.f.dir / "moved.img", p.f.dir / "pool0.img");
  auto ok = Pool::open(p.meta());
  CHECK_MESSAGE(ok.has_value(), ok.error().to_string());
}

TEST_CASE("a second open of an open pool is refused") {
  PoolFixture f;
  auto r = Pool::open(f.dir / "meta");
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kBusy);
}

}  // namespace
}  // namespace pxd
