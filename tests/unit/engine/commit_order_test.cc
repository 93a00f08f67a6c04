// tests/unit/engine/commit_order_test.cc: a first write completes once its data is in the
// chunk and its extent is in the extent journal, or (without a journal, or with a full
// one) its extent's batch is written (not synced); flush and FUA make it durable.
//
// A write into a chunk the volume has never written takes a fresh chunk from the reserve
// and records the new extent before issuing the data (doc/engine.md, "Durability and crash
// safety"). Most tests here run without a journal, to check the batch path; the journal's
// own tests say so. That ordering is checked here with
// the metadata thread held where the test wants it by real kernel mechanisms on the
// filesystem that holds the metadata store (ext4 on a loop device): fsfreeze stops its
// writes, and the shutdown ioctl makes them fail, as a dead metadata disk would. The pool
// file stays on the test's own filesystem, so data writes go on meanwhile.
//
// A power loss is simulated as in nbd/multi_conn_test.cc: the metadata filesystem is
// mounted with commit=600, so a copy of its image holds only what was explicitly synced.
// (That a kill of the process loses no completed write is engine_crash_test's.)
//
// The metadata thread writes while its sync thread waits for the disk: shown with the
// store on a filesystem whose loop device's backing file is on a second, frozen one, so
// that writes into the page cache go on and every sync blocks.
// Needs root (loop devices, mount, freeze); skipped otherwise.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "common/units.h"
#include "engine/io_ring.h"
#include "engine/meta_writer.h"
#include "engine/pool.h"
#include "metadb/meta_store.h"
#include "tests/integration/process.h"
#include "tests/support/pool_fixture.h"
#include "tests/support/sync_io.h"
#include "tests/support/temp_dir.h"

namespace pxd::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The shutdown ioctl of ext4, xfs and f2fs (XFS_IOC_GOINGDOWN), with "do not flush the
// log": every later write or sync on the filesystem fails with EIO.
constexpr unsigned long kFsIocShutdown = _IOR('X', 125, uint32_t);
constexpr uint32_t kShutdownNoLogFlush = 0x2;

constexpr uint64_t kChunk = 64 * 1024;
const JournalOptions kDefaultJournal;

// An ext4 filesystem in `image` on a loop device, mounted at `dir` with commit=600;
// thawed, unmounted and detached on every exit path.
class MetaFs {
 public:
  MetaFs(const std::string& image, const std::string& dir) : image_(image), dir_(dir) {
    RunResult r = run({"truncate", "-s", "64M", image}, {}, 30s);
    REQUIRE(r.exit_code == 0);
    r = run({"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image}, {},
            60s);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    std::filesystem::create_directories(dir);
    mount(image);
  }
  ~MetaFs() { unmount(); }

  void mount(const std::string& image) {
    RunResult r = run({"losetup", "--find", "--show", image}, {}, 30s);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    device_ = r.out.substr(0, r.out.find('\n'));
    r = run({"mount", "-t", "ext4", "-o", "commit=600", device_, dir_}, {}, 30s);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    mounted_ = true;
  }
  void unmount() {
    thaw();
    if (mounted_) run({"umount", dir_}, {}, 30s);
    mounted_ = false;
    if (!device_.empty()) run({"losetup", "-d", device_}, {}, 30s);
    device_.clear();
  }
  // Writes to the filesystem block until thaw().
  void freeze() {
    RunResult r = run({"fsfreeze", "-f", dir_}, {}, 30s);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    frozen_ = true;
  }
  void thaw() {
    if (frozen_) run({"fsfreeze", "-u", dir_}, {}, 30s);
    frozen_ = false;
  }
  // Every later write fails, and nothing unsynced reaches the image.
  void shut_down() {
    int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    uint32_t flags = kShutdownNoLogFlush;
    int rc = ::ioctl(fd, kFsIocShutdown, &flags);
    ::close(fd);
    REQUIRE_MESSAGE(rc == 0, "shutdown ioctl: " << std::strerror(errno));
  }
  // The image as a machine that lost power now would find it.
  void copy_image(const std::string& to) {
    RunResult r = run({"cp", "--sparse=always", image_, to}, {}, 60s);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  }
  // Mounts `image` in place of the current one, at the same directory.
  void replace_with(const std::string& image) {
    unmount();
    image_ = image;
    mount(image);
  }

 private:
  std::string image_, dir_, device_;
  bool mounted_ = false;
  bool frozen_ = false;
};

// One request on a test-owned ring, completed by polling with a deadline.
struct Pending {
  Pending(IoOp op, uint64_t offset, uint64_t length, std::byte* buffer) {
    req.op = op;
    req.offset = offset;
    req.length = length;
    req.buffer = buffer;
    req.user = this;
    req.done = [](IoRequest* r, int result) {
      auto* self = static_cast<Pending*>(r->user);
      self->result = result;
      self->done = true;
    };
  }
  // Runs `ring` until the request completes or `limit` passes; true if it completed.
  bool wait(IoRing& ring, std::chrono::milliseconds limit) {
    const auto end = Clock::now() + limit;
    while (!done && Clock::now() < end) ring.run_once(true, 10);
    return done;
  }
  IoRequest req;
  bool done = false;
  int result = 1;
};

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed * 31 + i * 7 + i / 4096);
  return v;
}

// The pool: metadata on the loop filesystem, its one device a file in `dir` (or in
// `device_dir`); no extent journal unless `journal_slots` (then in a directory of `dir`,
// standing in for tmpfs).
struct Setup {
  explicit Setup(const std::string& device_dir = {}, uint32_t journal_slots = 0) {
    journal.slots = journal_slots;
    journal.dir = dir / "shm";
    std::filesystem::create_directories(journal.dir);
    PoolOptions options;
    options.devices.push_back(
        {device_dir.empty() ? dir / "pool0.img" : device_dir + "/pool0.img", 64 * kMiB});
    options.chunk_size = kChunk;
    options.journal = journal;
    auto p = Pool::create(meta(), options);
    REQUIRE_MESSAGE(p.has_value(), p.error().to_string());
    pool = std::move(p).value();
    // Queued after the allocation reserve's first refill: once this returns, the reserve
    // is filled and persisted, so first writes need nothing from the metadata thread.
    REQUIRE(pool->create_volume(VolumeSpec{"vol", 16 * kMiB, 4096, {}, {}}).has_value());
    auto v = pool->open_volume("vol");
    REQUIRE(v.has_value());
    vol = v.value();
  }
  std::string meta() const { return dir / "mnt/meta"; }
  // The power goes out now: the pool reopens from a copy of the metadata image as the
  // loop device holds it. (The pool file keeps what reached the page cache: only the
  // metadata is put to the test.)
  // The journal, on tmpfs, is gone too.
  void lose_power_and_reopen() {
    fs.copy_image(dir / "crash.img");
    vol.reset();
    pool.reset();
    fs.replace_with(dir / "crash.img");
    std::filesystem::remove_all(journal.dir);
    std::filesystem::create_directories(journal.dir);
    reopen();
  }
  void reopen() {
    auto p = Pool::open(meta(), PoolOpenOptions{journal});
    REQUIRE_MESSAGE(p.has_value(), p.error().to_string());
    pool = std::move(p).value();
  }

  TempDir dir;
  JournalOptions journal;
  MetaFs fs{dir / "meta.img", dir / "mnt"};
  std::unique_ptr<Pool> pool;
  std::shared_ptr<Volume> vol;  // released before the pool, the pool before the fs
  std::unique_ptr<IoRing> ring = IoRing::create(64).value();
  SyncIo io;
  // Destroyed first: a test that fails while the filesystem is frozen must not leave the
  // handle and the pool waiting for it.
  struct ThawOnExit {
    MetaFs& fs;
    ~ThawOnExit() { fs.thaw(); }
  } thaw_on_exit{fs};
};

// A write of `data` at `offset`, submitted while a filesystem under the pool is frozen.
struct FrozenWrite {
  FrozenWrite(Setup& s, uint64_t offset, const std::vector<uint8_t>& data)
      : buf(data.size()), write(IoOp::kWrite, offset, data.size(), buf.data) {
    std::memcpy(buf.data, data.data(), data.size());
    s.vol->submit(*s.ring, &write.req);
  }
  AlignedBuf buf;
  Pending write;
};

bool skip_unless_root() {
  if (::geteuid() == 0) return false;
  MESSAGE("skipped: needs root for loop devices, mount and fsfreeze");
  return true;
}

TEST_CASE(
    "a first write completes only once its extent's batch is written; a flush makes it "
    "durable") {
  if (skip_unless_root()) return;
  Setup s;
  const auto data = pattern(8192, 1);
  const uint64_t offset = 5 * kChunk + 8192;
  s.fs.freeze();
  FrozenWrite w(s, offset, data);
  // The data is in the chunk soon; the write waits for its extent's batch, which the
  // frozen filesystem holds back.
  CHECK_FALSE_MESSAGE(w.write.wait(*s.ring, 500ms), "a first write completed before its extent");
  s.fs.thaw();
  REQUIRE(w.write.wait(*s.ring, 60s));
  REQUIRE(w.write.result == 0);
  CHECK(s.io.read(*s.vol, offset, data.size()) == data);
  CHECK(all_bytes(s.io.read(*s.vol, 5 * kChunk, 8192), 0));
  std::vector<VolumeExtent> map;
  s.vol->map_extents(5 * kChunk, kChunk, map);
  REQUIRE(map.size() == 1);
  CHECK(map[0].allocated);
  REQUIRE(s.io.flush(*s.vol) == 0);

  // The power goes out right after the flush: the extent must be in the store.
  s.lose_power_and_reopen();
  auto vol = s.pool->open_volume("vol");
  REQUIRE(vol.has_value());
  CHECK(s.io.read(*vol.value(), offset, data.size()) == data);
  CHECK(s.pool->usage().used_bytes == kChunk);
}

TEST_CASE("a first write whose data lands after its extent's batch completes once the data is in") {
  if (skip_unless_root()) return;
  // The pool's device on a filesystem of its own, frozen: the data write waits in the
  // kernel while the extent's batch is written. (The ring finishes such a request itself
  // when the data completes: no post from the metadata thread is left to do it.)
  TempDir data_dir;
  MetaFs data_fs{data_dir / "data.img", data_dir / "mnt"};
  Setup s(data_dir / "mnt");
  struct ThawOnExit {
    MetaFs& fs;
    ~ThawOnExit() { fs.thaw(); }
  } thaw_on_exit{data_fs};  // before the pool closes, on every exit path
  const auto data = pattern(4096, 4);
  const uint64_t offset = 4 * kChunk + 4096;
  const uint64_t commits = s.pool->usage().metadata_commits;
  data_fs.freeze();
  FrozenWrite w(s, offset, data);
  const auto end = Clock::now() + 30s;
  while (s.pool->usage().metadata_commits == commits && Clock::now() < end && !w.write.done)
    s.ring->run_once(true, 10);
  REQUIRE_MESSAGE(s.pool->usage().metadata_commits > commits, "the extent's batch was not written");
  CHECK_FALSE_MESSAGE(w.write.wait(*s.ring, 300ms), "a first write completed before its data");
  data_fs.thaw();
  REQUIRE(w.write.wait(*s.ring, 60s));
  CHECK(w.write.result == 0);
  CHECK(s.io.read(*s.vol, offset, data.size()) == data);
  CHECK(all_bytes(s.io.read(*s.vol, 4 * kChunk, 4096), 0));
}

TEST_CASE(
    "a first write whose extent cannot be written fails, and so does every later flush; "
    "after a restart its chunk is reclaimed") {
  if (skip_unless_root()) return;
  Setup s;
  const auto data = pattern(4096, 2);
  s.fs.shut_down();  // the metadata disk dies: the extent commit below cannot succeed
  CHECK(s.io.write(*s.vol, 3 * kChunk, data) == -EIO);
  // No flush succeeds from now on, and the pool takes no more changes.
  CHECK(s.io.flush(*s.vol) == -EIO);
  CHECK(s.io.flush(*s.vol) == -EIO);
  CHECK(s.io.write(*s.vol, 3 * kChunk, data) == -EIO);
  CHECK(s.io.write(*s.vol, 7 * kChunk, data) == -EIO);
  CHECK(s.io.discard(*s.vol, 3 * kChunk, kChunk) == -EIO);
  CHECK_FALSE(s.pool->create_snapshot("vol", "snap").has_value());

  s.vol.reset();
  s.pool.reset();
  s.fs.unmount();
  s.fs.mount(s.dir / "meta.img");
  s.reopen();
  auto vol = s.pool->open_volume("vol");
  REQUIRE(vol.has_value());
  CHECK(all_bytes(s.io.read(*vol.value(), 3 * kChunk, kChunk), 0));
  // The chunk is zeroed in the background after the unclean shutdown: reclaiming until then.
  PoolUsage u = s.pool->usage();
  CHECK(u.used_bytes + u.free_bytes + u.reclaiming_bytes == u.capacity_bytes);
  wait_for_reclaim(*s.pool);
  u = s.pool->usage();
  CHECK(u.used_bytes == 0);
  CHECK(u.reclaiming_bytes == 0);
  CHECK(u.free_bytes == u.capacity_bytes);
  CHECK(s.pool->inspect("snap").has_value() == false);
}

TEST_CASE("a handle released as its first writes complete closes cleanly") {
  if (skip_unless_root()) return;
  Setup s;
  const auto data = pattern(4096, 3);
  s.fs.freeze();
  FrozenWrite a(s, 2 * kChunk, data), b(s, 9 * kChunk, data);
  CHECK_FALSE(a.write.wait(*s.ring, 300ms));
  s.fs.thaw();
  REQUIRE(a.write.wait(*s.ring, 60s));
  REQUIRE(b.write.wait(*s.ring, 60s));
  CHECK(a.write.result == 0);
  CHECK(b.write.result == 0);
  s.vol.reset();  // completions may run before the metadata thread is done with the changes
  // Closed for good: the volume can go, and with it every chunk it had.
  CHECK(s.pool->inspect("vol").value().open_handles == 0);
  CHECK(s.pool->usage().used_bytes == 2 * kChunk);
  CHECK(s.pool->remove("vol").is_ok());
  wait_for_reclaim(*s.pool);
  CHECK(s.pool->usage().used_bytes == 0);
  CHECK(s.pool->usage().reclaiming_bytes == 0);
}

TEST_CASE(
    "a snapshot or clone taken while a first write's extent is queued has the write, "
    "durably") {
  if (skip_unless_root()) return;
  Setup s;
  const auto first = pattern(4096, 4), second = pattern(4096, 5);
  const uint64_t offset = 6 * kChunk + 4096;
  bool clone = false;
  SUBCASE("snapshot") {
    clone = false;
  }
  SUBCASE("clone") {
    clone = true;
  }
  s.fs.freeze();
  FrozenWrite w(s, offset, first);
  CHECK_FALSE(w.write.wait(*s.ring, 300ms));
  // The control operation queues its batch behind the extent and waits for it.
  auto taken = std::async(std::launch::async, [&s, clone] {
    return clone ? s.pool->clone("vol", "copy").has_value()
                 : s.pool->create_snapshot("vol", "copy").has_value();
  });
  CHECK(taken.wait_for(300ms) == std::future_status::timeout);
  s.fs.thaw();
  REQUIRE(w.write.wait(*s.ring, 60s));
  CHECK(w.write.result == 0);
  REQUIRE(taken.wait_for(60s) == std::future_status::ready);
  REQUIRE(taken.get());
  // Copy-on-write from now on: the copy keeps the first data.
  CHECK(s.io.write(*s.vol, offset, second) == 0);
  {
    auto copy = s.pool->open_volume("copy");
    REQUIRE(copy.has_value());
    CHECK(s.io.read(*copy.value(), offset, first.size()) == first);
    CHECK(s.io.read(*s.vol, offset, second.size()) == second);
  }
  // The control operation is durable when it returns, and so is everything it depends on.
  s.lose_power_and_reopen();
  auto copy = s.pool->open_volume("copy");
  REQUIRE(copy.has_value());
  CHECK(s.io.read(*copy.value(), offset, first.size()) == first);
}

// A discard of a whole chunk queues its unmap and drops the chunk's last reference at
// once; the live map shows the chunk until the batch commits. A clone taken in between
// must not pick the chunk up: the reclaimer zeroes and frees it once the unmap commits.
TEST_CASE("a clone taken while an unmap is queued does not keep the freed chunk") {
  if (skip_unless_root()) return;
  Setup s;
  const auto data = pattern(kChunk, 6);
  REQUIRE(s.io.write(*s.vol, 0, data) == 0);
  REQUIRE(s.io.flush(*s.vol) == 0);
  s.fs.freeze();
  Pending discard(IoOp::kDiscard, 0, kChunk, nullptr);
  s.vol->submit(*s.ring, &discard.req);
  CHECK_FALSE(discard.wait(*s.ring, 300ms));  // completes only once its unmap commits
  auto taken =
      std::async(std::launch::async, [&s] { return s.pool->clone("vol", "copy").has_value(); });
  CHECK(taken.wait_for(300ms) == std::future_status::timeout);
  s.fs.thaw();
  REQUIRE(discard.wait(*s.ring, 60s));
  CHECK(discard.result == 0);
  REQUIRE(taken.wait_for(60s) == std::future_status::ready);
  REQUIRE(taken.get());
  wait_for_reclaim(*s.pool);
  PoolUsage u = s.pool->usage();
  CHECK(u.used_bytes + u.free_bytes + u.reclaiming_bytes == u.capacity_bytes);
  CHECK(u.used_bytes == 0);
  auto copy = s.pool->open_volume("copy");
  REQUIRE(copy.has_value());
  CHECK(all_bytes(s.io.read(*copy.value(), 0, kChunk), 0));
}

// A copy-on-write queues its new extent once the copy is durable; a clone taken before
// that commits shares the new chunk, so the volume's next write to it must copy again.
TEST_CASE("a clone taken while a copy-on-write is queued keeps what it saw") {
  if (skip_unless_root()) return;
  Setup s;
  const auto first = pattern(kChunk, 7), second = pattern(4096, 8), third = pattern(4096, 9);
  REQUIRE(s.io.write(*s.vol, kChunk, first) == 0);
  REQUIRE(s.pool->create_snapshot("vol", "snap").has_value());
  s.fs.freeze();
  AlignedBuf buf(second.size());
  std::memcpy(buf.data, second.data(), second.size());
  Pending write(IoOp::kWrite, kChunk, second.size(), buf.data);
  s.vol->submit(*s.ring, &write.req);
  CHECK_FALSE(write.wait(*s.ring, 300ms));  // copied, then waits for its extent's commit
  auto taken =
      std::async(std::launch::async, [&s] { return s.pool->clone("vol", "copy").has_value(); });
  CHECK(taken.wait_for(300ms) == std::future_status::timeout);
  s.fs.thaw();
  REQUIRE(write.wait(*s.ring, 60s));
  CHECK(write.result == 0);
  REQUIRE(taken.wait_for(60s) == std::future_status::ready);
  REQUIRE(taken.get());
  auto copy = s.pool->open_volume("copy");
  REQUIRE(copy.has_value());
  const auto seen = s.io.read(*copy.value(), kChunk, 4096);
  CHECK((seen == second || seen == std::vector<uint8_t>(first.begin(), first.begin() + 4096)));
  REQUIRE(s.io.write(*s.vol, kChunk, third) == 0);
  CHECK(s.io.read(*copy.value(), kChunk, 4096) == seen);
  CHECK(s.io.read(*s.vol, kChunk, 4096) == third);
  wait_for_reclaim(*s.pool);
  PoolUsage u = s.pool->usage();
  CHECK(u.used_bytes + u.free_bytes + u.reclaiming_bytes == u.capacity_bytes);
}

TEST_CASE(
    "with the extent journal, a first write completes while the metadata filesystem is "
    "frozen; a flush waits for it and makes it durable") {
  if (skip_unless_root()) return;
  Setup s({}, kDefaultJournal.slots);
  const auto data = pattern(8192, 5);
  const uint64_t offset = 6 * kChunk + 4096;
  s.fs.freeze();
  FrozenWrite w(s, offset, data);
  REQUIRE_MESSAGE(w.write.wait(*s.ring, 20s), "a journaled first write waited for the store");
  CHECK(w.write.result == 0);
  CHECK(s.io.read(*s.vol, offset, data.size()) == data);
  // The flush must put the extent in the store and sync it: it waits for the thaw.
  AlignedBuf none(4096);
  Pending flush(IoOp::kFlush, 0, 0, none.data);
  s.vol->submit(*s.ring, &flush.req);
  CHECK_FALSE_MESSAGE(flush.wait(*s.ring, 500ms), "a flush completed with the store frozen");
  s.fs.thaw();
  REQUIRE(flush.wait(*s.ring, 60s));
  REQUIRE(flush.result == 0);

  // The power goes out right after the flush (the journal with it): the extent is in the
  // store.
  s.lose_power_and_reopen();
  auto vol = s.pool->open_volume("vol");
  REQUIRE(vol.has_value());
  CHECK(s.io.read(*vol.value(), offset, data.size()) == data);
  CHECK(all_bytes(s.io.read(*vol.value(), 6 * kChunk, 4096), 0));
  CHECK(s.pool->usage().used_bytes == kChunk);
}

TEST_CASE(
    "with the extent journal, a first write outlives a dead metadata disk: flushes fail, and "
    "the next open replays it from the journal") {
  if (skip_unless_root()) return;
  Setup s({}, kDefaultJournal.slots);
  const auto data = pattern(4096, 6);
  s.fs.shut_down();
  // In the journal and the chunk: complete. Nothing can make it durable now.
  CHECK(s.io.write(*s.vol, 3 * kChunk, data) == 0);
  CHECK(s.io.flush(*s.vol) == -EIO);
  CHECK(s.io.write(*s.vol, 7 * kChunk, data) == -EIO);

  s.vol.reset();
  s.pool.reset();
  s.fs.unmount();
  s.fs.mount(s.dir / "meta.img");
  s.reopen();  // pxd restarts on the same machine: the journal is still there
  auto vol = s.pool->open_volume("vol");
  REQUIRE(vol.has_value());
  CHECK(s.io.read(*vol.value(), 3 * kChunk, data.size()) == data);
  CHECK(all_bytes(s.io.read(*vol.value(), 7 * kChunk, kChunk), 0));
  wait_for_reclaim(*s.pool);
  PoolUsage u = s.pool->usage();
  CHECK(u.used_bytes == kChunk);
  CHECK(u.used_bytes + u.free_bytes == u.capacity_bytes);
  // Replayed into the store: a power cut now keeps it.
  REQUIRE(s.io.flush(*vol.value()) == 0);
  vol.value().reset();
  s.lose_power_and_reopen();
  CHECK(s.io.read(*s.pool->open_volume("vol").value(), 3 * kChunk, data.size()) == data);
}

TEST_CASE("the metadata thread writes commits and runs their callbacks while a sync waits") {
  if (skip_unless_root()) return;
  TempDir dir;
  // The store's filesystem lives in a file on `outer`: freezing `outer` stops the inner
  // filesystem's writes to its device (so every sync), not writes into its page cache.
  MetaFs outer(dir / "outer.img", dir / "outer");
  MetaFs inner(dir / "outer/inner.img", dir / "inner");
  metadb::PoolRecord record;
  record.uuid = "00000000-0000-4000-8000-000000000001";
  record.chunk_size = kChunk;
  auto created = metadb::MetaStore::create(dir / "inner/meta", record);
  REQUIRE_MESSAGE(created.has_value(), created.error().to_string());
  std::unique_ptr<metadb::MetaStore> store = std::move(created).value();
  struct ThawOnExit {
    MetaFs& fs;
    ~ThawOnExit() { fs.thaw(); }
  };
  // What the writer's callbacks touch outlives it, even when a check fails midway.
  std::promise<Status> synced;
  bool ran = false;
  auto writer = std::make_unique<MetaWriter>(store.get());
  ThawOnExit thaw_on_exit{outer};  // destroyed before the writer, which waits for its syncs
  auto dirty = [](uint64_t chunk) {
    metadb::MetaBatch b;
    b.put_dirty(chunk);
    return b;
  };
  REQUIRE(writer->commit_and_wait(dirty(1), false).is_ok());
  REQUIRE(writer->durable_sequence() == 0);

  outer.freeze();
  writer->sync([&synced](const Status& s) { synced.set_value(s); });
  auto sync_done = synced.get_future();
  CHECK(sync_done.wait_for(300ms) == std::future_status::timeout);

  // Written, and called back, while the sync is stuck.
  auto written = writer->commit_later(dirty(2), false);
  REQUIRE_MESSAGE(written.wait_for(20s) == std::future_status::ready, "a commit waited for a sync");
  CHECK(written.get().is_ok());
  CHECK(writer->committed_sequence() == 2);
  CHECK(writer->durable_sequence() == 0);
  CHECK(sync_done.wait_for(0s) == std::future_status::timeout);
  // One that asked to be durable waits for a sync, like a flush.
  auto durable = writer->commit_later(dirty(3), true);
  CHECK(durable.wait_for(300ms) == std::future_status::timeout);
  writer->run([&ran] { ran = true; });
  auto later = writer->commit_later(dirty(4), false);
  REQUIRE(later.wait_for(20s) == std::future_status::ready);
  CHECK(ran);
  CHECK(writer->committed_sequence() == 4);

  outer.thaw();
  REQUIRE(sync_done.wait_for(60s) == std::future_status::ready);
  CHECK(sync_done.get().is_ok());
  REQUIRE(durable.wait_for(60s) == std::future_status::ready);
  CHECK(durable.get().is_ok());
  CHECK(writer->durable_sequence() >= 3);
  CHECK(writer->durable_sequence() <= writer->committed_sequence());
  CHECK(writer->sync_and_wait().is_ok());
  CHECK(writer->durable_sequence() == 4);
  CHECK(writer->health().is_ok());
}

}  // namespace
}  // namespace pxd::testing
