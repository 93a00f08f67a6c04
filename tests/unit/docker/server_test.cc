// The Docker plugin's HTTP side on a real unix socket (its own thread, as in pxd) over an
// in-memory pxd: the socket's mode and who may connect, HTTP errors as the protocol's
// JSON replies, body limits, and a bounded, seeded run of random, truncated and
// malformed requests after which nothing has changed and the plugin still serves.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "tests/support/temp_dir.h"
#include "tests/support/unix_http.h"
#include "tests/unit/docker/fake_volume_service.h"
#include "tools/docker-plugin/plugin.h"

namespace pxd::testing {
namespace {

using Json = nlohmann::json;

struct Plugin {
  TempDir dir;
  std::string socket = dir / "plugins/pxdtest.sock";
  std::shared_ptr<FakeState> state = std::make_shared<FakeState>();
  kj::AsyncIoContext io = kj::setupAsyncIo();
  docker::DockerPlugin plugin{
      docker::PluginOptions{socket, dir / "mounts", dir / "docker-mounts.json",
                            [s = state](kj::AsyncIoProvider&) -> kj::Own<docker::VolumeService> {
                              return kj::heap<FakeVolumeService>(s);
                            }}};

  Plugin() {
    Status started = plugin.start().wait(io.waitScope);
    REQUIRE_MESSAGE(started.is_ok(), started.message());
  }
  ~Plugin() { plugin.stop(5 * kj::SECONDS).wait(io.waitScope); }

  HttpReply call(const std::string& path, const std::string& body) {
    return http_exchange(socket, http_post(path, body, docker::kContentType));
  }
};

TEST_CASE("the socket: 0600, in a directory made root-only, removed at stop") {
  TempDir dir;
  std::string socket = dir / "run/docker/plugins/pxd.sock";
  auto state = std::make_shared<FakeState>();
  auto io = kj::setupAsyncIo();
  {
    docker::DockerPlugin plugin{
        docker::PluginOptions{socket, dir / "mounts", dir / "ids.json",
                              [state](kj::AsyncIoProvider&) -> kj::Own<docker::VolumeService> {
                                return kj::heap<FakeVolumeService>(state);
                              }}};
    REQUIRE(plugin.start().wait(io.waitScope).is_ok());
    struct stat st;
    REQUIRE(::stat(socket.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(::stat((dir / "run/docker").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);

    // A second plugin on the same socket refuses, naming it.
    docker::DockerPlugin second{
        docker::PluginOptions{socket, dir / "mounts", dir / "ids2.json",
                              [state](kj::AsyncIoProvider&) -> kj::Own<docker::VolumeService> {
                                return kj::heap<FakeVolumeService>(state);
                              }}};
    Status refused = second.start().wait(io.waitScope);
    CHECK(refused.code() == StatusCode::kBusy);
    CHECK(refused.message().find(socket) != std::string::npos);
    second.stop(kj::SECONDS).wait(io.waitScope);

    // Users other than root are not served, even if the mode is loosened.
    ::chmod(socket.c_str(), 0666);
    ::chmod((dir / "run/docker").c_str(), 0755);
    ::chmod((dir / "run/docker/plugins").c_str(), 0755);
    ::chmod(dir.path().c_str(), 0755);
    ::chmod((dir / "run").c_str(), 0755);
    pid_t child = ::fork();
    if (child == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
      int fd = unix_connect(socket);
      if (fd < 0) ::_exit(3);
      std::string req = http_post("/Plugin.Activate", "");
      (void)!::write(fd, req.data(), req.size());
      char c;
      ssize_t n = ::recv(fd, &c, 1, 0);
      // Closed (or reset: the request was never read) without an answer; not a timeout.
      ::_exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 4);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(http_exchange(socket, http_post("/Plugin.Activate", "")).status == 200);

    plugin.stop(5 * kj::SECONDS).wait(io.waitScope);
    CHECK(::access(socket.c_str(), F_OK) != 0);
  }
  // A stale socket left by a dead process is replaced.
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    ::close(fd);
    docker::DockerPlugin again{
        docker::PluginOptions{socket, dir / "mounts", dir / "ids.json",
                              [state](kj::AsyncIoProvider&) -> kj::Own<docker::VolumeService> {
                                return kj::heap<FakeVolumeService>(state);
                              }}};
    CHECK(again.start().wait(io.waitScope).is_ok());
    CHECK(http_exchange(socket, http_post("/VolumeDriver.List", "{}")).status == 200);
    again.stop(5 * kj::SECONDS).wait(io.waitScope);
  }
}

TEST_CASE("every endpoint over HTTP, and HTTP-level errors as JSON") {
  Plugin p;
  CHECK(Json::parse(p.call("/Plugin.Activate", "").body)["Implements"] == Json{"VolumeDriver"});
  auto create = p.call("/VolumeDriver.Create", R"({"Name": "v", "Opts": {"size": "1G"}})");
  CHECK(create.status == 200);
  CHECK(Json::parse(create.body)["Err"] == "");
  auto mount = p.call("/VolumeDriver.Mount", R"({"Name": "v", "ID": "c1"})");
  CHECK(Json::parse(mount.body)["Mountpoint"] == p.dir / "mounts/v");
  CHECK(Json::parse(p.call("/VolumeDriver.Path", R"({"Name": "v"})").body)["Mountpoint"] ==
        p.dir / "mounts/v");
  CHECK(Json::parse(p.call("/VolumeDriver.Get", R"({"Name": "v"})").body)["Volume"]["Name"] == "v");
  CHECK(Json::parse(p.call("/VolumeDriver.List", "{}").body)["Volumes"].size() == 1);
  CHECK(Json::parse(p.call("/VolumeDriver.Capabilities", "{}").body)["Capabilities"]["Scope"] ==
        "local");
  CHECK(p.call("/VolumeDriver.Unmount", R"({"Name": "v", "ID": "c1"})").status == 200);
  CHECK(p.call("/VolumeDriver.Remove", R"({"Name": "v"})").status == 200);
  CHECK(p.state->names().empty());

  auto unknown = p.call("/VolumeDriver.Resize", "{}");
  CHECK(unknown.status == 404);
  CHECK(Json::parse(unknown.body)["Err"].get<std::string>().find("unknown endpoint "
                                                                 "/VolumeDriver.Resize") == 0);
  auto get = http_exchange(p.socket, "GET /Plugin.Activate HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(get.status == 405);
  CHECK(Json::parse(get.body)["Err"] != "");
  auto garbage = http_exchange(p.socket, "BLAH\r\n\r\n");
  CHECK(garbage.status >= 400);
  CHECK(Json::parse(garbage.body)["Err"].get<std::string>().find("malformed HTTP") == 0);
  auto bad = p.call("/VolumeDriver.Create", R"({"Name": )");
  CHECK(bad.status == 400);
  CHECK(Json::parse(bad.body)["Err"] == "request body is not valid JSON");

  SUBCASE("bodies over the limit, announced or chunked") {
    std::string big(docker::kMaxBodyBytes + 1, 'x');
    auto announced = p.call("/VolumeDriver.Create", big);
    CHECK(announced.status == 413);
    CHECK(Json::parse(announced.body)["Err"].get<std::string>().find("larger than") !=
          std::string::npos);
    std::string chunked =
        "POST /VolumeDriver.Create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 20; ++i) chunked += "1000\r\n" + std::string(4096, 'y') + "\r\n";
    chunked += "0\r\n\r\n";
    CHECK(http_exchange(p.socket, chunked).status == 413);
  }
  CHECK(p.call("/VolumeDriver.List", "{}").status == 200);
  CHECK(p.state->names().empty());
}

// Random bytes as whole requests, real requests cut short (with a matching or a lying
// Content-Length), random bodies to every endpoint. Nothing may change, every reply is
// the protocol's JSON, and the plugin serves normally afterwards.
TEST_CASE("fuzz: random, truncated and malformed requests change nothing") {
  Plugin p;
  p.state->add("keep", 1ull << 30);
  REQUIRE(p.call("/VolumeDriver.Mount", R"({"Name": "keep", "ID": "holder"})").status == 200);
  uint64_t seed = std::random_device{}();
  if (const char* env = std::getenv("PXD_FUZZ_SEED")) seed = std::strtoull(env, nullptr, 10);
  MESSAGE("fuzz seed " << seed << " (set PXD_FUZZ_SEED to repeat)");
  std::mt19937_64 rng(seed);
  const std::string paths[] = {
      "/Plugin.Activate",    "/VolumeDriver.Create",  "/VolumeDriver.Remove",
      "/VolumeDriver.Mount", "/VolumeDriver.Unmount", "/VolumeDriver.Path",
      "/VolumeDriver.Get",   "/VolumeDriver.List",    "/VolumeDriver.Nope"};
  const std::string real[] = {
      R"({"Name": "new", "Opts": {"size": "1G"}})",
      R"({"Name": "keep", "ID": "holder"})",
      R"({"Name": "size=1G,name=other"})",
  };
  int replies = 0, closed = 0;
  for (int i = 0; i < 400; ++i) {
    const std::string& path = paths[rng() % std::size(paths)];
    HttpReply r;
    switch (rng() % 4) {
      case 0: {  // random bytes instead of a request
        std::string junk(1 + rng() % 300, '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        r = http_exchange(p.socket, junk + "\r\n\r\n");
        break;
      }
      case 1: {  // a real body cut short, honestly announced
        const std::string& body = real[rng() % std::size(real)];
        r = p.call(path, body.substr(0, rng() % body.size()));
        break;
      }
      case 2: {  // a real body cut short, with the full length announced, then EOF
        const std::string& body = real[rng() % std::size(real)];
        std::string raw = http_post(path, body);
        r = http_exchange(p.socket, raw.substr(0, raw.size() - 1 - rng() % body.size()), true);
        break;
      }
      default: {  // random bytes as the body
        std::string body(rng() % 500, '\0');
        for (auto& c : body) c = static_cast<char>(rng());
        r = p.call(path, body);
        break;
      }
    }
    if (r.status == 0) {
      ++closed;
      continue;
    }
    ++replies;
    INFO("iteration ", i, ": ", r.status, " ", r.body);
    Json j = Json::parse(r.body, nullptr, false);
    REQUIRE(!j.is_discarded());
    // Only bodies with no fields (Activate, List) can succeed.
    if (r.status == 200) {
      CHECK((path == "/Plugin.Activate" || path == "/VolumeDriver.List"));
    } else {
      CHECK(j["Err"].is_string());
      CHECK(j["Err"] != "");
    }
  }
  MESSAGE(replies << " replies, " << closed << " connections closed without one");
  CHECK(p.state->names() == std::vector<std::string>{"keep"});
  CHECK(p.state->refs("keep") == 1);
  CHECK(p.state->count("create") == 0);
  CHECK(p.state->count("mount") == 1);
  CHECK(p.state->count("unmount") == 0);
  CHECK(p.state->count("remove") == 0);
  // Still serving.
  CHECK(p.call("/VolumeDriver.Unmount", R"({"Name": "keep", "ID": "holder"})").status == 200);
  CHECK(p.state->refs("keep") == 0);
}

}  // namespace
}  // namespace pxd::testing
