// The Docker plugin's endpoints over an in-memory pxd: every endpoint's request and reply,
// mount counting by request ID (persisted), the start-up reconcile, clones, and bad input
// that must change nothing.
#include "tools/docker-plugin/driver.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/temp_dir.h"
#include "tests/unit/docker/fake_volume_service.h"

namespace pxd::testing {
namespace {

using docker::Driver;
using docker::Endpoint;
using docker::MountIds;
using docker::Reply;
using Json = nlohmann::json;
namespace fs = std::filesystem;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct Rig {
  TempDir dir;
  std::string ids_path = dir / "docker-mounts.json";
  std::string mounts = dir / "mounts";
  std::shared_ptr<FakeState> state = std::make_shared<FakeState>();
  kj::EventLoop loop;
  kj::WaitScope ws{loop};
  FakeVolumeService service{state};
  std::unique_ptr<MountIds> ids;
  std::unique_ptr<Driver> driver;

  Rig() {
    fs::create_directories(mounts);
    restart("boot-1");
  }
  // A new Driver over the same pxd and ID file, as after a pxd restart.
  void restart(const std::string& boot_id) {
    driver.reset();
    auto loaded = MountIds::load(ids_path, boot_id);
    REQUIRE(loaded.has_value());
    ids = std::make_unique<MountIds>(std::move(loaded).value());
    driver = std::make_unique<Driver>(service, *ids, mounts);
    driver->reconcile().wait(ws);
  }
  Reply call(Endpoint e, const std::string& body) { return driver->handle(e, body).wait(ws); }
  Json ok(Endpoint e, const Json& body) {
    Reply r = call(e, body.dump());
    INFO(body.dump(), " -> ", r.status, " ", r.body);
    REQUIRE(r.status == 200);
    Json j = Json::parse(r.body);
    if (j.contains("Err")) REQUIRE(j["Err"] == "");
    return j;
  }
  std::string fail(Endpoint e, const Json& body, unsigned status = 500) {
    Reply r = call(e, body.dump());
    INFO(body.dump(), " -> ", r.status, " ", r.body);
    REQUIRE(r.status == status);
    Json j = Json::parse(r.body);
    REQUIRE(j["Err"].is_string());
    REQUIRE(j["Err"] != "");
    return j["Err"];
  }
  Json mount(const std::string& name, const std::string& id) {
    return ok(Endpoint::kMount, {{"Name", name}, {"ID", id}});
  }
  Json unmount(const std::string& name, const std::string& id) {
    return ok(Endpoint::kUnmount, {{"Name", name}, {"ID", id}});
  }
  Json saved() {
    std::ifstream f(ids_path);
    return Json::parse(f);
  }
};

TEST_CASE("Activate, Capabilities and List") {
  Rig rig;
  CHECK(rig.ok(Endpoint::kActivate, Json::object()) == Json{{"Implements", {"VolumeDriver"}}});
  CHECK(rig.call(Endpoint::kActivate, "").status == 200);
  CHECK(rig.ok(Endpoint::kCapabilities, Json::object())["Capabilities"]["Scope"] == "local");
  CHECK(rig.ok(Endpoint::kList, Json::object())["Volumes"].empty());
  rig.state->add("made-by-pxctl", 1ull << 30);
  auto list = rig.ok(Endpoint::kList, Json::object())["Volumes"];
  REQUIRE(list.size() == 1);
  CHECK(list[0]["Name"] == "made-by-pxctl");
  CHECK(list[0]["Mountpoint"] == "");
}

TEST_CASE("Create: options, defaults, idempotence, adopting pxctl's volumes") {
  Rig rig;
  rig.ok(Endpoint::kCreate, {{"Name", "v1"}, {"Opts", {{"size", "1G"}, {"fs", "xfs"}}}});
  {
    std::lock_guard<std::mutex> lock(rig.state->mu);
    REQUIRE(rig.state->volumes.count("v1"));
    CHECK(rig.state->volumes["v1"].size_bytes == 1ull << 30);
    CHECK(rig.state->volumes["v1"].fs == "xfs");
  }
  // The same again is fine; a different size says what differs.
  rig.ok(Endpoint::kCreate, {{"Name", "v1"}, {"Opts", {{"size", "1G"}}}});
  CHECK(contains(rig.fail(Endpoint::kCreate, {{"Name", "v1"}, {"Opts", {{"size", "2G"}}}}),
                 "exists with size 1 GiB, not 2 GiB"));
  // No options: Docker's first use of a name; an existing volume is adopted as it is.
  rig.state->add("pxvol", 5ull << 30);
  rig.ok(Endpoint::kCreate, {{"Name", "pxvol"}, {"Opts", nullptr}});
  rig.ok(Endpoint::kCreate, {{"Name", "fresh"}});
  std::lock_guard<std::mutex> lock(rig.state->mu);
  CHECK(rig.state->volumes["pxvol"].size_bytes == 5ull << 30);
  CHECK(rig.state->volumes["fresh"].size_bytes == docker::kDefaultSizeBytes);
  CHECK(rig.state->volumes["fresh"].fs == "ext4");
}

TEST_CASE("the inline form: Docker knows the whole string, pxd the name= part") {
  Rig rig;
  const std::string docker_name = "size=2G,fs=xfs,name=db";
  rig.ok(Endpoint::kCreate, {{"Name", docker_name}, {"Opts", {{"label", "app=pg"}}}});
  auto names = rig.state->names();
  CHECK(names == std::vector<std::string>{"db"});
  auto got = rig.ok(Endpoint::kGet, {{"Name", docker_name}})["Volume"];
  CHECK(got["Name"] == docker_name);  // Docker keys the volume by what it asked for
  CHECK(got["Status"]["name"] == "db");
  CHECK(got["Status"]["size"] == "2 GiB");
  CHECK(got["Status"]["fs"] == "xfs");
  CHECK(got["Status"]["labels"] == "app=pg");
  auto m = rig.mount(docker_name, "c1");
  CHECK(m["Mountpoint"] == rig.mounts + "/db");
  CHECK(rig.ok(Endpoint::kPath, {{"Name", docker_name}})["Mountpoint"] == rig.mounts + "/db");
  rig.unmount(docker_name, "c1");
  CHECK(rig.state->refs("db") == 0);
  rig.ok(Endpoint::kRemove, {{"Name", docker_name}});
  CHECK(rig.state->names().empty());
}

TEST_CASE("Mount and Unmount are counted by request ID") {
  Rig rig;
  rig.ok(Endpoint::kCreate, {{"Name", "v"}, {"Opts", {{"size", "1G"}}}});
  std::string path = rig.mounts + "/v";
  CHECK(rig.ok(Endpoint::kPath, {{"Name", "v"}})["Mountpoint"] == "");

  CHECK(rig.mount("v", "c1")["Mountpoint"] == path);
  CHECK(rig.state->count("mount") == 1);
  // The fresh filesystem's lost+found is gone, so Docker copies the image's files in.
  CHECK(fs::is_directory(path));
  CHECK(!fs::exists(path + "/lost+found"));
  CHECK(rig.saved()["volumes"]["v"] == Json{"c1"});

  rig.mount("v", "c2");
  rig.mount("v", "c1");  // Docker retrying: no new mount, no new ID
  CHECK(rig.state->count("mount") == 1);
  CHECK(rig.saved()["volumes"]["v"] == Json{"c1", "c2"});
  CHECK(rig.ok(Endpoint::kPath, {{"Name", "v"}})["Mountpoint"] == path);
  auto got = rig.ok(Endpoint::kGet, {{"Name", "v"}})["Volume"];
  CHECK(got["Mountpoint"] == path);
  CHECK(got["Status"]["docker_mounts"] == "2");
  CHECK(rig.ok(Endpoint::kList, Json::object())["Volumes"][0]["Mountpoint"] == path);

  // Remove is refused while containers use it.
  CHECK(contains(rig.fail(Endpoint::kRemove, {{"Name", "v"}}), "mounted for 2 container(s)"));

  rig.unmount("v", "c1");
  CHECK(rig.state->refs("v") == 1);
  rig.unmount("v", "c-unknown");  // not a holder: changes nothing
  rig.unmount("v", "c1");         // a repeat: changes nothing
  CHECK(rig.state->refs("v") == 1);
  CHECK(rig.state->count("unmount") == 0);
  rig.unmount("v", "c2");
  CHECK(rig.state->refs("v") == 0);
  CHECK(rig.state->count("unmount") == 1);
  CHECK(!fs::exists(path));
  CHECK(rig.saved()["volumes"].empty());
  rig.ok(Endpoint::kRemove, {{"Name", "v"}});
}

TEST_CASE("a restart keeps the count; a reboot and a reconcile drop what is stale") {
  Rig rig;
  rig.state->add("a", 1ull << 30);
  rig.state->add("b", 1ull << 30);
  rig.mount("a", "c1");
  rig.mount("a", "c2");

  SUBCASE("restart: the IDs come back, the last unmount unmounts") {
    rig.restart("boot-1");
    CHECK(rig.state->refs("a") == 1);
    rig.unmount("a", "c1");
    CHECK(rig.state->refs("a") == 1);
    rig.unmount("a", "c2");
    CHECK(rig.state->refs("a") == 0);
  }
  SUBCASE("reboot: no container of the old boot runs; their mount is undone") {
    rig.restart("boot-2");
    CHECK(rig.ids->count("a") == 0);
    CHECK(rig.state->refs("a") == 0);
    CHECK(rig.saved()["boot_id"] == "boot-2");
  }
  SUBCASE("IDs of a volume no longer mounted are forgotten") {
    // As if pxd unmounted but crashed before the plugin saved.
    {
      std::lock_guard<std::mutex> lock(rig.state->mu);
      rig.state->mount_refs.erase("a");
    }
    rig.restart("boot-1");
    CHECK(rig.ids->count("a") == 0);
    rig.mount("a", "c3");
    CHECK(rig.state->refs("a") == 1);
  }
  SUBCASE("a volume mounted for Docker that no ID holds is unmounted") {
    // As if the Mount was made but its ID never saved.
    {
      std::lock_guard<std::mutex> lock(rig.state->mu);
      rig.state->mount_refs["b"][rig.mounts + "/b"] = 1;
    }
    rig.restart("boot-1");
    CHECK(rig.state->refs("b") == 0);
    CHECK(rig.state->refs("a") == 1);
  }
  SUBCASE("a damaged ID file is an error naming it") {
    std::ofstream(rig.ids_path) << "{not json";
    auto loaded = MountIds::load(rig.ids_path, "boot-1");
    REQUIRE(loaded.has_error());
    CHECK(contains(loaded.error().message(), rig.ids_path));
  }
}

TEST_CASE("mounts of one volume run one at a time") {
  Rig rig;
  rig.state->add("v", 1ull << 30);
  auto first = rig.driver->handle(Endpoint::kMount, R"({"Name": "v", "ID": "c1"})");
  auto second = rig.driver->handle(Endpoint::kMount, R"({"Name": "v", "ID": "c2"})");
  auto other = rig.driver->handle(Endpoint::kGet, R"({"Name": "v"})");
  CHECK(first.wait(rig.ws).status == 200);
  CHECK(second.wait(rig.ws).status == 200);
  CHECK(other.wait(rig.ws).status == 200);
  CHECK(rig.state->count("mount") == 1);
  CHECK(rig.ids->count("v") == 2);
  // A call whose caller hung up still finishes.
  { auto dropped = rig.driver->handle(Endpoint::kUnmount, R"({"Name": "v", "ID": "c1"})"); }
  rig.unmount("v", "c2");
  CHECK(rig.state->refs("v") == 0);
  CHECK(rig.driver->in_flight() == 0);
}

TEST_CASE("Mount failures record nothing") {
  Rig rig;
  rig.state->add("v", 1ull << 30);
  rig.state->fail_next["mount"] = io_error("mkfs.ext4 failed");
  CHECK(contains(rig.fail(Endpoint::kMount, {{"Name", "v"}, {"ID", "c1"}}), "mkfs.ext4 failed"));
  CHECK(rig.ids->count("v") == 0);
  CHECK(contains(rig.fail(Endpoint::kMount, {{"Name", "nope"}, {"ID", "c1"}}),
                 "volume 'nope' does not exist"));

  SUBCASE("raw volumes say how to use the device instead") {
    rig.state->add("raw", 1ull << 30, "none");
    std::string e = rig.fail(Endpoint::kMount, {{"Name", "raw"}, {"ID", "c1"}});
    CHECK(contains(e, "has no filesystem"));
    CHECK(contains(e, "pxctl host attach raw"));
    CHECK(contains(e, "docker run --device /dev/pxd"));
    CHECK(rig.ids->count("raw") == 0);
  }
  SUBCASE("snapshots are not Docker volumes") {
    {
      std::lock_guard<std::mutex> lock(rig.state->mu);
      VolumeInfo s = rig.state->volumes["v"];
      s.name = "v-snap";
      s.is_snapshot = true;
      rig.state->volumes["v-snap"] = s;
    }
    CHECK(contains(rig.fail(Endpoint::kMount, {{"Name", "v-snap"}, {"ID", "c1"}}),
                   "--opt parent=v-snap"));
    CHECK(contains(rig.fail(Endpoint::kGet, {{"Name", "v-snap"}}), "is a snapshot"));
    CHECK(contains(rig.fail(Endpoint::kCreate, {{"Name", "v-snap"}}), "is a snapshot"));
    CHECK(rig.ok(Endpoint::kList, Json::object())["Volumes"].size() == 1);
  }
  SUBCASE("an ID that cannot be saved undoes the mount") {
    rig.ids.reset();
    auto loaded = MountIds::load(rig.dir / "missing-dir/ids.json", "boot-1");
    REQUIRE(loaded.has_value());
    rig.ids = std::make_unique<MountIds>(std::move(loaded).value());
    rig.driver = std::make_unique<Driver>(rig.service, *rig.ids, rig.mounts);
    CHECK(contains(rig.fail(Endpoint::kMount, {{"Name", "v"}, {"ID", "c1"}}), "missing-dir"));
    CHECK(rig.state->refs("v") == 0);
  }
}

TEST_CASE("IDs whose mount was released behind Docker's back are forgotten") {
  Rig rig;
  rig.state->add("v", 1ull << 30);
  rig.mount("v", "lost-container");
  CHECK(rig.fail(Endpoint::kRemove, {{"Name", "v"}}).find("mounted for 1 container(s)") !=
        std::string::npos);
  // As `pxctl host unmount v <mounts>/v` does after dockerd lost its containers.
  {
    std::lock_guard<std::mutex> lock(rig.state->mu);
    rig.state->mount_refs.erase("v");
  }
  SUBCASE("the next Mount starts a fresh count") {
    rig.mount("v", "new-container");
    CHECK(rig.ids->count("v") == 1);
    rig.unmount("v", "new-container");
    CHECK(rig.state->refs("v") == 0);
  }
  SUBCASE("Remove goes ahead") {
    rig.ok(Endpoint::kRemove, {{"Name", "v"}});
    CHECK(rig.ids->count("v") == 0);
    CHECK(rig.state->names().empty());
  }
}

TEST_CASE("Unmount after the volume was force-deleted behind Docker's back") {
  Rig rig;
  rig.state->add("v", 1ull << 30);
  rig.mount("v", "c1");
  {
    std::lock_guard<std::mutex> lock(rig.state->mu);
    rig.state->volumes.erase("v");
    rig.state->mount_refs.erase("v");
  }
  rig.unmount("v", "c1");
  CHECK(rig.ids->count("v") == 0);
}

TEST_CASE("Create with parent=: clones of snapshots and volumes") {
  Rig rig;
  rig.state->add("src", 2ull << 30);
  {
    std::lock_guard<std::mutex> lock(rig.state->mu);
    VolumeInfo s = rig.state->volumes["src"];
    s.name = "src-snap";
    s.is_snapshot = true;
    s.parent = "src";
    rig.state->volumes["src-snap"] = s;
  }
  rig.ok(Endpoint::kCreate, {{"Name", "c1"}, {"Opts", {{"parent", "src-snap"}}}});
  rig.ok(Endpoint::kCreate, {{"Name", "c1"}, {"Opts", {{"parent", "src-snap"}}}});  // again
  rig.ok(Endpoint::kCreate, {{"Name", "name=c2,parent=src"}, {"Opts", {{"size", "3G"}}}});
  {
    std::lock_guard<std::mutex> lock(rig.state->mu);
    CHECK(rig.state->volumes["c1"].parent == "src-snap");
    CHECK(rig.state->volumes["c2"].parent == "src");
    CHECK(rig.state->volumes["c2"].size_bytes == 3ull << 30);
  }
  CHECK(contains(rig.fail(Endpoint::kCreate, {{"Name", "c1"}, {"Opts", {{"parent", "src"}}}}),
                 "taken by a volume made from 'src-snap'"));
  CHECK(contains(rig.fail(Endpoint::kCreate, {{"Name", "c3"}, {"Opts", {{"parent", "nope"}}}}),
                 "parent 'nope' is neither a volume nor a snapshot"));
  CHECK(contains(
      rig.fail(Endpoint::kCreate, {{"Name", "c3"}, {"Opts", {{"parent", "src"}, {"size", "1G"}}}}),
      "cannot be smaller than its parent 'src' (2 GiB)"));
  CHECK(contains(
      rig.fail(Endpoint::kCreate, {{"Name", "c3"}, {"Opts", {{"parent", "src"}, {"fs", "xfs"}}}}),
      "keeps its parent's filesystem (ext4)"));
  // A failed grow takes the clone away again.
  rig.state->fail_next["resize"] = no_space("the pool is full");
  CHECK(contains(
      rig.fail(Endpoint::kCreate, {{"Name", "c3"}, {"Opts", {{"parent", "src"}, {"size", "9G"}}}}),
      "the pool is full"));
  auto names = rig.state->names();
  CHECK(std::find(names.begin(), names.end(), "c3") == names.end());
}

TEST_CASE("bad input: the protocol's error reply, and nothing changes") {
  Rig rig;
  rig.state->add("keep", 1ull << 30);
  auto before = rig.state->names();
  CHECK(contains(rig.fail(Endpoint::kCreate, {{"Name", "x"}, {"Opts", {{"sise", "1G"}}}}),
                 "valid options: block_size, fs, label, parent, repl, size"));
  CHECK(contains(rig.fail(Endpoint::kCreate, {{"Name", "x"}, {"Opts", {{"size", "lots"}}}}),
                 "invalid size 'lots'"));
  CHECK(contains(rig.fail(Endpoint::kCreate, {{"Name", "a/b"}}), "contains '/'"));
  CHECK(contains(rig.fail(Endpoint::kCreate, {{"Name", ".."}}), "contains '..'"));
  CHECK(contains(rig.fail(Endpoint::kMount, {{"Name", "../keep"}, {"ID", "c"}}), "'/'"));
  CHECK(contains(rig.fail(Endpoint::kRemove, {{"Name", "x/.."}}), "'/'"));
  CHECK(contains(rig.fail(Endpoint::kRemove, {{"Name", "gone"}}), "does not exist"));
  for (const char* body : {"", "{", "[]", "{\"Name\": 1}", "{\"Name\": \"v\", \"Opts\": 5}"}) {
    Reply r = rig.call(Endpoint::kCreate, body);
    CHECK_MESSAGE(r.status == 400, body);
    CHECK(Json::parse(r.body)["Err"] != "");
  }
  Reply big = rig.call(Endpoint::kCreate, std::string(docker::kMaxBodyBytes + 1, ' '));
  CHECK(big.status == 400);
  CHECK(rig.state->names() == before);
  CHECK(rig.state->count("create") == 0);
  CHECK(rig.state->count("mount") == 0);
  CHECK(rig.state->count("remove") == 1);  // only the well-formed "gone"
}

}  // namespace
}  // namespace pxd::testing
