// MetaStore behaviour through its public API: records round-trip, batches apply whole,
// the store is held exclusively, and unsynced writes survive a restart.
#include "metadb/meta_store.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "metadb_test_util.h"

namespace pxd::metadb {
namespace {

using testing::all_dirty;
using testing::all_extents;
using testing::all_objects;
using testing::sample_pool;
using testing::sample_volume;
using testing::TempDir;

std::unique_ptr<MetaStore> must_create(const std::string& dir) {
  auto r = MetaStore::create(dir, sample_pool());
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  return std::move(r).value();
}

std::unique_ptr<MetaStore> must_open(const std::string& dir) {
  auto r = MetaStore::open(dir);
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  return std::move(r).value();
}

void must_write(MetaStore& store, MetaBatch& batch, bool sync) {
  Status s = store.write(batch, sync);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
}

TEST_CASE("a new store holds the pool and next id 1") {
  TempDir tmp;
  auto store = must_create(tmp.store());
  CHECK(store->dir() == tmp.store());
  CHECK(store->pool() == sample_pool());
  CHECK(store->next_id() == 1);
  CHECK(all_objects(*store).empty());
  CHECK(all_extents(*store).empty());
  CHECK(all_dirty(*store).empty());
  CHECK(store->disk_bytes() > 0);
  store.reset();

  store = must_open(tmp.store());
  CHECK(store->pool() == sample_pool());
  CHECK(store->next_id() == 1);
}

TEST_CASE("every record round-trips through close and open") {
  TempDir tmp;
  ObjectRecord volume = sample_volume(1);
  volume.labels = {{"app", "postgres"}, {"tier", "gold"}, {"unicode", "caf\xc3\xa9"}};
  volume.attributes = {{"fs", "ext4"}, {"empty", ""}, {"quote", "a\"b\\c\n"}};
  volume.generation = 7;
  volume.size_bytes = UINT64_MAX;
  volume.created_unix = -5;  // before 1970: must survive as a signed value
  ObjectRecord snapshot;
  snapshot.id = 2;
  snapshot.kind = ObjectKind::kSnapshot;
  snapshot.name = "vol-1@daily";
  snapshot.size_bytes = volume.size_bytes;
  snapshot.block_size = 512;
  snapshot.tree = 1;
  snapshot.generation = 6;
  snapshot.created_unix = INT64_MAX;
  ObjectRecord clone = sample_volume(1ull << 63);
  clone.origin = 2;

  // Inserted out of order, with values whose little-endian order differs from their numeric
  // order, so that the scan proves keys sort numerically.
  const uint64_t big = 1ull << 63;
  std::vector<std::pair<ExtentKey, ExtentValue>> extents = {
      {{big, 0, 1}, {big - 1, kLiveGeneration}},
      {{1, 256, 1}, {3, kLiveGeneration}},
      {{1, 1, 256}, {4, kLiveGeneration}},
      {{1, 1, 1}, {5, 256}},
      {{2, 0, 1}, {UINT64_MAX, 0}},
      {{1, big + 1, kLiveGeneration - 1}, {big, 1}},
      {{big - 1, UINT64_MAX, 3}, {0, 2}},
  };
  const std::vector<uint64_t> dirty = {big, 1, 256, 0, UINT64_MAX};

  {
    auto store = must_create(tmp.store());
    MetaBatch batch;
    batch.put_object(clone);
    batch.put_object(volume);
    batch.put_object(snapshot);
    for (const auto& [k, v] : extents) batch.put_extent(k, v);
    for (uint64_t chunk : dirty) batch.put_dirty(chunk);
    batch.put_next_id(3);
    must_write(*store, batch, /*sync=*/true);
    CHECK(store->next_id() == 3);
  }

  auto store = must_open(tmp.store());
  CHECK(store->next_id() == 3);
  CHECK(store->pool() == sample_pool());
  std::vector<ObjectRecord> want_objects = {volume, snapshot, clone};
  CHECK(all_objects(*store) == want_objects);
  std::sort(extents.begin(), extents.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  CHECK(all_extents(*store) == extents);
  std::vector<uint64_t> want_dirty = dirty;
  std::sort(want_dirty.begin(), want_dirty.end());
  CHECK(all_dirty(*store) == want_dirty);
}

// The write buffer (memtable) holds recent writes until flush_buffer() writes them to a
// table file: its memory goes, and nothing a reader sees changes, before or after reopen.
TEST_CASE("flush_buffer empties the write buffer and keeps every record") {
  TempDir tmp;
  std::vector<std::pair<ExtentKey, ExtentValue>> extents;
  for (uint64_t ci = 0; ci < 2000; ++ci)
    extents.push_back({{1, ci, 1}, {ci + 10, kLiveGeneration}});
  {
    auto store = must_create(tmp.store());
    MetaBatch batch;
    for (const auto& [k, v] : extents) batch.put_extent(k, v);
    must_write(*store, batch, /*sync=*/false);
    const uint64_t before = store->buffer_bytes();
    CHECK(before > 2000 * 20);
    Status s = store->flush_buffer();
    REQUIRE_MESSAGE(s.is_ok(), s.to_string());
    CHECK(store->buffer_bytes() < before / 10);
    CHECK(all_extents(*store) == extents);
  }
  auto store = must_open(tmp.store());
  CHECK(all_extents(*store) == extents);
}

TEST_CASE("deletes remove records, and the last change to a key in a batch wins") {
  TempDir tmp;
  auto store = must_create(tmp.store());
  MetaBatch batch;
  batch.put_object(sample_volume(1));
  batch.put_object(sample_volume(2));
  batch.put_extent({1, 0, 1}, {10, kLiveGeneration});
  batch.put_extent({1, 1, 1}, {11, kLiveGeneration});
  batch.put_dirty(10);
  batch.put_dirty(11);
  must_write(*store, batch, false);

  MetaBatch del;
  del.delete_object(1);
  del.delete_extent({1, 0, 1});
  del.delete_dirty(10);
  del.delete_object(99);  // absent keys delete quietly
  del.put_dirty(12);
  del.delete_dirty(12);
  del.delete_extent({1, 1, 1});
  del.put_extent({1, 1, 1}, {12, 5});
  must_write(*store, del, false);

  auto objects = all_objects(*store);
  REQUIRE(objects.size() == 1);
  CHECK(objects[0].id == 2);
  auto extents = all_extents(*store);
  REQUIRE(extents.size() == 1);
  CHECK(extents[0].first == ExtentKey{1, 1, 1});
  CHECK(extents[0].second == ExtentValue{12, 5});
  CHECK(all_dirty(*store) == std::vector<uint64_t>{11});
}

TEST_CASE("a batch is recorded, not applied, until write()") {
  TempDir tmp;
  auto store = must_create(tmp.store());
  MetaBatch batch;
  CHECK(batch.empty());
  batch.put_object(sample_volume(1));
  batch.put_dirty(3);
  batch.put_next_id(2);
  CHECK(batch.count() == 3);
  CHECK(all_objects(*store).empty());
  CHECK(all_dirty(*store).empty());
  CHECK(store->next_id() == 1);

  batch.clear();
  CHECK(batch.empty());
  must_write(*store, batch, true);  // an empty write is a no-op (here: a sync)
  CHECK(store->next_id() == 1);
  CHECK(all_objects(*store).empty());
}

TEST_CASE("append moves another batch's changes after this one's") {
  TempDir tmp;
  auto store = must_create(tmp.store());
  MetaBatch first;
  ObjectRecord a = sample_volume(1);
  a.name = "first";
  first.put_object(a);
  first.put_dirty(7);
  first.put_next_id(5);

  MetaBatch second;
  ObjectRecord b = sample_volume(1);
  b.name = "second";
  second.put_object(b);
  second.delete_dirty(7);
  second.put_extent({1, 0, 1}, {7, kLiveGeneration});
  second.put_next_id(9);

  first.append(std::move(second));
  CHECK(first.count() == 7);
  CHECK(second.empty());  // NOLINT(bugprone-use-after-move): append documents this
  second.put_dirty(1);    // and leaves it usable
  CHECK(second.count() == 1);

  must_write(*store, first, true);
  CHECK(store->next_id() == 9);
  auto objects = all_objects(*store);
  REQUIRE(objects.size() == 1);
  CHECK(objects[0].name == "second");
  CHECK(all_dirty(*store).empty());
  CHECK(all_extents(*store).size() == 1);

  SUBCASE("into an empty batch, and from a moved-from one") {
    MetaBatch empty;
    MetaBatch one;
    one.put_dirty(42);
    empty.append(std::move(one));
    CHECK(empty.count() == 1);
    MetaBatch moved(std::move(empty));
    CHECK(moved.count() == 1);
    CHECK(empty.empty());  // NOLINT(bugprone-use-after-move)
    empty.append(std::move(moved));
    must_write(*store, empty, false);
    CHECK(all_dirty(*store) == std::vector<uint64_t>{42});
  }
}

TEST_CASE("a new pool record reaches pool() and the disk; old references stay valid") {
  TempDir tmp;
  auto store = must_create(tmp.store());
  const PoolRecord& before = store->pool();
  PoolRecord grown = sample_pool();
  grown.devices.push_back({"/dev/sdb", 99});
  MetaBatch batch;
  batch.put_pool(grown);
  must_write(*store, batch, true);
  CHECK(store->pool() == grown);
  CHECK(before == sample_pool());
  store.reset();
  CHECK(must_open(tmp.store())->pool() == grown);
}

TEST_CASE("create refuses an existing store and leaves it intact") {
  TempDir tmp;
  {
    auto store = must_create(tmp.store());
    MetaBatch batch;
    batch.put_next_id(4);
    must_write(*store, batch, true);
  }
  PoolRecord other = sample_pool();
  other.uuid = "something-else";
  auto r = MetaStore::create(tmp.store(), other);
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kAlreadyExists);
  CHECK(r.error().message().find(tmp.store()) != std::string::npos);
  auto store = must_open(tmp.store());
  CHECK(store->pool() == sample_pool());
  CHECK(store->next_id() == 4);
}

TEST_CASE("create makes the directory but not its parents") {
  TempDir tmp;
  auto r = MetaStore::create(tmp.path() + "/no/such/parent", sample_pool());
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kNotFound);
  CHECK_FALSE(std::filesystem::exists(tmp.path() + "/no"));
  // An existing empty directory is fine.
  must_create(tmp.path());
}

TEST_CASE("open of a missing store is kNotFound and creates nothing") {
  TempDir tmp;
  auto r = MetaStore::open(tmp.store());
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kNotFound);
  CHECK(r.error().message() == "no metadata store at " + tmp.store());
  CHECK_FALSE(std::filesystem::exists(tmp.store()));

  // An existing but empty directory is no store either, and stays empty.
  r = MetaStore::open(tmp.path());
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kNotFound);
  CHECK(std::filesystem::is_empty(tmp.path()));
}

TEST_CASE("a second open of an open store is kBusy and does not disturb the first") {
  TempDir tmp;
  auto store = must_create(tmp.store());
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = MetaStore::open(tmp.store());
    REQUIRE(r.has_error());
    CHECK(r.error().code() == StatusCode::kBusy);
    CHECK(r.error().message().find(tmp.store()) != std::string::npos);
  }
  auto again = MetaStore::create(tmp.store(), sample_pool());
  REQUIRE(again.has_error());
  CHECK(again.error().code() == StatusCode::kAlreadyExists);

  MetaBatch batch;
  batch.put_dirty(5);
  must_write(*store, batch, true);
  CHECK(all_dirty(*store) == std::vector<uint64_t>{5});
  store.reset();
  CHECK(all_dirty(*must_open(tmp.store())) == std::vector<uint64_t>{5});
}

// Runs `hold` on DIR/LOCK in a child process, calls `check` while the child holds it, then
// ends the child. The child only makes system calls, which are safe after fork().
template <class Check>
void while_child_locks(const std::string& dir, int (*hold)(int fd), Check check) {
  int ready[2];
  int release[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(release) == 0);
  const std::string lock_path = dir + "/LOCK";
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int fd = ::open(lock_path.c_str(), O_RDWR);
    char ok = (fd >= 0 && hold(fd) == 0) ? 1 : 0;
    if (::write(ready[1], &ok, 1) != 1) ::_exit(1);
    char byte;
    (void)::read(release[0], &byte, 1);
    ::_exit(0);
  }
  char ok = 0;
  REQUIRE(::read(ready[0], &ok, 1) == 1);
  REQUIRE(ok == 1);
  check();
  char byte = 0;
  CHECK(::write(release[1], &byte, 1) == 1);
  int status = 0;
  ::waitpid(child, &status, 0);
  for (int fd : {ready[0], ready[1], release[0], release[1]}) ::close(fd);
}

int hold_flock(int fd) {
  return ::flock(fd, LOCK_EX | LOCK_NB);
}

// What RocksDB itself does in DB::Open, as a tool like ldb would in another process.
int hold_posix_lock(int fd) {
  struct flock lock = {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  return ::fcntl(fd, F_SETLK, &lock);
}

TEST_CASE("a store held by another process is kBusy and unchanged") {
  TempDir tmp;
  must_create(tmp.store()).reset();
  auto before = testing::snapshot_files(tmp.store());
  for (auto hold : {hold_flock, hold_posix_lock}) {
    while_child_locks(tmp.store(), hold, [&] {
      auto r = MetaStore::open(tmp.store());
      REQUIRE(r.has_error());
      CHECK(r.error().code() == StatusCode::kBusy);
      CHECK(r.error().message().find(tmp.store()) != std::string::npos);
      CHECK(testing::snapshot_files(tmp.store()) == before);
    });
  }
  CHECK(testing::snapshot_files(tmp.store()) == before);
  must_open(tmp.store());
}

TEST_CASE("unsynced writes survive a close and reopen") {
  TempDir tmp;
  {
    auto store = must_create(tmp.store());
    for (uint64_t i = 0; i < 100; ++i) {
      MetaBatch batch;
      batch.put_dirty(i);
      batch.put_next_id(i + 2);
      must_write(*store, batch, /*sync=*/false);
    }
  }
  auto store = must_open(tmp.store());
  CHECK(store->next_id() == 101);
  CHECK(all_dirty(*store).size() == 100);
}

TEST_CASE("unsynced writes survive the process dying without closing the store") {
  TempDir tmp;
  must_create(tmp.store()).reset();
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // No doctest assertions here: report through the exit code, and skip every
    // destructor, as a crash would.
    auto r = MetaStore::open(tmp.store());
    if (!r.has_value()) ::_exit(2);
    MetaBatch batch;
    batch.put_object(sample_volume(1));
    batch.put_next_id(2);
    if (!r.value()->write(batch, /*sync=*/false).is_ok()) ::_exit(3);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  auto store = must_open(tmp.store());
  CHECK(store->next_id() == 2);
  CHECK(all_objects(*store) == std::vector<ObjectRecord>{sample_volume(1)});
  CHECK(store->sync().is_ok());
}

TEST_CASE("concurrent writers leave the cached next id and pool as on disk") {
  TempDir tmp;
  auto store = must_create(tmp.store());
  constexpr int kThreads = 4;
  constexpr int kWrites = 200;
  std::atomic<bool> torn{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        const uint64_t id = static_cast<uint64_t>(t) * kWrites + i + 1;
        MetaBatch batch;
        batch.put_object(sample_volume(id));
        batch.put_next_id(id + 1);
        PoolRecord pool = sample_pool();
        pool.created_unix = static_cast<int64_t>(id);
        batch.put_pool(pool);
        if (!store->write(batch, /*sync=*/i % 50 == 0).is_ok()) torn = true;
        // Readers race the writers: a pool() reference must always be a whole record.
        const PoolRecord& seen = store->pool();
        if (seen.uuid != sample_pool().uuid || seen.devices.size() != 2) torn = true;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK_FALSE(torn.load());
  const uint64_t cached_next = store->next_id();
  const PoolRecord cached_pool = store->pool();
  CHECK(static_cast<uint64_t>(cached_pool.created_unix) + 1 == cached_next);
  CHECK(all_objects(*store).size() == kThreads * kWrites);
  store.reset();
  store = must_open(tmp.store());
  CHECK(store->next_id() == cached_next);
  CHECK(store->pool() == cached_pool);
}

TEST_CASE("a visitor's error ends the scan with that error") {
  TempDir tmp;
  auto store = must_create(tmp.store());
  MetaBatch batch;
  for (uint64_t i = 1; i <= 5; ++i) {
    batch.put_object(sample_volume(i));
    batch.put_extent({i, 0, 1}, {i, kLiveGeneration});
    batch.put_dirty(i);
  }
  must_write(*store, batch, false);
  int seen = 0;
  Status s = store->for_each_object(
      [&](ObjectRecord&&) { return ++seen == 2 ? failed_precondition("stop") : Status::ok(); });
  CHECK(s.code() == StatusCode::kFailedPrecondition);
  CHECK(seen == 2);
  seen = 0;
  s = store->for_each_extent([&](const ExtentKey&, const ExtentValue&) {
    return ++seen == 3 ? internal_error("stop") : Status::ok();
  });
  CHECK(s.code() == StatusCode::kInternal);
  CHECK(seen == 3);
  seen = 0;
  s = store->for_each_dirty([&](uint64_t) { return ++seen == 1 ? busy("stop") : Status::ok(); });
  CHECK(s.code() == StatusCode::kBusy);
  CHECK(seen == 1);
}

TEST_CASE("the info log is LOG, rotated at each open, with three old logs kept") {
  TempDir tmp;
  must_create(tmp.store()).reset();
  for (int i = 0; i < 5; ++i) must_open(tmp.store()).reset();
  namespace fs = std::filesystem;
  int old = 0;
  for (const auto& e : fs::directory_iterator(tmp.store()))
    if (e.path().filename().string().rfind("LOG.old.", 0) == 0) ++old;
  CHECK(old == 3);
  // RocksDB writes its options and recovery steps there at every open.
  CHECK(fs::file_size(tmp.store() + "/LOG") > 0);
}

}  // namespace
}  // namespace pxd::metadb
