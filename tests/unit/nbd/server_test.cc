// tests/unit/nbd/server_test.cc: the NBD server's sockets and lifetime.
//
// Socket files and who may connect (the same rule as the control socket), TCP listening,
// the connection limit, and stop(): requests in flight are completed and answered before
// connections close.
#include <doctest/doctest.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "common/peer_credentials.h"
#include "tests/unit/nbd/nbd_client.h"
#include "tests/unit/nbd/nbd_fixture.h"
#include "tests/unit/nbd/raw_client.h"
#include "tests/unit/nbd/test_volumes.h"

namespace pxd::testing {
namespace {

using namespace std::chrono_literals;

nbd::ServerOptions unix_options(const std::string& path) {
  nbd::ServerOptions options;
  options.unix_path = path;
  return options;
}

TEST_CASE("the unix socket is root or group pxd only; its directory is made to match") {
  PoolFixture pf;
  pf.create("vol");
  PoolExports exports(*pf.pool);
  const std::string dir = pf.dir / "run";
  const std::string path = dir + "/nbd.sock";
  auto server = nbd::Server::start(unix_options(path), exports);
  REQUIRE_MESSAGE(server.has_value(), server.error().to_string());
  CHECK(server.value()->unix_path() == path);
  CHECK(server.value()->tcp_port() == 0);
  const bool group = pxd_group().has_value();
  struct stat st;
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == (group ? 0750u : 0700u));
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == (group ? 0660u : 0600u));
  if (group) CHECK(st.st_gid == *pxd_group());

  // Opened up on purpose, the socket still refuses a user outside root and group pxd.
  ::chmod(pf.dir.path().c_str(), 0755);
  ::chmod(dir.c_str(), 0755);
  ::chmod(path.c_str(), 0666);
  pid_t child = ::fork();
  if (child == 0) {
    // nobody/nogroup, no supplementary groups: connects, then must see the server close
    // without a greeting.
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)
      ::_exit(100);
    RawClient c(path);
    if (!c.connected()) ::_exit(101);
    std::string greeting = c.recv(18, 3s);
    ::_exit(greeting.empty() ? 0 : 102);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // Root is served.
  NbdClient c("nbd+unix:///vol?socket=" + path);
  CHECK(c.connected());

  server.value()->stop();
  CHECK(::access(path.c_str(), F_OK) != 0);  // the socket file is removed
  server.value()->stop();                    // idempotent
}

TEST_CASE("socket paths: stale sockets are replaced, live ones and other files refused") {
  PoolFixture pf;
  pf.create("vol");
  PoolExports exports(*pf.pool);
  const std::string path = pf.dir / "nbd.sock";
  {
    // A socket file whose server is gone.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    ::close(fd);
  }
  auto first = nbd::Server::start(unix_options(path), exports);
  REQUIRE_MESSAGE(first.has_value(), first.error().to_string());
  auto second = nbd::Server::start(unix_options(path), exports);
  REQUIRE(second.has_error());
  CHECK(second.error().code() == StatusCode::kBusy);
  // The refused server did not take the first one's socket away.
  NbdClient c("nbd+unix:///vol?socket=" + path);
  CHECK(c.connected());
  first.value()->stop();

  const std::string file = pf.dir / "plain";
  std::ofstream(file) << "x";
  auto on_file = nbd::Server::start(unix_options(file), exports);
  REQUIRE(on_file.has_error());
  CHECK(on_file.error().code() == StatusCode::kFailedPrecondition);
  auto relative = nbd::Server::start(unix_options("nbd.sock"), exports);
  REQUIRE(relative.has_error());
  CHECK(relative.error().code() == StatusCode::kInvalidArgument);
  auto none = nbd::Server::start(nbd::ServerOptions{}, exports);
  REQUIRE(none.has_error());
  CHECK(none.error().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("TCP: loopback by default, an explicit address, and bad addresses") {
  PoolFixture pf;
  pf.create("vol");
  PoolExports exports(*pf.pool);
  for (std::string spec : {"0", "127.0.0.1:0"}) {
    CAPTURE(spec);
    nbd::ServerOptions options;
    options.tcp_listen = spec;
    auto server = nbd::Server::start(options, exports);
    REQUIRE_MESSAGE(server.has_value(), server.error().to_string());
    uint16_t port = server.value()->tcp_port();
    REQUIRE(port != 0);
    CHECK(server.value()->unix_path().empty());
    NbdClient c("nbd://127.0.0.1:" + std::to_string(port) + "/vol");
    REQUIRE_MESSAGE(c.connected(), c.connect_error());
    CHECK(c.pwrite(pattern(4096, 1), 0) == 0);
    CHECK(c.read(0, 4096) == pattern(4096, 1));
  }
  for (std::string bad : {"abc", "127.0.0.1:99999", "host.example:10809", ":10809", "1.2.3:x"}) {
    CAPTURE(bad);
    nbd::ServerOptions options;
    options.tcp_listen = bad;
    auto server = nbd::Server::start(options, exports);
    REQUIRE(server.has_error());
    CHECK(server.error().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("connections beyond the limit are closed; the limit frees as clients leave") {
  nbd::ServerOptions options;
  options.max_connections = 2;
  NbdFixture f(256 * kMiB, options);
  auto a = std::make_unique<NbdClient>(f.uri());
  NbdClient b(f.uri());
  REQUIRE(a->connected());
  REQUIRE(b.connected());
  RawClient third(f.socket());
  CHECK(third.closed_by_server());
  a.reset();
  for (int i = 0; i < 300 && f.server->connections() != 1; ++i) std::this_thread::sleep_for(10ms);
  NbdClient d(f.uri());
  CHECK(d.connected());
}

TEST_CASE("stop() completes and answers requests in flight, then closes") {
  PoolFixture pf(256 * kMiB);
  pf.create("vol", 32 * kMiB);
  WrappedExports<DelayVolume> exports(*pf.pool, 300u);
  auto started = nbd::Server::start(unix_options(pf.dir / "nbd.sock"), exports);
  REQUIRE(started.has_value());
  auto server = std::move(started).value();

  RawClient c(pf.dir / "nbd.sock");
  REQUIRE(c.enter("vol"));
  for (uint64_t i = 0; i < 8; ++i)
    c.request(wire::kCmdWrite, wire::kCmdFlagFua, i, i * 65536, 65536,
              std::string(65536, static_cast<char>('a' + i)));
  for (int i = 0; i < 300 && exports.last()->inflight() < 8; ++i) std::this_thread::sleep_for(5ms);
  REQUIRE(exports.last()->inflight() == 8);
  std::thread stopper([&] { server->stop(); });
  std::vector<uint64_t> answered;
  for (int i = 0; i < 8; ++i) {
    auto r = c.simple_reply();
    REQUIRE(r.ok);
    CHECK(r.error == 0);
    answered.push_back(r.cookie);
  }
  std::sort(answered.begin(), answered.end());
  CHECK(answered == std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(c.closed_by_server());
  stopper.join();
  CHECK(server->connections() == 0);
  auto v = pf.open("vol");
  for (uint64_t i = 0; i < 8; ++i)
    CHECK(all_bytes(pf.io.read(*v, i * 65536, 65536), static_cast<uint8_t>('a' + i)));
}

TEST_CASE("stop() ends connections still in their handshake at once") {
  NbdFixture f;
  RawClient c(f.socket());
  REQUIRE(c.greet());
  auto start = std::chrono::steady_clock::now();
  f.stop();
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(c.closed_by_server());
}

}  // namespace
}  // namespace pxd::testing
