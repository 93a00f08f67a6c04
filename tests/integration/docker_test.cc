// The Docker volume plugin end to end: a real, private dockerd (docker_engine.h) and a
// private pxd serving the plugin on its own socket, registered with Docker under a unique
// name. Containers write and read pxd volumes; the tests check what Docker and pxctl both
// see, mount counting across containers and pxd restarts, clones with parent=, removal,
// raw volumes, file ownership, and bad input through the docker CLI and raw HTTP.
//
// One engine and one pxd serve every test case (starting dockerd costs seconds); each
// case uses volumes of its own. If dockerd cannot run here the cases say why and pass as
// skipped (CTest shows them skipped).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/integration/docker_engine.h"
#include "tests/integration/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/unix_http.h"

namespace pxd::testing {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kImage = "pxdtest/busybox:1";

std::string joined(const std::vector<std::string>& args) {
  std::string text;
  for (const auto& a : args) text += " " + a;
  return text;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

struct Env {
  TempDir dir;
  std::string plugin_socket = dir / "plugin.sock";
  PxdProcess pxd{dir.path(), PxdOptions{{"--docker-plugin-socket", plugin_socket}, {}, true}};
  PluginSpec spec{"pxdtest", plugin_socket};
  DockerEngine engine{dir / "dk"};
  std::string skip;  // why the engine cannot run, if it cannot

  Env() {
    if (!pxd.start()) {
      skip = "pxd did not start: " + pxd.log();
      return;
    }
    skip = engine.start();
    if (skip.empty()) skip = engine.import_busybox(kImage);
  }
  ~Env() {
    // Containers first (their Unmounts need pxd), then dockerd, then pxd's attachments.
    engine.stop();
    auto list = pxctl(pxd.socket(), {"-j", "volume", "list", "-a"});
    if (list.exit_code == 0) {
      for (const auto& v : Json::parse(list.out))
        if (v["state"] != "detached")
          pxctl(pxd.socket(), {"host", "detach", "--force", v["name"].get<std::string>()});
    }
    pxd.stop();
    unmount_below(dir.path());
  }

  const std::string& driver() const { return spec.name(); }
  std::string mountpoint(const std::string& name) const {
    return pxd.data_dir() + "/mounts/" + name;
  }

  RunResult docker(const std::vector<std::string>& args) { return engine.docker(args); }
  // docker ARGS, which must succeed; returns stdout without the final newline.
  std::string ok(const std::vector<std::string>& args) {
    auto r = docker(args);
    INFO("docker", joined(args), " -> ", r.exit_code, "\nstdout: ", r.out, "\nstderr: ", r.err,
         "\npxd log:\n", pxd.log());
    REQUIRE(r.exit_code == 0);
    return trim(r.out);
  }
  // docker ARGS, which must fail with `needle` in its message.
  void fails(const std::vector<std::string>& args, const std::string& needle) {
    auto r = docker(args);
    INFO("docker", joined(args), " -> ", r.exit_code, "\nstdout: ", r.out, "\nstderr: ", r.err);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find(needle) != std::string::npos);
  }
  // docker run --rm with the volume at /data.
  std::string run_with(const std::string& volume, const std::string& script,
                       const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"run", "--rm", "--network=none", "-v", volume + ":/data"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {kImage, "sh", "-c", script});
    return ok(args);
  }
  Json inspect(const std::string& name) {
    auto r = pxctl(pxd.socket(), {"-j", "volume", "inspect", name});
    INFO("pxctl volume inspect ", name, ": ", r.err);
    REQUIRE(r.exit_code == 0);
    return Json::parse(r.out);
  }
  std::vector<std::string> pxd_names() {
    auto r = pxctl(pxd.socket(), {"-j", "volume", "list", "-a"});
    REQUIRE(r.exit_code == 0);
    std::vector<std::string> names;
    for (const auto& v : Json::parse(r.out)) names.push_back(v["name"]);
    return names;
  }
  Json mount_ids() {
    std::ifstream f(pxd.data_dir() + "/docker-mounts.json");
    if (!f) return Json::object();
    return Json::parse(f)["volumes"];
  }
  void restart_pxd() {
    REQUIRE(pxd.stop() == 0);
    REQUIRE(pxd.start());
  }
};

Env& env() {
  static auto shared = std::make_unique<Env>();
  return *shared;
}

#define REQUIRE_ENGINE()                                                                 \
  do {                                                                                   \
    if (!env().skip.empty()) {                                                           \
      MESSAGE("docker_test skipped: the Docker engine cannot run here: " << env().skip); \
      return;                                                                            \
    }                                                                                    \
  } while (0)

// No Docker needed: when the socket exists, and pxd's settings for it.
TEST_CASE("the plugin socket is there once pxd is ready, goes with it, and is configurable") {
  TempDir dir;
  std::string socket = dir / "p/pxd.sock";
  {
    PxdProcess pxd(dir.path(), PxdOptions{{"--docker-plugin-socket", socket}, {}, true});
    REQUIRE(pxd.start());
    // READY=1 came after the socket listens: Docker ordered after pxd finds the driver.
    auto activate = http_exchange(socket, http_post("/Plugin.Activate", ""));
    CHECK(activate.status == 200);
    CHECK(Json::parse(activate.body)["Implements"] == Json{"VolumeDriver"});
    struct stat st;
    REQUIRE(::stat(socket.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    // pxctl status names it.
    auto status = pxctl(pxd.socket(), {"-j", "status"});
    REQUIRE(status.exit_code == 0);
    CHECK(Json::parse(status.out)["docker_plugin_socket"] == socket);
    // A second pxd (own data dir) cannot take the socket over.
    TempDir other;
    PxdProcess second(other.path(), PxdOptions{{"--docker-plugin-socket", socket}, {}, false});
    REQUIRE(second.start());
    REQUIRE(wait_until([&] { return !second.running(); }, seconds(30)));
    CHECK(second.log().find("cannot serve the Docker plugin: another process is serving the "
                            "Docker plugin socket " +
                            socket) != std::string::npos);
    CHECK(http_exchange(socket, http_post("/VolumeDriver.List", "{}")).status == 200);
    CHECK(pxd.stop() == 0);
    CHECK(::access(socket.c_str(), F_OK) != 0);
  }
  // Off with "", which the test harness uses; relative paths and wrong types are refused.
  auto relative = run({pxd_binary(), "--data-dir", dir / "d2", "--docker-plugin-socket", "x.sock"});
  CHECK(relative.exit_code == 2);
  CHECK(relative.err.find("Docker plugin socket 'x.sock' must be an absolute path") !=
        std::string::npos);
  std::string conf = dir / "pxd.conf";
  std::ofstream(conf) << "docker_plugin_socket = 5\n";
  auto typed = run({pxd_binary(), "--config", conf, "--data-dir", dir / "d3"});
  CHECK(typed.exit_code == 2);
  CHECK(typed.err.find("docker_plugin_socket") != std::string::npos);
  auto help = run({pxd_binary(), "--help"});
  CHECK(help.out.find("--docker-plugin-socket") != std::string::npos);
  CHECK(help.out.find("docker_plugin_socket") != std::string::npos);
}

TEST_CASE(
    "docker volume create; one container writes, the next reads; ls and inspect show "
    "pxd's volumes, pxctl's too") {
  REQUIRE_ENGINE();
  Env& e = env();
  CHECK(e.ok({"volume", "create", "-d", e.driver(), "--opt", "size=1G", "v1"}) == "v1");
  Json v1 = e.inspect("v1");
  CHECK(v1["size"] == 1ull << 30);
  CHECK(v1["fs"] == "ext4");

  e.run_with("v1", "echo hello-from-one > /data/f && sync");
  CHECK(e.inspect("v1")["state"] == "detached");  // the last unmount detached it
  CHECK(e.run_with("v1", "cat /data/f") == "hello-from-one");
  CHECK(e.mount_ids().value("v1", Json::array()).empty());

  // A volume made with pxctl is a Docker volume too, found by name alone.
  REQUIRE(pxctl(e.pxd.socket(), {"volume", "create", "--size", "2", "--fs", "xfs", "pxvol"})
              .exit_code == 0);
  std::string ls = e.ok({"volume", "ls", "--format", "{{.Driver}} {{.Name}}"});
  CHECK(ls.find(e.driver() + " v1") != std::string::npos);
  CHECK(ls.find(e.driver() + " pxvol") != std::string::npos);
  Json inspected = Json::parse(e.ok({"volume", "inspect", "pxvol"}))[0];
  CHECK(inspected["Driver"] == e.driver());
  CHECK(inspected["Scope"] == "local");
  CHECK(inspected["Status"]["size"] == "2 GiB");
  CHECK(inspected["Status"]["fs"] == "xfs");
  CHECK(inspected["Mountpoint"] == "");
  CHECK(e.run_with("pxvol", "echo in-xfs > /data/x && stat -f -c %T /data") == "xfs");

  // A volume pxctl deletes leaves Docker's list too: one source of truth.
  e.ok({"volume", "create", "-d", e.driver(), "--opt", "size=1G", "gone-soon"});
  REQUIRE(pxctl(e.pxd.socket(), {"volume", "delete", "gone-soon"}).exit_code == 0);
  CHECK(e.ok({"volume", "ls", "-q"}).find("gone-soon") == std::string::npos);

  // Docker's first use of an unknown name with the driver creates it with defaults (10 GiB).
  e.run_with("fresh", "true", {"--volume-driver", e.driver()});
  CHECK(e.inspect("fresh")["size"] == 10ull << 30);
}

TEST_CASE("two containers mount one volume; it stays attached until both have exited") {
  REQUIRE_ENGINE();
  Env& e = env();
  e.ok({"volume", "create", "-d", e.driver(), "--opt", "size=1G", "shared"});
  auto holder = [&](const std::string& tag) {
    return e.ok({"run", "-d", "--network=none", "-v", "shared:/data", kImage, "sh", "-c",
                 "echo " + tag + " > /data/" + tag + " && sync && while [ ! -f /data/stop-" + tag +
                     " ]; do sleep 0.1; done"});
  };
  std::string a = holder("a");
  std::string b = holder("b");
  std::string mp = e.mountpoint("shared");
  REQUIRE(wait_until([&] { return fs::exists(mp + "/a") && fs::exists(mp + "/b"); }, seconds(30)));
  Json both = e.inspect("shared");
  CHECK(both["state"] == "mounted");
  std::string device = both["device_path"];
  CHECK(!device.empty());
  CHECK(e.mount_ids()["shared"].size() == 2);

  std::ofstream(mp + "/stop-a").put('\n');
  CHECK(e.ok({"wait", a}) == "0");
  Json one = e.inspect("shared");
  CHECK(one["state"] == "mounted");
  CHECK(one["device_path"] == device);
  CHECK(e.mount_ids()["shared"].size() == 1);
  // b still writes through the same device.
  e.ok({"exec", b, "sh", "-c", "echo still-here > /data/b2 && sync"});

  std::ofstream(mp + "/stop-b").put('\n');
  CHECK(e.ok({"wait", b}) == "0");
  Json none = e.inspect("shared");
  CHECK(none["state"] == "detached");
  CHECK(none["device_path"].is_null());
  CHECK(e.mount_ids().value("shared", Json::array()).empty());
  CHECK(!fs::exists(mp));
  e.ok({"rm", a, b});
  CHECK(e.run_with("shared", "cat /data/a /data/b /data/b2") == "a\nb\nstill-here");
}

TEST_CASE("parent=: volumes from a snapshot and from a volume") {
  REQUIRE_ENGINE();
  Env& e = env();
  e.ok({"volume", "create", "-d", e.driver(), "--opt", "size=1G", "origin"});
  e.run_with("origin", "echo before > /data/before && sync");
  REQUIRE(pxctl(e.pxd.socket(), {"volume", "snapshot", "create", "origin", "--name", "origin-s1"})
              .exit_code == 0);
  e.run_with("origin", "echo after > /data/after && sync");

  e.ok({"volume", "create", "-d", e.driver(), "--opt", "parent=origin-s1", "from-snap"});
  CHECK(e.run_with("from-snap", "cat /data/before; ls /data") == "before\nbefore");
  Json clone = e.inspect("from-snap");
  CHECK(clone["parent"] == "origin-s1");

  e.ok({"volume", "create", "-d", e.driver(), "--opt", "parent=origin", "--opt", "size=2G",
        "from-vol"});
  CHECK(e.inspect("from-vol")["size"] == 2ull << 30);
  CHECK(e.run_with("from-vol", "cat /data/before /data/after") == "before\nafter");

  // The inline form in `docker run -v`.
  CHECK(e.run_with("name=inline-clone,parent=origin-s1", "cat /data/before",
                   {"--volume-driver", e.driver()}) == "before");
  CHECK(e.inspect("inline-clone")["parent"] == "origin-s1");

  e.fails({"volume", "create", "-d", e.driver(), "--opt", "parent=nope", "orphan"},
          "parent 'nope' is neither a volume nor a snapshot");
  e.fails({"volume", "create", "-d", e.driver(), "--opt", "parent=origin", "--opt", "size=100M",
           "small"},
          "cannot be smaller than its parent 'origin' (1 GiB)");
}

TEST_CASE("pxd restarts between containers and under a running one") {
  REQUIRE_ENGINE();
  Env& e = env();
  e.ok({"volume", "create", "-d", e.driver(), "--opt", "size=1G", "durable"});
  e.run_with("durable", "echo one > /data/one && sync");
  e.restart_pxd();
  CHECK(e.run_with("durable", "cat /data/one") == "one");

  std::string c = e.ok({"run", "-d", "--network=none", "-v", "durable:/data", kImage, "sh", "-c",
                        "while [ ! -f /data/stop ]; do sleep 0.1; done"});
  REQUIRE(wait_until([&] { return e.inspect("durable")["state"] == "mounted"; }, seconds(30)));
  e.restart_pxd();
  CHECK(e.mount_ids()["durable"].size() == 1);  // the count survived
  CHECK(e.inspect("durable")["state"] == "mounted");
  e.ok({"exec", c, "sh", "-c", "echo after-restart > /data/two && sync"});
  std::ofstream(e.mountpoint("durable") + "/stop").put('\n');
  CHECK(e.ok({"wait", c}) == "0");
  e.ok({"rm", c});
  CHECK(e.inspect("durable")["state"] == "detached");
  CHECK(e.run_with("durable", "cat /data/one /data/two") == "one\nafter-restart");
}

TEST_CASE("docker volume rm") {
  REQUIRE_ENGINE();
  Env& e = env();
  e.ok({"volume", "create", "-d", e.driver(), "--opt", "size=1G", "doomed"});
  e.run_with("doomed", "echo x > /data/x");
  CHECK(e.ok({"volume", "rm", "doomed"}) == "doomed");
  auto gone = pxctl(e.pxd.socket(), {"volume", "inspect", "doomed"});
  CHECK(gone.exit_code == 3);
  CHECK(e.ok({"volume", "ls", "-q"}).find("doomed") == std::string::npos);

  // pxd refuses to delete a volume someone attached with pxctl; Docker says why.
  e.ok({"volume", "create", "-d", e.driver(), "--opt", "size=1G", "held"});
  REQUIRE(pxctl(e.pxd.socket(), {"host", "attach", "held"}).exit_code == 0);
  e.fails({"volume", "rm", "held"}, "attached");
  CHECK(e.inspect("held")["state"] == "attached");
  REQUIRE(pxctl(e.pxd.socket(), {"host", "detach", "held"}).exit_code == 0);
  CHECK(e.ok({"volume", "rm", "held"}) == "held");
}

TEST_CASE("raw volumes: Mount says how to use the device, and --device works") {
  REQUIRE_ENGINE();
  Env& e = env();
  e.ok({"volume", "create", "-d", e.driver(), "--opt", "fs=none", "--opt", "size=64M", "raw1"});
  auto r = e.docker({"run", "--rm", "--network=none", "-v", "raw1:/data", kImage, "true"});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("has no filesystem") != std::string::npos);
  CHECK(r.err.find("pxctl host attach raw1") != std::string::npos);
  CHECK(e.inspect("raw1")["state"] == "detached");
  auto attached = pxctl(e.pxd.socket(), {"host", "attach", "raw1"});
  REQUIRE(attached.exit_code == 0);
  std::string device = fs::canonical(trim(attached.out));  // the real node behind pxd<ID>
  e.ok({"run", "--rm", "--network=none", "--device", device + ":/dev/xvdb", kImage, "sh", "-c",
        "echo raw-bytes | dd of=/dev/xvdb conv=fsync 2>/dev/null"});
  CHECK(e.ok({"run", "--rm", "--network=none", "--device", device + ":/dev/xvdb", kImage, "head",
              "-c", "9", "/dev/xvdb"}) == "raw-bytes");
  REQUIRE(pxctl(e.pxd.socket(), {"host", "detach", "raw1"}).exit_code == 0);
}

TEST_CASE("files are not owned by root: a fresh volume takes the image's directory") {
  REQUIRE_ENGINE();
  Env& e = env();
  // /home/app in the image is 1000:1000, mode 0750; a non-root user writes to the volume.
  CHECK(e.ok({"run", "--rm", "--network=none", "-u", "1000:1000", "--volume-driver", e.driver(),
              "-v", "owned:/home/app", kImage, "sh", "-c",
              "touch /home/app/mine && stat -c '%u:%g %a' /home/app && ls -A /home/app"}) ==
        "1000:1000 750\nmine");
}

TEST_CASE("bad input through the docker CLI: the plugin's message, nothing changes") {
  REQUIRE_ENGINE();
  Env& e = env();
  auto before = e.pxd_names();
  const std::string d = e.driver();
  e.fails({"volume", "create", "-d", d, "--opt", "sise=1G", "bad1"},
          "unknown option 'sise' given with --opt; valid options: block_size, fs, label, parent, "
          "repl, size");
  e.fails({"volume", "create", "-d", d, "--opt", "size=lots", "bad2"}, "invalid size 'lots'");
  e.fails({"volume", "create", "-d", d, "--opt", "size=0", "bad3"}, "zero");
  e.fails({"volume", "create", "-d", d, "--opt", "fs=btrfs", "bad4"},
          "fs 'btrfs' is not one of ext4, xfs, none");
  e.fails({"volume", "create", "-d", d, "--opt", "block_size=1000", "bad5"}, "4096 or 512");
  e.fails({"volume", "create", "-d", d, "--opt", "repl=2", "bad6"}, "cluster");
  e.fails({"volume", "create", "-d", d, "a/b"}, "volume name 'a/b' contains '/'");
  e.fails({"volume", "create", "-d", d, ".."}, "volume name '..' contains '..'");
  e.fails({"volume", "create", "-d", d, "x..y"}, "contains '..'");
  e.fails({"volume", "create", "-d", d, "size=1G,colour=red,name=bad7"},
          "unknown option 'colour' in the name");
  e.fails({"volume", "create", "-d", d, "size=1G,fs=xfs"}, "no name=NAME item");
  e.fails({"volume", "create", "-d", d, "--opt", "size=2G", "name=bad8,size=1G"},
          "'1G' in the name but '2G' in --opt");
  // A body over the limit: Docker sends it, the plugin refuses it unread.
  e.fails({"volume", "create", "-d", d, "--opt", "label=k=" + std::string(70000, 'x'), "bad9"},
          "request body is larger than 65536 bytes");
  CHECK(e.pxd_names() == before);
  // Still serving.
  e.ok({"volume", "create", "-d", d, "--opt", "size=1G", "fine-after"});
  CHECK(e.run_with("fine-after", "echo ok") == "ok");
}

TEST_CASE("the plugin socket itself: unknown endpoints, malformed and oversized JSON") {
  REQUIRE_ENGINE();
  Env& e = env();
  auto before = e.pxd_names();
  auto post = [&](const std::string& path, const std::string& body) {
    return http_exchange(e.plugin_socket, http_post(path, body));
  };
  auto unknown = post("/VolumeDriver.Snapshot", R"({"Name": "x"})");
  CHECK(unknown.status == 404);
  CHECK(Json::parse(unknown.body)["Err"].get<std::string>().find("unknown endpoint") == 0);
  auto malformed = post("/VolumeDriver.Create", R"({"Name": "x", "Opts": {"size": )");
  CHECK(malformed.status == 400);
  CHECK(Json::parse(malformed.body)["Err"] == "request body is not valid JSON");
  auto wrong = post("/VolumeDriver.Mount", R"({"Name": "x"})");
  CHECK(wrong.status == 400);
  CHECK(Json::parse(wrong.body)["Err"] == "request has no \"ID\"");
  auto big = post("/VolumeDriver.Create", std::string(1 << 20, '{'));
  CHECK(big.status == 413);
  auto get = http_exchange(e.plugin_socket, "GET /VolumeDriver.List HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(get.status == 405);
  CHECK(e.pxd_names() == before);
  CHECK(Json::parse(post("/VolumeDriver.List", "{}").body)["Volumes"].is_array());
  e.ok({"volume", "ls"});
}

}  // namespace
}  // namespace pxd::testing
