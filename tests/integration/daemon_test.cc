// pxd as a process: readiness, shutdown, one instance per data dir, config, and clients
// that misbehave or may not connect.
#include <capnp/rpc-twoparty.h>
#include <doctest/doctest.h>
#include <grp.h>
#include <kj/async-io.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "common/units.h"
#include "proto/control.capnp.h"
#include "tests/integration/process.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using testing::PxdOptions;
using testing::PxdProcess;
using testing::TempDir;

// hello() over a fresh connection; returns the status code, or -1 if the call failed.
int hello(const std::string& socket) {
  try {
    auto io = kj::setupAsyncIo();
    auto addr =
        io.provider->getNetwork().parseAddress(kj::str("unix:", socket.c_str())).wait(io.waitScope);
    auto stream = addr->connect().wait(io.waitScope);
    capnp::TwoPartyClient client(*stream);
    auto control = client.bootstrap().castAs<proto::Control>();
    auto req = control.helloRequest();
    req.setClientApiVersion(proto::API_VERSION);
    auto resp = req.send().wait(io.waitScope);
    return static_cast<int>(resp.getStatus().getCode());
  } catch (const kj::Exception&) {
    return -1;
  }
}

int raw_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads until the peer closes (true) or 5 s pass (false).
bool closed_by_peer(int fd) {
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

TEST_CASE("READY=1 comes once the socket answers; SIGTERM stops cleanly") {
  TempDir dir;
  PxdProcess pxd(dir.path(), PxdOptions{{}, {}, false});
  REQUIRE(pxd.start());
  std::string seen;
  REQUIRE_MESSAGE(pxd.notify().wait_for("READY=1", std::chrono::seconds(30), &seen), pxd.log());
  // At the moment READY=1 arrives, a client is served at once.
  CHECK(hello(pxd.socket()) == 0);
  CHECK(seen.find("STATUS=opening pools") != std::string::npos);
  CHECK(seen.find("STATUS=serving") != std::string::npos);
  struct stat st;
  REQUIRE(::stat(pxd.socket().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == (testing::pxd_group_exists() ? 0660 : 0600));
  CHECK(pxd.stop() == 0);
  CHECK(::stat(pxd.socket().c_str(), &st) != 0);  // removed on the way out
  CHECK(pxd.log().find("stopped") != std::string::npos);
}

// pxd.service sets WatchdogSec=30: systemd passes WATCHDOG_USEC (and WATCHDOG_PID).
TEST_CASE("under a watchdog, pxd pings at half the interval once ready, and only its own") {
  using Clock = std::chrono::steady_clock;
  TempDir dir;
  PxdProcess pxd(dir.path(), PxdOptions{{}, {"WATCHDOG_USEC=400000"}, false});
  REQUIRE(pxd.start());
  std::string seen;
  REQUIRE_MESSAGE(pxd.notify().wait_for("READY=1", std::chrono::seconds(30), &seen), pxd.log());
  CHECK(seen.find("WATCHDOG=1") == std::string::npos);
  const auto ready = Clock::now();
  for (int i = 0; i < 4; ++i)
    REQUIRE(pxd.notify().wait_for("WATCHDOG=1", std::chrono::seconds(2), &seen));
  // Four pings 200 ms apart (the first 200 ms after READY): not a burst, not late.
  auto elapsed = Clock::now() - ready;
  CHECK(elapsed >= std::chrono::milliseconds(600));
  CHECK(elapsed < std::chrono::milliseconds(4000));
  CHECK(pxd.stop() == 0);

  // A watchdog meant for another process (WATCHDOG_PID) is not pxd's to ping.
  TempDir other;
  PxdProcess quiet(other.path(), PxdOptions{{}, {"WATCHDOG_USEC=400000", "WATCHDOG_PID=1"}, false});
  REQUIRE(quiet.start());
  REQUIRE(quiet.notify().wait_for("READY=1", std::chrono::seconds(30), &seen));
  CHECK_FALSE(quiet.notify().wait_for("WATCHDOG=1", std::chrono::seconds(1), &seen));
  CHECK(quiet.stop() == 0);
}

TEST_CASE("a second pxd on the same data dir refuses, naming the holder") {
  TempDir dir;
  PxdProcess first(dir.path());
  REQUIRE(first.start());
  auto second = testing::run({testing::pxd_binary(), "--data-dir", first.data_dir(),
                              "--control-socket", dir / "other.sock"},
                             {}, std::chrono::seconds(30));
  CHECK(second.exit_code == 1);
  CHECK(second.err.find("another pxd (pid " + std::to_string(first.pid()) + ")") !=
        std::string::npos);
  CHECK(hello(first.socket()) == 0);
  CHECK(first.stop() == 0);
}

TEST_CASE("garbage and oversized messages end only that connection") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE(pxd.start());
  std::mt19937_64 rng(7);
  for (int i = 0; i < 5; ++i) {
    int fd = raw_connect(pxd.socket());
    REQUIRE(fd >= 0);
    std::string junk(4096, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    ssize_t n = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    (void)n;
    CHECK(closed_by_peer(fd));
    ::close(fd);
  }
  {
    // A frame that claims one segment of 2^30 words (8 GiB).
    int fd = raw_connect(pxd.socket());
    REQUIRE(fd >= 0);
    uint32_t header[2] = {0, 1u << 30};
    ssize_t n = ::send(fd, header, sizeof(header), MSG_NOSIGNAL);
    (void)n;
    CHECK(closed_by_peer(fd));
    ::close(fd);
  }
  {
    // A client that connects and vanishes.
    int fd = raw_connect(pxd.socket());
    ::close(fd);
  }
  CHECK(hello(pxd.socket()) == 0);
  CHECK(pxd.running());
  CHECK(pxd.stop() == 0);
}

TEST_CASE("a user outside root and group pxd is refused even if the socket is opened up") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE(pxd.start());
  ::chmod(dir.path().c_str(), 0755);
  ::chmod((dir / "run").c_str(), 0755);
  ::chmod(pxd.socket().c_str(), 0666);
  pid_t child = ::fork();
  if (child == 0) {
    // nobody/nogroup, no supplementary groups.
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(100);
    int code = hello(pxd.socket());
    ::_exit(code < 0 ? 101 : code);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == static_cast<int>(proto::Status::Code::PERMISSION_DENIED));
  CHECK(pxd.log().find("refusing control connection from") != std::string::npos);
  CHECK(hello(pxd.socket()) == 0);
}

TEST_CASE("a thick pool device is written whole at creation, and says how far it is") {
  TempDir dir;
  const std::string thick = dir / "thick.img";
  PxdProcess pxd(dir.path(), PxdOptions{{"--pool", thick + ":64M:thick"}, {}, true});
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  CHECK(pxd.log().find("writing thick pool file " + thick + ": 63 MiB of 63 MiB") !=
        std::string::npos);
  CHECK(pxd.stop() == 0);
  struct stat st;
  REQUIRE(::stat(thick.c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 >= 63 * kMiB);
  // The test's other pool file stays sparse.
  REQUIRE(::stat((dir / "pool0.img").c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < 64 * kMiB);
}

TEST_CASE("every documented config key is accepted; typos and bad values are named") {
  TempDir dir;
  std::string conf = dir / "pxd.conf";
  {
    std::ofstream f(conf);
    f << "data_dir = \"" << (dir / "data") << "\"\n"
      << "control_socket = \"" << (dir / "run/pxd.sock") << "\"\n"
      << "pools = [\"" << (dir / "p0.img") << ":2G\", \"" << (dir / "p1.img") << ":1G:thick\"]\n"
      << "node_name = \"n1\"\n"
      << "labels = { zone = \"z1\", rack = \"r1\" }\n"
      << "log_level = \"debug\"\n"
      << "chunk_size = \"256K\"\n"
      << "shutdown_timeout_seconds = 10\n";
  }
  {
    testing::NotifySocket notify(dir / "n.sock");
    auto result = testing::run({testing::pxd_binary(), "--config", conf, "--version"});
    CHECK(result.exit_code == 0);
    CHECK(result.out.find("pxd ") == 0);
  }
  PxdProcess pxd(dir.path(), PxdOptions{{"--config", conf}, {}, true});
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  CHECK(pxd.log().find("node n1") != std::string::npos);
  CHECK(pxd.stop() == 0);

  struct Bad {
    std::string text;
    std::string expect;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"data_dirr = \"/x\"\n", "unknown config key"},
           {"data_dirr = \"/x\"\n", "data_dirr"},
           {"log_level = \"loud\"\n", "log_level"},
           {"pools = \"/x\"\n", "pools"},
           {"pools = [\"relative.img\"]\n", "absolute path"},
           {"pools = [\"/x.img:2G:thik\"]\n", "PATH[:SIZE][:thick]"},
           {"pools = [\"/x.img:0:thick\"]\n", "size zero"},
           {"chunk_size = \"12Q\"\n", "12Q"},
           {"shutdown_timeout_seconds = -3\n", "shutdown_timeout_seconds"},
           {"labels = [1]\n", "labels"},
           {"node_name = 5\n", "node_name"},
           {"attach_frontend = \"nbd\"\n", "not one of auto, ublk, nbd-loop"},
           {"ublk_copy = \"zero\"\n", "ublk_copy"},
           {"detach_on_stop = \"yes\"\n", "detach_on_stop"},
           {"this is not toml\n", "line 1"},
       }) {
    std::ofstream(conf, std::ios::trunc) << bad.text;
    auto result = testing::run({testing::pxd_binary(), "--config", conf, "--data-dir", dir / "d2"});
    CHECK_MESSAGE(result.exit_code == 2, bad.text);
    CHECK_MESSAGE(result.err.find(bad.expect) != std::string::npos,
                  bad.text << " -> " << result.err);
  }
  auto missing = testing::run({testing::pxd_binary(), "--config", dir / "nope.conf"});
  CHECK(missing.exit_code == 2);
  CHECK(missing.err.find("nope.conf") != std::string::npos);
  auto flag = testing::run({testing::pxd_binary(), "--no-such-flag"});
  CHECK(flag.exit_code == 2);
  auto help = testing::run({testing::pxd_binary(), "--help"});
  CHECK(help.exit_code == 0);
  for (const char* key : {"data_dir", "control_socket", "pools", "node_name", "labels", "log_level",
                          "chunk_size", "shutdown_timeout_seconds", "attach_frontend",
                          "detach_on_stop", "--detach-on-stop", "--data-dir", "--pool"}) {
    CHECK_MESSAGE(help.out.find(key) != std::string::npos, key);
  }
}

}  // namespace
}  // namespace pxd
