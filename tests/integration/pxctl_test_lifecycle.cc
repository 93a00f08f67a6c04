// pxctl end to end, part 1: the lifecycle of volumes, snapshots and clones through the real
// pxctl binary against a real pxd, with the -j output checked field by field, and the
// tables people read.
#include <doctest/doctest.h>

#include <algorithm>
#include <ctime>

#include "tests/integration/pxctl_test_support.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using testing::describe;
using testing::error_mismatch;
using testing::Json;
using testing::kGiB;
using testing::kMiB;
using testing::line_with;
using testing::names_of;
using testing::ok_json;
using testing::pxctl_json;
using testing::PxdProcess;
using testing::TempDir;

// What a freshly made, never attached volume or snapshot looks like.
struct Expected {
  std::string name;
  bool is_snapshot = false;
  uint64_t size = 0;
  uint32_t block_size = 4096;
  std::string fs = "ext4";
  Json labels = Json::object();
  Json parent = nullptr;
  Json snapshots = Json::array();
};

// Takes a copy: a missing field then reads as null instead of asserting.
void check_volume(Json v, const Expected& e) {
  INFO("volume ", e.name, ": ", v.dump());
  REQUIRE(v.is_object());
  CHECK(v.size() == 20);  // no field more or less than doc/control-api.md lists
  CHECK(v["id"].is_number_unsigned());
  CHECK(v["id"].get<uint64_t>() > 0);
  CHECK(v["name"] == e.name);
  CHECK(v["is_snapshot"] == e.is_snapshot);
  CHECK(v["size"] == e.size);
  CHECK(v["block_size"] == e.block_size);
  CHECK(v["fs"] == e.fs);
  CHECK(v["labels"] == e.labels);
  CHECK(v["parent"] == e.parent);
  CHECK(v["snapshots"] == e.snapshots);
  // Nothing was written, so nothing is allocated.
  CHECK(v["exclusive_bytes"] == 0);
  CHECK(v["shared_bytes"] == 0);
  CHECK(v["device_path"].is_null());
  CHECK(v["state"] == "detached");
  CHECK(v["mounts"] == Json::array());
  CHECK(v["frontend"].is_null());
  CHECK(v["attach_error"].is_null());
  CHECK(v["device_size"].is_null());
  CHECK(v["replicas"] == 1);
  CHECK(v["pool"] == "default");
  REQUIRE(v["created"].is_number_integer());
  int64_t now = std::time(nullptr);
  CHECK(v["created"].get<int64_t>() > now - 600);
  CHECK(v["created"].get<int64_t>() <= now);
}

// Runs pxctl -j ARGS expecting a clean failure.
void check_fails(const std::string& socket, const std::vector<std::string>& args, int exit_code,
                 const std::string& needle) {
  auto result = pxctl_json(socket, args);
  std::string wrong = error_mismatch(result, exit_code, needle);
  CHECK_MESSAGE(wrong.empty(), wrong << "\n" << describe(args, result));
}

TEST_CASE("status -j and service pool show -j describe the node and its empty pool") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE_MESSAGE(pxd.start(), pxd.log());

  Json pools = ok_json(pxd.socket(), {"service", "pool", "show"});
  REQUIRE(pools.is_array());
  REQUIRE(pools.size() == 1);
  Json pool = pools[0];
  INFO(pool.dump());
  CHECK(pool.size() == 11);
  CHECK(pool["name"] == "default");
  CHECK(pool["uuid"].get<std::string>().size() >= 16);
  uint64_t chunk = pool["chunk_size"].get<uint64_t>();
  CHECK(chunk >= 4096);
  CHECK((chunk & (chunk - 1)) == 0);
  uint64_t capacity = pool["capacity_bytes"].get<uint64_t>();
  CHECK(capacity > 3 * kGiB);  // the 4G pool file less what metadata keeps
  CHECK(capacity <= 4 * kGiB);
  CHECK(capacity % chunk == 0);
  CHECK(pool["used_bytes"] == 0);
  uint64_t free_bytes = pool["free_bytes"].get<uint64_t>();
  CHECK(free_bytes > 0);
  CHECK(free_bytes + pool["reclaiming_bytes"].get<uint64_t>() <= capacity);
  CHECK(pool["metadata_bytes"].get<uint64_t>() > 0);
  CHECK(pool["devices"] == Json::array({dir / "pool0.img"}));
  CHECK(pool["volumes"] == 0);
  CHECK(pool["snapshots"] == 0);

  Json status = ok_json(pxd.socket(), {"status"});
  REQUIRE(status.is_object());
  INFO(status.dump());
  CHECK(status.size() == 13);
  CHECK(status["node_name"].is_string());
  CHECK(!status["node_name"].get<std::string>().empty());
  CHECK(status["version"].is_string());
  CHECK(!status["version"].get<std::string>().empty());
  CHECK(status["api_version"] == 1);
  CHECK(status["labels"] == Json::object());
  CHECK(status["uptime_seconds"].is_number_unsigned());
  CHECK(status["uptime_seconds"].get<uint64_t>() < 600);
  CHECK(status["data_dir"] == pxd.data_dir());
  CHECK(status["cluster"] == "none (single node)");
  CHECK(status["frontend"].is_string());
  CHECK(status["nbd_socket"] == dir.path() + "/run/nbd.sock");
  CHECK(status["docker_plugin_socket"].is_null());  // PxdProcess disables the plugin
  CHECK(status["pools"] == pools);
  CHECK(status["volumes"] == 0);
  CHECK(status["snapshots"] == 0);

  // Counts follow what exists.
  ok_json(pxd.socket(), {"volume", "create", "v", "--size", "1"});
  ok_json(pxd.socket(), {"volume", "snapshot", "create", "v", "--name", "v-s"});
  status = ok_json(pxd.socket(), {"status"});
  CHECK(status["volumes"] == 1);
  CHECK(status["snapshots"] == 1);
  CHECK(status["pools"][0]["volumes"] == 1);
  CHECK(status["pools"][0]["snapshots"] == 1);
  CHECK(status["pools"][0]["used_bytes"] == 0);  // thin: nothing written
  CHECK(pxd.stop() == 0);
}

TEST_CASE("volume create, list, inspect and update through pxctl -j") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  const std::string& sock = pxd.socket();

  Json ten = ok_json(sock, {"volume", "create", "ten", "--size", "10"});
  check_volume(ten, {.name = "ten", .size = 10 * kGiB});
  Json half = ok_json(sock, {"volume", "create", "half", "--size", "512M", "--block_size", "512"});
  check_volume(half, {.name = "half", .size = 512 * kMiB, .block_size = 512});
  Json xfs = ok_json(
      sock, {"volume", "create", "xfs", "--size", "1.5G", "--fs", "xfs", "--label", "a=1,b=2"});
  check_volume(
      xfs, {.name = "xfs", .size = 3 * kGiB / 2, .fs = "xfs", .labels = {{"a", "1"}, {"b", "2"}}});
  CHECK(ten["id"] != half["id"]);
  CHECK(half["id"] != xfs["id"]);

  SUBCASE("create is idempotent by name and spec") {
    // Labels in another order and split over two flags are the same spec.
    Json again = ok_json(sock, {"volume", "create", "xfs", "--size", "1536M", "--fs", "xfs",
                                "--label", "b=2", "--label", "a=1"});
    CHECK(again == xfs);
    CHECK(ok_json(sock, {"volume", "create", "ten", "-s", "10G"}) == ten);
    check_fails(sock,
                {"volume", "create", "xfs", "--size", "2G", "--fs", "xfs", "--label", "a=1,b=2"}, 4,
                "size is 1.5 GiB, not 2 GiB");
    check_fails(sock, {"volume", "create", "ten", "--size", "10", "--fs", "xfs"}, 4,
                "filesystem is ext4, not xfs");
    check_fails(sock, {"volume", "create", "half", "--size", "512M"}, 4,
                "block size is 512, not 4096");
    check_fails(sock, {"volume", "create", "ten", "--size", "10", "--label", "x=y"}, 4,
                "labels differ");
    // Nothing changed on the way.
    CHECK(ok_json(sock, {"volume", "inspect", "xfs"}) == xfs);
    CHECK(ok_json(sock, {"volume", "list"}).size() == 3);
  }

  SUBCASE("list, with a label selector and with --all") {
    Json all = ok_json(sock, {"volume", "list"});
    CHECK(all == Json::array({ten, half, xfs}));
    CHECK(ok_json(sock, {"volume", "ls", "--label", "a=1"}) == Json::array({xfs}));
    CHECK(ok_json(sock, {"volume", "list", "--label", "a=1,b=2"}) == Json::array({xfs}));
    CHECK(ok_json(sock, {"volume", "list", "--label", "a=1", "--label", "b=3"}) == Json::array());
    CHECK(ok_json(sock, {"volume", "list", "--label", "zzz=1"}) == Json::array());
    ok_json(sock, {"volume", "snapshot", "create", "xfs", "--name", "xfs-s", "--label", "a=1"});
    CHECK(names_of(ok_json(sock, {"volume", "list"})) ==
          std::vector<std::string>{"ten", "half", "xfs"});
    CHECK(names_of(ok_json(sock, {"volume", "list", "--all"})) ==
          std::vector<std::string>{"ten", "half", "xfs", "xfs-s"});
    CHECK(names_of(ok_json(sock, {"volume", "list", "-a", "--label", "a=1"})) ==
          std::vector<std::string>{"xfs", "xfs-s"});
  }

  SUBCASE("inspect one name or several") {
    CHECK(ok_json(sock, {"volume", "inspect", "half"}) == half);
    CHECK(ok_json(sock, {"volume", "inspect", "xfs", "ten"}) == Json::array({xfs, ten}));
    // One unknown name fails the whole command and prints nothing else.
    check_fails(sock, {"volume", "inspect", "ten", "nope", "half"}, 3, "nope");
  }

  SUBCASE("update grows, refuses to shrink, merges and removes labels") {
    Json grown = ok_json(sock, {"volume", "update", "ten", "--size", "20"});
    Json expect = ten;
    expect["size"] = 20 * kGiB;
    CHECK(grown == expect);
    CHECK(ok_json(sock, {"volume", "inspect", "ten"}) == expect);
    check_fails(sock, {"volume", "update", "ten", "--size", "5"}, 2, "volumes only grow");
    check_fails(sock, {"volume", "update", "ten", "--size", "20G", "--label", "x"}, 2, "'x'");
    CHECK(ok_json(sock, {"volume", "inspect", "ten"})["size"] == 20 * kGiB);
    // The same size again changes nothing and is no error.
    CHECK(ok_json(sock, {"volume", "update", "ten", "--size", "20G"}) == expect);

    Json merged = ok_json(sock, {"volume", "update", "xfs", "--label", "c=3"});
    CHECK(merged["labels"] == Json{{"a", "1"}, {"b", "2"}, {"c", "3"}});
    Json removed = ok_json(sock, {"volume", "update", "xfs", "--label", "a=,b=9"});
    CHECK(removed["labels"] == Json{{"b", "9"}, {"c", "3"}});
    CHECK(removed["size"] == 3 * kGiB / 2);
    CHECK(ok_json(sock, {"volume", "inspect", "xfs"})["labels"] == removed["labels"]);
    // Both at once.
    Json both = ok_json(sock, {"volume", "update", "half", "--size", "1G", "-l", "tier=gold"});
    CHECK(both["size"] == kGiB);
    CHECK(both["labels"] == Json{{"tier", "gold"}});
    CHECK(ok_json(sock, {"volume", "list", "--label", "tier=gold"}) == Json::array({both}));
  }

  SUBCASE("--repl 2 needs a cluster") {
    check_fails(sock, {"volume", "create", "r2", "--size", "1", "--repl", "2"}, 1,
                "needs a cluster");
    check_fails(sock, {"volume", "create", "r4", "--size", "1", "--repl", "4"}, 2, "4");
    CHECK(ok_json(sock, {"volume", "list"}).size() == 3);
  }
  CHECK(pxd.stop() == 0);
}

TEST_CASE("snapshots, clones, restore and delete through pxctl -j") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  const std::string& sock = pxd.socket();

  Json db = ok_json(sock, {"volume", "create", "db", "--size", "10", "--label", "app=pg"});
  Json web = ok_json(sock, {"volume", "create", "web", "--size", "1.5G", "--fs", "xfs"});

  Json s1 = ok_json(sock, {"volume", "snapshot", "create", "db", "--name", "db-s1", "-l", "k=v"});
  check_volume(s1, {.name = "db-s1",
                    .is_snapshot = true,
                    .size = 10 * kGiB,
                    .labels = {{"k", "v"}},
                    .parent = "db"});
  // A snapshot keeps the size its volume had.
  ok_json(sock, {"volume", "update", "db", "--size", "12"});
  Json s2 = ok_json(sock, {"volume", "snap", "create", "db", "-n", "db-s2"});
  check_volume(s2, {.name = "db-s2", .is_snapshot = true, .size = 12 * kGiB, .parent = "db"});
  Json web_s = ok_json(sock, {"volume", "snapshot", "create", "web", "--name", "web-s"});
  CHECK(web_s["parent"] == "web");
  CHECK(web_s["size"] == 3 * kGiB / 2);
  // A snapshot describes the filesystem its volume was made with.
  CHECK_MESSAGE(web_s["fs"] == "xfs", "snapshot of an xfs volume reports fs ", web_s["fs"]);

  Json db_now = ok_json(sock, {"volume", "inspect", "db"});
  check_volume(db_now, {.name = "db",
                        .size = 12 * kGiB,
                        .labels = {{"app", "pg"}},
                        .snapshots = {"db-s1", "db-s2"}});
  CHECK(db_now["id"] == db["id"]);
  CHECK(ok_json(sock, {"volume", "inspect", "db-s1"}) == s1);

  // Taking a snapshot under a taken name changes nothing.
  check_fails(sock, {"volume", "snapshot", "create", "web", "--name", "db-s1"}, 4, "db-s1");
  check_fails(sock, {"volume", "snapshot", "create", "db", "--name", "web"}, 4, "web");

  CHECK(ok_json(sock, {"volume", "snapshot", "list"}) == Json::array({s1, s2, web_s}));
  CHECK(ok_json(sock, {"volume", "snapshot", "ls", "db"}) == Json::array({s1, s2}));
  CHECK(ok_json(sock, {"volume", "snapshot", "list", "web"}) == Json::array({web_s}));
  ok_json(sock, {"volume", "create", "lonely", "--size", "1"});
  CHECK(ok_json(sock, {"volume", "snapshot", "list", "lonely"}) == Json::array());

  // A clone of a snapshot and a clone of a volume: writable volumes naming their origin.
  Json c1 = ok_json(sock, {"volume", "clone", "db-s1", "--name", "db-c1", "--label", "clone=1"});
  check_volume(c1,
               {.name = "db-c1", .size = 10 * kGiB, .labels = {{"clone", "1"}}, .parent = "db-s1"});
  Json c2 = ok_json(sock, {"volume", "clone", "web", "-n", "web-c"});
  check_volume(c2, {.name = "web-c", .size = 3 * kGiB / 2, .fs = "xfs", .parent = "web"});
  Json c3 = ok_json(sock, {"volume", "clone", "web-s", "-n", "web-sc"});
  CHECK(c3["parent"] == "web-s");
  CHECK(c3["size"] == 3 * kGiB / 2);
  // A clone of an xfs volume's snapshot holds that xfs filesystem: a later mount must not
  // make ext4 over it.
  CHECK_MESSAGE(c3["fs"] == "xfs", "clone of a snapshot of an xfs volume reports fs ", c3["fs"]);
  // Clones can be snapshotted and grown like any volume.
  Json c1s = ok_json(sock, {"volume", "snapshot", "create", "db-c1", "-n", "db-c1-s"});
  CHECK(c1s["parent"] == "db-c1");
  CHECK(ok_json(sock, {"volume", "update", "db-c1", "--size", "11"})["size"] == 11 * kGiB);
  CHECK(ok_json(sock, {"volume", "inspect", "db"})["snapshots"] == Json::array({"db-s1", "db-s2"}));

  // Restore gives back the volume, still a volume with all its snapshots.
  Json restored = ok_json(sock, {"volume", "restore", "db", "--snapshot", "db-s1"});
  INFO(restored.dump());
  CHECK(restored["name"] == "db");
  CHECK(restored["id"] == db["id"]);
  CHECK(restored["is_snapshot"] == false);
  CHECK(restored["parent"].is_null());
  CHECK(restored["labels"] == Json{{"app", "pg"}});
  CHECK(restored["snapshots"] == Json::array({"db-s1", "db-s2"}));
  CHECK(restored["state"] == "detached");
  CHECK(ok_json(sock, {"volume", "inspect", "db"}) == restored);
  CHECK(ok_json(sock, {"volume", "inspect", "db-s1"}) == s1);  // the snapshot is untouched
  CHECK(ok_json(sock, {"volume", "restore", "db", "-s", "db-s2"})["name"] == "db");

  // A volume with snapshots stays; its snapshots go one by one.
  check_fails(sock, {"volume", "delete", "db"}, 4, "has 2 snapshots; delete them first");
  CHECK(ok_json(sock, {"volume", "inspect", "db"})["snapshots"].size() == 2);
  CHECK(ok_json(sock, {"volume", "snapshot", "delete", "db-s2"}) ==
        Json{{"name", "db-s2"}, {"deleted", true}});
  check_fails(sock, {"volume", "inspect", "db-s2"}, 3, "db-s2");
  CHECK(ok_json(sock, {"volume", "inspect", "db"})["snapshots"] == Json::array({"db-s1"}));
  check_fails(sock, {"volume", "delete", "db"}, 4, "has 1 snapshots");
  CHECK(ok_json(sock, {"volume", "snapshot", "rm", "db-s1"}) ==
        Json{{"name", "db-s1"}, {"deleted", true}});
  // The clone outlives its origin snapshot.
  Json orphan = ok_json(sock, {"volume", "inspect", "db-c1"});
  CHECK(orphan["id"] == c1["id"]);
  CHECK(ok_json(sock, {"volume", "delete", "db"}) == Json{{"name", "db"}, {"deleted", true}});
  check_fails(sock, {"volume", "inspect", "db"}, 3, "db");
  check_fails(sock, {"volume", "delete", "db"}, 3, "db");

  // A clone of a volume does not hold the volume.
  CHECK(ok_json(sock, {"volume", "snapshot", "delete", "web-s"})["deleted"] == true);
  CHECK(ok_json(sock, {"volume", "rm", "web"})["deleted"] == true);
  CHECK(ok_json(sock, {"volume", "inspect", "web-c"})["id"] == c2["id"]);

  // Everything goes, and the pool is empty again.
  CHECK(ok_json(sock, {"volume", "snapshot", "delete", "db-c1-s"})["deleted"] == true);
  for (const char* name : {"db-c1", "web-c", "web-sc", "lonely"})
    CHECK(ok_json(sock, {"volume", "delete", name})["deleted"] == true);
  CHECK(ok_json(sock, {"volume", "list", "--all"}) == Json::array());
  Json pool = ok_json(sock, {"service", "pool", "show"})[0];
  CHECK(pool["used_bytes"] == 0);
  CHECK(pool["volumes"] == 0);
  CHECK(pool["snapshots"] == 0);
  CHECK(pxd.stop() == 0);
}

// Screen columns `text` takes: bytes that do not continue a UTF-8 sequence.
size_t width(const std::string& text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

// The column of `header` where `title` begins.
size_t column(const std::string& header, const std::string& title) {
  size_t at = header.find(title);
  REQUIRE_MESSAGE(at != std::string::npos, title << " in " << header);
  return at;
}

TEST_CASE("without -j: aligned tables and human sizes") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  const std::string& sock = pxd.socket();
  ok_json(sock, {"volume", "create", "a", "--size", "10"});
  ok_json(sock, {"volume", "create", "a-much-longer-name", "--size", "512M", "--fs", "xfs",
                 "--label", "app=pg,tier=gold"});
  ok_json(sock, {"volume", "create", "c", "--size", "1.5G", "--fs", "none"});
  ok_json(sock, {"volume", "create", "caf\u00e9", "--size", "100M"});
  ok_json(sock, {"volume", "snapshot", "create", "a", "--name", "a-snap"});
  ok_json(sock, {"volume", "clone", "a-snap", "--name", "a-clone"});

  auto list = testing::pxctl(sock, {"volume", "list"});
  REQUIRE_MESSAGE(list.exit_code == 0, list.err);
  INFO(list.out);
  std::string header = list.out.substr(0, list.out.find('\n'));
  CHECK(header.rfind("ID", 0) == 0);
  size_t name_col = column(header, "NAME");
  size_t size_end = column(header, "SIZE") + 4;  // right-aligned
  size_t fs_col = column(header, "FS");
  size_t labels_col = column(header, "LABELS");
  struct Row {
    std::string name, size, fs, labels;
  };
  for (const Row& row :
       std::vector<Row>{{"a", "10 GiB", "ext4", "-"},
                        {"a-much-longer-name", "512 MiB", "xfs", "app=pg,tier=gold"},
                        {"c", "1.5 GiB", "none", "-"},
                        {"caf\u00e9", "100 MiB", "ext4", "-"},
                        {"a-clone", "10 GiB", "ext4", "-"}}) {
    INFO(row.name);
    std::string line = line_with(list.out, " " + row.name + " ");
    REQUIRE(!line.empty());
    // Columns line up on the screen, where a multi-byte character takes one column.
    size_t name_at = line.find(" " + row.name + " ") + 1;
    CHECK(width(line.substr(0, name_at)) == name_col);
    size_t size_at = line.find(" " + row.size + " ", name_at + row.name.size()) + 1;
    CHECK(width(line.substr(0, size_at + row.size.size())) == size_end);
    size_t fs_at = line.find(" " + row.fs + " ", size_at + row.size.size()) + 1;
    CHECK(width(line.substr(0, fs_at)) == fs_col);
    CHECK(width(line) == labels_col + row.labels.size());
    CHECK(line.compare(line.size() - row.labels.size(), row.labels.size(), row.labels) == 0);
  }
  CHECK(list.out.find("a-snap") == std::string::npos);  // not without --all
  CHECK(std::count(list.out.begin(), list.out.end(), '\n') == 6);
  auto all = testing::pxctl(sock, {"volume", "list", "--all"});
  CHECK(all.out.find("a-snap") != std::string::npos);

  auto inspect = testing::pxctl(sock, {"volume", "inspect", "a-much-longer-name", "a-clone"});
  REQUIRE_MESSAGE(inspect.exit_code == 0, inspect.err);
  INFO(inspect.out);
  // Every "Key:" line's value starts in the same column.
  std::string first = line_with(inspect.out, "Name:");
  size_t value_col = first.find("a-much-longer-name");
  for (const char* key : {"Size:", "Block size:", "Filesystem:", "Labels:", "Type:", "State:"}) {
    std::string line = line_with(inspect.out, key);
    CHECK_MESSAGE(line.find_first_not_of(' ', std::string(key).size()) == value_col, key);
  }
  CHECK(line_with(inspect.out, "Size:").find("512 MiB") != std::string::npos);
  CHECK(line_with(inspect.out, "Filesystem:").find("xfs") != std::string::npos);
  CHECK(line_with(inspect.out, "Labels:").find("app=pg,tier=gold") != std::string::npos);
  CHECK(line_with(inspect.out, "Type:").find("volume") != std::string::npos);
  CHECK(inspect.out.find("clone of a-snap") != std::string::npos);
  auto snap = testing::pxctl(sock, {"volume", "inspect", "a-snap"});
  CHECK(snap.out.find("snapshot of a") != std::string::npos);
  CHECK(line_with(snap.out, "Size:").find("10 GiB") != std::string::npos);

  auto snaps = testing::pxctl(sock, {"volume", "snapshot", "list"});
  REQUIRE_MESSAGE(snaps.exit_code == 0, snaps.err);
  std::string snap_header = snaps.out.substr(0, snaps.out.find('\n'));
  std::string snap_line = line_with(snaps.out, "a-snap");
  CHECK(snap_line.compare(column(snap_header, "VOLUME"), 2, "a ") == 0);
  CHECK(snap_line.compare(column(snap_header, "SIZE") + 4 - 6, 6, "10 GiB") == 0);

  auto status = testing::pxctl(sock, {"status"});
  REQUIRE_MESSAGE(status.exit_code == 0, status.err);
  INFO(status.out);
  CHECK(line_with(status.out, "Volumes:").find("5 volumes, 1 snapshots") != std::string::npos);
  CHECK(line_with(status.out, "Cluster:").find("none (single node)") != std::string::npos);
  CHECK(line_with(status.out, "Data dir:").find(pxd.data_dir()) != std::string::npos);
  CHECK(line_with(status.out, "Uptime:").find('s') != std::string::npos);
  std::string pool_header = line_with(status.out, "CAPACITY");
  std::string pool_line = line_with(status.out, "default");
  REQUIRE(!pool_header.empty());
  size_t capacity_end = column(pool_header, "CAPACITY") + 8;
  CHECK(pool_line.compare(capacity_end - 3, 3, "GiB") == 0);
  size_t used_end = column(pool_header, "USED") + 4;
  CHECK(pool_line.compare(used_end - 3, 3, "0 B") == 0);
  CHECK(pool_line.find(dir / "pool0.img") != std::string::npos);

  auto created = testing::pxctl(sock, {"volume", "create", "d", "--size", "2T"});
  CHECK(created.out.find("Volume created: d") == 0);
  CHECK(created.out.find("2 TiB") != std::string::npos);
  CHECK(pxd.stop() == 0);
}

}  // namespace
}  // namespace pxd
