// tests/integration/nbd_daemon_test.cc: a real pxd serving its volumes over NBD.
//
// pxd on private paths (PxdProcess gives it its own NBD socket), volumes and snapshots
// made with the real pxctl, data moved with nbdcopy and checked with nbdinfo, TCP when
// configured, and SIGTERM with a client connected.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/integration/process.h"
#include "tests/support/temp_dir.h"

namespace pxd::testing {
namespace {

using namespace std::chrono_literals;

RunResult tool(const std::vector<std::string>& argv) {
  RunResult r = run(argv, {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, 60s);
  std::string line;
  for (const auto& a : argv) line += a + " ";
  INFO(line << "\nstdout: " << r.out << "\nstderr: " << r.err);
  CHECK_FALSE(r.timed_out);
  return r;
}

void check_ok(const RunResult& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 0);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A TCP port nothing listens on right now.
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST_CASE("pxd serves volumes read-write and snapshots read-only on its NBD socket") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE(pxd.start());
  const std::string nbd_socket = dir / "run/nbd.sock";
  struct stat st;
  REQUIRE(::stat(nbd_socket.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == (pxd_group_exists() ? 0660u : 0600u));
  auto uri = [&](const std::string& name) { return "nbd+unix:///" + name + "?socket=" + nbd_socket; };

  check_ok(pxctl(pxd.socket(), {"volume", "create", "data", "--size", "64M"}));
  auto info = tool({"nbdinfo", "--json", uri("data")});
  check_ok(info);
  auto j = nlohmann::json::parse(info.out, nullptr, false);
  CHECK(j["exports"][0]["export-size"] == 64ull << 20);
  CHECK(j["exports"][0]["is_read_only"] == false);

  // Data in, snapshot, more data, and the snapshot still has the first data.
  const std::string first = dir / "first.img", second = dir / "second.img", out = dir / "out.img";
  {
    std::ofstream f(first, std::ios::binary);
    for (int i = 0; i < (64 << 20) / 64; ++i) f << "first-image-data-" << std::string(47, 'a' + i % 26);
    std::ofstream g(second, std::ios::binary);
    for (int i = 0; i < (64 << 20) / 64; ++i) g << "second-image-data" << std::string(47, 'A' + i % 26);
  }
  check_ok(tool({"nbdcopy", first, uri("data")}));
  check_ok(pxctl(pxd.socket(), {"volume", "snapshot", "create", "data", "--name", "data-s1"}));
  check_ok(tool({"nbdcopy", second, uri("data")}));
  check_ok(tool({"nbdcopy", uri("data-s1"), out}));
  CHECK(read_file(out) == read_file(first));
  check_ok(tool({"nbdcopy", uri("data"), out}));
  CHECK(read_file(out) == read_file(second));
  info = tool({"nbdinfo", "--json", uri("data-s1")});
  j = nlohmann::json::parse(info.out, nullptr, false);
  CHECK(j["exports"][0]["is_read_only"] == true);
  auto write_snap = tool({"nbdcopy", first, uri("data-s1")});
  CHECK(write_snap.exit_code != 0);

  // --list shows what pxctl made.
  info = tool({"nbdinfo", "--list", "--json", "nbd+unix://?socket=" + nbd_socket});
  check_ok(info);
  j = nlohmann::json::parse(info.out, nullptr, false);
  std::vector<std::string> names;
  for (auto& e : j["exports"]) names.push_back(e["export-name"]);
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"data", "data-s1"});

  // SIGTERM with a client connected: pxd stops cleanly, and the client is disconnected.
  Child client;
  REQUIRE(client.start({"/usr/bin/nbdsh", "-u", uri("data"), "-c",
                        "import time\nh.pwrite(b'x' * 4096, 0)\nh.flush()\ntime.sleep(60)"},
                       dir / "nbdsh.log", {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}));
  REQUIRE(wait_until([&] { return pxd.log().find("opened export 'data'") != std::string::npos; }));
  CHECK(pxd.stop() == 0);
  CHECK(pxd.log().find("closed export 'data'") != std::string::npos);
  CHECK(::access(nbd_socket.c_str(), F_OK) != 0);
}

TEST_CASE("pxd's NBD settings: TCP from the config file, the unix socket off") {
  TempDir dir;
  const uint16_t port = free_port();
  const std::string conf = dir / "pxd.conf";
  std::ofstream(conf) << "nbd_socket = \"\"\nnbd_listen = \"127.0.0.1:" << port << "\"\n";
  PxdProcess pxd(dir.path(), PxdOptions{{"--config", conf, "--nbd-socket", ""}, {}, true});
  REQUIRE(pxd.start());
  CHECK(::access((dir / "run/nbd.sock").c_str(), F_OK) != 0);
  check_ok(pxctl(pxd.socket(), {"volume", "create", "net", "--size", "16M"}));
  auto info = tool({"nbdinfo", "--size", "nbd://127.0.0.1:" + std::to_string(port) + "/net"});
  check_ok(info);
  CHECK(info.out == std::to_string(16 << 20) + "\n");
  CHECK(pxd.stop() == 0);

  // A bad address stops pxd at start with the reason.
  PxdProcess bad(dir / "bad", PxdOptions{{"--nbd-listen", "nowhere"}, {}, true});
  std::filesystem::create_directories(dir / "bad");
  CHECK_FALSE(bad.start());
  CHECK(bad.log().find("NBD listen address 'nowhere'") != std::string::npos);
}

}  // namespace
}  // namespace pxd::testing
