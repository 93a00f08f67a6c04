// pxd-nbd-relay: the relay rides out a server crash, re-sends what was in flight and
// replays what the crashed server may have lost. The upstream server here is nbdkit's
// file plugin; "losing" unflushed writes is simulated by overwriting their bytes in the
// backing file while the server is down.
#include <fcntl.h>
#include <libnbd.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/process.h"
#include "tests/support/temp_dir.h"

namespace pxd::testing {
namespace {

constexpr uint64_t kDiskBytes = 64ULL << 20;

std::string relay_binary() { return PXD_RELAY_BINARY_PATH; }

class Upstream {
 public:
  explicit Upstream(const TempDir& dir) : disk_(dir / "disk.img"), socket_(dir / "s.sock"),
                                          log_(dir / "nbdkit.log") {
    int fd = ::open(disk_.c_str(), O_CREAT | O_RDWR, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, kDiskBytes) == 0);
    ::close(fd);
  }
  void start() {
    std::filesystem::remove(socket_);
    REQUIRE(server_.start({"nbdkit", "--foreground", "--unix", socket_, "file", disk_}, log_));
    REQUIRE(wait_until([&] { return std::filesystem::exists(socket_); }));
  }
  void crash() { server_.kill9(); }
  // Overwrites [offset, offset + length) of the backing file with `byte`.
  void scribble(uint64_t offset, size_t length, char byte) {
    std::vector<char> junk(length, byte);
    int fd = ::open(disk_.c_str(), O_WRONLY);
    REQUIRE(::pwrite(fd, junk.data(), length, static_cast<off_t>(offset)) ==
            static_cast<ssize_t>(length));
    ::close(fd);
  }
  const std::string& socket() const { return socket_; }

 private:
  std::string disk_, socket_, log_;
  Child server_;
};

// A libnbd handle whose server is the relay (as nbdfuse runs it).
struct RelayClient {
  nbd_handle* h = nbd_create();
  explicit RelayClient(const std::string& socket, const std::string& extra = "") {
    REQUIRE(h != nullptr);
    std::vector<std::string> args = {relay_binary(), "--socket", socket, "--export", ""};
    if (!extra.empty()) {
      args.push_back("--unflushed-limit");
      args.push_back(extra);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE_MESSAGE(nbd_connect_command(h, argv.data()) == 0, nbd_get_error());
  }
  ~RelayClient() {
    nbd_shutdown(h, 0);
    nbd_close(h);
  }
  int write(uint64_t offset, size_t length, char byte, uint32_t flags = 0) {
    std::vector<char> buf(length, byte);
    return nbd_pwrite(h, buf.data(), length, offset, flags);
  }
  bool reads(uint64_t offset, size_t length, char byte) {
    std::vector<char> buf(length);
    if (nbd_pread(h, buf.data(), length, offset, 0) != 0) return false;
    for (char c : buf)
      if (c != byte) return false;
    return true;
  }
};

TEST_CASE("the relay replays unflushed writes after the server crashes") {
  TempDir dir;
  Upstream up(dir);
  up.start();
  RelayClient client(up.socket());
  CHECK(nbd_get_size(client.h) == static_cast<int64_t>(kDiskBytes));
  CHECK(nbd_can_flush(client.h) == 1);

  REQUIRE(client.write(0, 65536, 'a') == 0);  // flushed below: not kept
  REQUIRE(nbd_flush(client.h, 0) == 0);
  REQUIRE(client.write(1 << 20, 65536, 'b') == 0);                 // unflushed
  REQUIRE(client.write(2 << 20, 65536, 'c', LIBNBD_CMD_FLAG_FUA) == 0);  // durable
  REQUIRE(nbd_zero(client.h, 65536, 3 << 20, 0) == 0);              // unflushed zeroes

  up.crash();
  // What the crash "lost": everything not covered by a flush or FUA.
  up.scribble(1 << 20, 65536, 'X');
  up.scribble(3 << 20, 65536, 'X');
  up.scribble(2 << 20, 65536, 'c');  // FUA data survives a crash: unchanged
  // Issued while the server is down: waits, then completes.
  auto early_read = std::async(std::launch::async, [&] { return client.reads(1 << 20, 65536, 'b'); });
  CHECK(early_read.wait_for(std::chrono::milliseconds(500)) == std::future_status::timeout);
  up.start();
  CHECK(early_read.get());
  CHECK(client.reads(0, 65536, 'a'));
  CHECK(client.reads(2 << 20, 65536, 'c'));
  CHECK(client.reads(3 << 20, 65536, '\0'));

  // After a flush the relay no longer holds those writes: a later "loss" is not undone,
  // which shows the copies are released (the server really has them durably by then).
  REQUIRE(nbd_flush(client.h, 0) == 0);
  up.crash();
  up.scribble(1 << 20, 4096, 'Y');
  up.start();
  CHECK(client.reads(1 << 20, 4096, 'Y'));
}

TEST_CASE("past the unflushed limit the relay flushes on its own") {
  TempDir dir;
  Upstream up(dir);
  up.start();
  RelayClient client(up.socket(), "1M");
  for (int i = 0; i < 32; ++i) REQUIRE(client.write(uint64_t(i) << 20, 1 << 20, 'z') == 0);
  // Give the relay's own flush time to complete, then crash and lose nothing: the early
  // writes were flushed by the relay, the recent ones are replayed.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  up.crash();
  up.start();
  CHECK(client.reads(0, 32 << 20, 'z'));
}

TEST_CASE("the relay refuses a bad client and a missing export cleanly") {
  TempDir dir;
  Upstream up(dir);
  up.start();
  // nbdkit serves a single export whatever the name; a socket with no server at all, with
  // a give-up time, must fail the connection rather than hang.
  nbd_handle* h = nbd_create();
  std::vector<std::string> args = {relay_binary(), "--socket", dir / "none.sock", "--export",
                                   "x", "--give-up", "1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  CHECK(nbd_connect_command(h, argv.data()) != 0);
  nbd_close(h);

  auto bad = run({relay_binary(), "--socket", up.socket(), "--export", "", "--unflushed-limit",
                  "lots"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("unflushed-limit") != std::string::npos);
}

}  // namespace
}  // namespace pxd::testing
