// The extent journal: a first write's extent in a shared-memory file until the metadata
// writer puts it in the store; replayed at open after the process dies (doc/engine.md,
// "Fresh allocation"). The process dies for real here: a forked child opens the pool,
// writes, and leaves with _exit(), so nothing is drained or closed.
#include "engine/extent_journal.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "engine/pool.h"
#include "metadb/meta_store.h"
#include "tests/support/pool_fixture.h"
#include "tests/support/sync_io.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using testing::kTestChunk;
using testing::TempDir;

std::vector<uint8_t> pattern(uint8_t seed) {
  std::vector<uint8_t> v(4096);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(seed * 37 + i * 3);
  return v;
}

ExtentJournal::Key some_key(uint8_t seed) {
  ExtentJournal::Key key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(seed + i);
  return key;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::vector<uint8_t> out(std::filesystem::file_size(path));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
  ::close(fd);
  return out;
}

void patch_file(const std::string& path, uint64_t offset, const uint8_t* data, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, data, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n));
  ::close(fd);
}

TEST_CASE(
    "journal records read back under their key; another key, a flipped byte or a short "
    "tail is no record") {
  TempDir dir;
  const std::string path = dir / "j";
  const auto key = some_key(1);
  {
    auto j = ExtentJournal::create(path, 8, key);
    REQUIRE_MESSAGE(j.has_value(), j.error().to_string());
    j.value()->write(0, {5, 1, 2, 3, 4});
    j.value()->write(1, {6, UINT64_MAX, UINT64_MAX - 1, 1ULL << 63, UINT32_MAX});
    j.value()->write(10, {7, 9, 9, 9, 9});  // slot 2
  }
  CHECK(std::filesystem::file_size(path) == 8 * ExtentJournal::kSlotBytes);
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  auto got = ExtentJournal::read(path, key);
  REQUIRE(got.has_value());
  std::vector<JournalRecord> want = {
      {5, 1, 2, 3, 4}, {6, UINT64_MAX, UINT64_MAX - 1, 1ULL << 63, UINT32_MAX}, {7, 9, 9, 9, 9}};
  CHECK(got.value() == want);
  CHECK(ExtentJournal::read(path, some_key(2)).value().empty());

  uint8_t flipped = file_bytes(path)[ExtentJournal::kSlotBytes + 20] ^ 0x10;
  patch_file(path, ExtentJournal::kSlotBytes + 20, &flipped, 1);
  std::filesystem::resize_file(path, 3 * ExtentJournal::kSlotBytes - 1);
  CHECK(ExtentJournal::read(path, key).value() == std::vector<JournalRecord>{want[0]});
  CHECK(ExtentJournal::read(dir / "missing", key).value().empty());

  // Created again: empty, whatever the file held.
  REQUIRE(ExtentJournal::create(path, 8, key).has_value());
  CHECK(ExtentJournal::read(path, key).value().empty());
}

// A pool in a private directory, its journal there too; closed between steps.
struct JournaledPool {
  JournaledPool() {
    journal.dir = dir / "shm";
    std::filesystem::create_directories(journal.dir);
    PoolOptions options;
    options.devices.push_back({dir / "pool0.img", 16 * kMiB});
    options.chunk_size = kTestChunk;
    options.journal = journal;
    auto pool = Pool::create(meta(), options);
    REQUIRE_MESSAGE(pool.has_value(), pool.error().to_string());
    REQUIRE(
        pool.value()->create_volume(VolumeSpec{"v", 16 * kTestChunk, 4096, {}, {}}).has_value());
  }
  std::string meta() const { return dir / "meta"; }
  std::unique_ptr<Pool> open() {
    auto pool = Pool::open(meta(), PoolOpenOptions{journal});
    REQUIRE_MESSAGE(pool.has_value(), pool.error().to_string());
    return std::move(pool).value();
  }
  std::string journal_path() {
    for (const auto& e : std::filesystem::directory_iterator(journal.dir)) return e.path();
    FAIL("no journal file");
    return {};
  }
  // Runs `work` on the open pool in a child process that then dies without closing it.
  void in_dying_child(const std::function<void(Pool&, testing::SyncIo&)>& work) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      auto pool = Pool::open(meta(), PoolOpenOptions{journal});
      if (!pool.has_value()) ::_exit(2);
      testing::SyncIo io;
      work(*pool.value(), io);
      ::_exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "child status " << status);
  }
  size_t store_extents() {
    auto store = metadb::MetaStore::open(meta());
    REQUIRE(store.has_value());
    size_t n = 0;
    (void)store.value()->for_each_extent([&](const metadb::ExtentKey&, const metadb::ExtentValue&) {
      ++n;
      return Status::ok();
    });
    return n;
  }

  TempDir dir;
  JournalOptions journal;
  testing::SyncIo io;
};

// In the child: exits with 3 if a write fails.
void write_or_die(testing::SyncIo& io, Volume& v, uint64_t offset, const std::vector<uint8_t>& d) {
  if (io.write(v, offset, d) != 0) ::_exit(3);
}

TEST_CASE("first writes only the journal holds survive the process dying, and are replayed") {
  JournaledPool p;
  p.in_dying_child([](Pool& pool, testing::SyncIo& io) {
    auto v = pool.open_volume("v").value();
    for (uint8_t c = 0; c < 5; ++c) write_or_die(io, *v, c * kTestChunk + 4096, pattern(c));
  });
  // Below the writer's wake-up mark: the store has at most those a refill's write took
  // along.
  CHECK(p.store_extents() < 5);
  {
    auto pool = p.open();
    auto v = pool->open_volume("v").value();
    for (uint8_t c = 0; c < 5; ++c) {
      CHECK(p.io.read(*v, c * kTestChunk + 4096, 4096) == pattern(c));
      CHECK(testing::all_bytes(p.io.read(*v, c * kTestChunk, 4096), 0));
    }
    testing::wait_for_reclaim(*pool);
    PoolUsage u = pool->usage();
    CHECK(u.used_bytes == 5 * kTestChunk);
    CHECK(u.used_bytes + u.free_bytes == u.capacity_bytes);
  }
  // In the store since that open: a clean close removed the journal.
  CHECK(p.store_extents() == 5);
  CHECK(std::filesystem::is_empty(p.journal.dir));
  auto pool = p.open();
  CHECK(p.io.read(*pool->open_volume("v").value(), 3 * kTestChunk + 4096, 4096) == pattern(3));
}

TEST_CASE(
    "a journal record that fails its hash or its checks against the store is not "
    "replayed, and open goes on") {
  JournaledPool p;
  p.in_dying_child([](Pool& pool, testing::SyncIo& io) {
    auto v = pool.open_volume("v").value();
    for (uint8_t c = 0; c < 4; ++c) write_or_die(io, *v, c * kTestChunk, pattern(c));
  });
  const std::string path = p.journal_path();
  // The record of the third write (slot 2) is damaged.
  uint8_t flipped = file_bytes(path)[2 * ExtentJournal::kSlotBytes + 16] ^ 1;
  patch_file(path, 2 * ExtentJournal::kSlotBytes + 16, &flipped, 1);
  // Records that authenticate but contradict the store, signed with the pool's key.
  std::vector<JournalRecord> good;
  {
    auto store = metadb::MetaStore::open(p.meta());
    REQUIRE(store.has_value());
    auto state = store.value()->journal_state().value();
    REQUIRE(state.has_value());
    good = ExtentJournal::read(path, state->key).value();
    REQUIRE(good.size() == 3);
    const uint64_t tree = good[0].tree;
    const uint32_t birth = good[0].birth;
    const uint64_t capacity = 16 * kMiB / kTestChunk;
    std::vector<JournalRecord> forged = {
        {1000, tree + 50, 5, good[0].pool_chunk + 100, birth},  // no such volume
        {1001, tree, 16, good[0].pool_chunk + 101, birth},      // beyond the volume's end
        {1002, tree, 6, capacity + 3, birth},                   // beyond the pool
        {1003, tree, 7, good[1].pool_chunk, birth},             // a chunk another record maps
        {1004, tree, 0, good[0].pool_chunk + 102, birth},       // the volume maps chunk 0
    };
    const std::string scratch = p.dir / "scratch";
    auto j = ExtentJournal::create(scratch, 8, state->key);
    REQUIRE(j.has_value());
    for (size_t i = 0; i < forged.size(); ++i) j.value()->write(i, forged[i]);
    j.value().reset();
    std::vector<uint8_t> bytes = file_bytes(scratch);
    patch_file(path, 10 * ExtentJournal::kSlotBytes, bytes.data(),
               forged.size() * ExtentJournal::kSlotBytes);
  }
  {
    auto pool = p.open();
    auto v = pool->open_volume("v").value();
    for (uint8_t c : {0, 1, 3}) CHECK(p.io.read(*v, c * kTestChunk, 4096) == pattern(c));
    for (uint64_t c : {2, 5, 6, 7})
      CHECK(testing::all_bytes(p.io.read(*v, c * kTestChunk, kTestChunk), 0));
    testing::wait_for_reclaim(*pool);
    PoolUsage u = pool->usage();
    CHECK(u.used_bytes == 3 * kTestChunk);
    CHECK(u.used_bytes + u.free_bytes == u.capacity_bytes);
    CHECK(pool->inspect("v").value().exclusive_bytes == 3 * kTestChunk);
  }
  CHECK(p.store_extents() == 3);
}

TEST_CASE(
    "a snapshot taken between journaled first writes keeps only the writes before it, "
    "after the process dies") {
  JournaledPool p;
  p.in_dying_child([](Pool& pool, testing::SyncIo& io) {
    auto v = pool.open_volume("v").value();
    write_or_die(io, *v, 0, pattern(1));
    if (!pool.create_snapshot("v", "s").has_value()) ::_exit(4);
    write_or_die(io, *v, 0, pattern(2));               // a copy-on-write, through the store
    write_or_die(io, *v, 1 * kTestChunk, pattern(3));  // journaled, after the snapshot
  });
  auto pool = p.open();
  auto v = pool->open_volume("v").value();
  auto s = pool->open_volume("s").value();
  CHECK(p.io.read(*v, 0, 4096) == pattern(2));
  CHECK(p.io.read(*v, kTestChunk, 4096) == pattern(3));
  CHECK(p.io.read(*s, 0, 4096) == pattern(1));
  CHECK(testing::all_bytes(p.io.read(*s, kTestChunk, 4096), 0));
  testing::wait_for_reclaim(*pool);
  CHECK(pool->usage().used_bytes == 3 * kTestChunk);
}

TEST_CASE(
    "with a journal of a few slots, first writes that find it full commit through the "
    "writer, and all of them survive a clean reopen") {
  JournaledPool p;
  p.journal.slots = 4;
  {
    auto pool = p.open();
    auto v = pool->open_volume("v").value();
    for (uint8_t c = 0; c < 16; ++c) REQUIRE(p.io.write(*v, c * kTestChunk, pattern(c)) == 0);
    for (uint8_t c = 0; c < 16; ++c) CHECK(p.io.read(*v, c * kTestChunk, 4096) == pattern(c));
  }
  CHECK(p.store_extents() == 16);
  auto pool = p.open();
  auto v = pool->open_volume("v").value();
  for (uint8_t c = 0; c < 16; ++c) CHECK(p.io.read(*v, c * kTestChunk, 4096) == pattern(c));
}

}  // namespace
}  // namespace pxd
