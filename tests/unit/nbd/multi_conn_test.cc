// tests/unit/nbd/multi_conn_test.cc: why the server may advertise NBD_FLAG_CAN_MULTI_CONN.
//
// The flag promises that a FLUSH (or FUA) on one connection makes durable every write
// whose reply was sent on any connection before it. The engine's flush does that: it
// fdatasyncs every pool device (covering all data writes that completed, whoever issued
// them) and syncs the metadata store up to every commit made so far, pool-wide (doc/nbd.md
// has the argument). This test shows it under a simulated power loss.
//
// The pool lives on ext4 on a loop device over an image file. Writes the kernel has not
// been asked to make durable (ext4's page cache, its uncommitted journal: commit=600) are
// not in the image yet, so a copy of the image taken at some instant is what a machine
// that lost power then would find. Connection A writes, connection B flushes, the image
// is copied, and the copy is mounted and the pool opened from it: A's data must be there.
// Needs root (loop devices, mount); skipped otherwise.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "tests/integration/process.h"
#include "tests/unit/nbd/nbd_client.h"
#include "tests/unit/nbd/nbd_fixture.h"

namespace pxd::testing {
namespace {

using namespace std::chrono_literals;

// An ext4 filesystem on a loop device over `image`, mounted at `dir`; undone on every
// exit path.
class LoopMount {
 public:
  LoopMount(const std::string& image, const std::string& dir) : dir_(dir) {
    std::filesystem::create_directories(dir);
    RunResult r = run({"losetup", "--find", "--show", image}, {}, 30s);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    device_ = r.out.substr(0, r.out.find('\n'));
    // commit=600: nothing reaches the image but what is explicitly synced (or written
    // with O_DIRECT), for the length of the test.
    r = run({"mount", "-t", "ext4", "-o", "commit=600", device_, dir}, {}, 30s);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    mounted_ = true;
  }
  ~LoopMount() {
    if (mounted_) run({"umount", dir_}, {}, 30s);
    if (!device_.empty()) run({"losetup", "-d", device_}, {}, 30s);
  }

 private:
  std::string dir_, device_;
  bool mounted_ = false;
};

void make_ext4_image(const std::string& image) {
  RunResult r = run({"truncate", "-s", "320M", image}, {}, 30s);
  REQUIRE(r.exit_code == 0);
  r = run({"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image}, {},
          60s);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
}

// The image as a machine that lost power now would find it.
void copy_image(const std::string& from, const std::string& to) {
  RunResult r = run({"cp", "--sparse=always", from, to}, {}, 60s);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
}

TEST_CASE("a FLUSH on one connection makes writes answered on another durable") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root for loop devices and mount");
    return;
  }
  TempDir dir;
  const std::string image = dir / "disk.img", crash = dir / "crash.img";
  const std::string mnt = dir / "mnt";
  make_ext4_image(image);
  const uint64_t chunk = 64 * 1024;
  const auto flushed = pattern(256 * 1024, 1), fua = pattern(128 * 1024, 2),
             unflushed = pattern(128 * 1024, 3);
  {
    LoopMount mount(image, mnt);
    PoolOptions options;
    options.devices.push_back({mnt + "/pool0.img", 128 * kMiB});
    options.chunk_size = chunk;
    auto pool = Pool::create(mnt + "/meta", options);
    REQUIRE_MESSAGE(pool.has_value(), pool.error().to_string());
    REQUIRE(pool.value()->create_volume(VolumeSpec{"vol", 64 * kMiB, 4096, {}, {}}).has_value());
    // Everything so far is durable: only what the connections do is at stake.
    REQUIRE(pool.value()->sync().is_ok());
    REQUIRE(run({"sync", "-f", mnt + "/meta"}, {}, 30s).exit_code == 0);
    PoolExports exports(*pool.value());
    nbd::ServerOptions server_options;
    server_options.unix_path = dir / "nbd.sock";
    auto server = nbd::Server::start(server_options, exports);
    REQUIRE(server.has_value());
    {
      const std::string uri = "nbd+unix:///vol?socket=" + server_options.unix_path;
      NbdClient a(uri), b(uri);
      REQUIRE(a.connected());
      REQUIRE(b.connected());
      REQUIRE(nbd_can_multi_conn(a.h()) == 1);
      // New chunks: data in the pool file's holes plus new extents in the metadata store,
      // neither durable until synced.
      REQUIRE(a.pwrite(flushed, 0) == 0);
      REQUIRE(b.flush() == 0);
      REQUIRE(a.pwrite(fua, 8 * kMiB, LIBNBD_CMD_FLAG_FUA) == 0);
      REQUIRE(a.pwrite(unflushed, 16 * kMiB) == 0);
      copy_image(image, crash);  // the power goes out here
    }
    server.value()->stop();
  }
  // The pool names its devices by path: the crashed image goes where the original was.
  LoopMount mount(crash, mnt);  // ext4 replays its journal
  auto pool = Pool::open(mnt + "/meta");
  REQUIRE_MESSAGE(pool.has_value(), pool.error().to_string());
  auto vol = pool.value()->open_volume("vol");
  REQUIRE(vol.has_value());
  SyncIo io;
  CHECK(io.read(*vol.value(), 0, flushed.size()) == flushed);
  CHECK(io.read(*vol.value(), 8 * kMiB, fua.size()) == fua);
  // The write nobody flushed shows that the simulation does lose data; the kernel may
  // have written it back anyway, so it is reported, not required.
  auto after = io.read(*vol.value(), 16 * kMiB, unflushed.size());
  if (after == unflushed) {
    MESSAGE("the unflushed write survived (written back by the kernel before the copy)");
  } else {
    MESSAGE("the unflushed write was lost, as a power loss may lose it");
  }
  vol.value().reset();
}

}  // namespace
}  // namespace pxd::testing
