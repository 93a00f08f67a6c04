// What pxctl prints: JSON per doc/control-api.md and aligned human tables.
#include "tools/pxctl/render.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>
#include <sstream>

#include "common/units.h"
#include "tools/pxctl/output.h"

namespace pxd::pxctl {

namespace {

void fill_volume(proto::Volume::Builder v) {
  v.setId(3);
  v.setName("db");
  v.setSizeBytes(10 * kGiB);
  v.setBlockSize(4096);
  v.setFs("ext4");
  auto labels = v.initLabels(2);
  labels[0].setKey("app");
  labels[0].setValue("pg");
  labels[1].setKey("tier");
  labels[1].setValue("gold");
  auto snaps = v.initSnapshots(1);
  snaps.set(0, "db-s1");
  v.setExclusiveBytes(kMiB);
  v.setSharedBytes(2 * kMiB);
  v.setState("detached");
  v.setCreatedUnix(1795000000);
  v.setReplicas(1);
  v.setPool("default");
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("volume JSON has the documented shape") {
  capnp::MallocMessageBuilder message;
  auto v = message.initRoot<proto::Volume>();
  fill_volume(v);
  Json json = volume_json(v.asReader());
  CHECK(json.dump() ==
        R"({"id":3,"name":"db","is_snapshot":false,"size":10737418240,"block_size":4096,)"
        R"("fs":"ext4","labels":{"app":"pg","tier":"gold"},"parent":null,"snapshots":["db-s1"],)"
        R"("exclusive_bytes":1048576,"shared_bytes":2097152,"device_path":null,)"
        R"("state":"detached","mounts":[],"frontend":null,"attach_error":null,)"
        R"("device_size":null,"replicas":1,)"
              R"("pool":"default","created":1795000000})");
  // What scripts get is parseable text.
  CHECK(nlohmann::json::parse(json_text(json))["size"] == 10 * kGiB);
}

TEST_CASE("volume JSON: parent and device path are strings when set") {
  capnp::MallocMessageBuilder message;
  auto v = message.initRoot<proto::Volume>();
  fill_volume(v);
  v.setIsSnapshot(true);
  v.setParent("db");
  v.setDevicePath("/dev/pxd3");
  v.initLabels(0);
  Json json = volume_json(v.asReader());
  CHECK(json["parent"] == "db");
  CHECK(json["device_path"] == "/dev/pxd3");
  CHECK(json["is_snapshot"] == true);
  CHECK(json["labels"].is_object());
  CHECK(json["labels"].empty());
}

TEST_CASE("JSON survives invalid UTF-8 from the server") {
  capnp::MallocMessageBuilder message;
  auto v = message.initRoot<proto::Volume>();
  fill_volume(v);
  v.setName("bad\xff");
  std::string text = json_text(volume_json(v.asReader()));
  CHECK(nlohmann::json::parse(text)["id"] == 3);
}

TEST_CASE("pool and node JSON") {
  capnp::MallocMessageBuilder message;
  auto node = message.initRoot<proto::NodeStatus>();
  node.setNodeName("n1");
  node.setVersion("0.1.0");
  node.setApiVersion(1);
  node.setUptimeSeconds(90);
  node.setCluster("none (single node)");
  auto pool = node.initPools(1)[0];
  pool.setName("default");
  pool.setUuid("u-1");
  pool.setChunkSize(4 * kMiB);
  pool.setCapacityBytes(100 * kGiB);
  pool.setUsedBytes(kGiB);
  pool.setFreeBytes(99 * kGiB);
  pool.initDevices(1).set(0, "/var/lib/pxd/pool.img");
  pool.setVolumes(2);
  Json json = node_json(node.asReader());
  CHECK(json["node_name"] == "n1");
  CHECK(json["uptime_seconds"] == 90);
  CHECK(json["labels"].is_object());
  REQUIRE(json["pools"].size() == 1);
  Json p = json["pools"][0];
  CHECK(p.dump() ==
        R"({"name":"default","uuid":"u-1","chunk_size":4194304,"capacity_bytes":107374182400,)"
        R"("used_bytes":1073741824,"free_bytes":106300440576,"reclaiming_bytes":0,)"
        R"("metadata_bytes":0,"devices":["/var/lib/pxd/pool.img"],"volumes":2,"snapshots":0})");
}

TEST_CASE("tables align columns, right-align numbers and end lines without spaces") {
  Table table({{"ID", Table::Align::kRight}, {"NAME"}, {"SIZE", Table::Align::kRight}, {"X"}});
  table.add_row({"3", "db", "10 GiB", ""});
  table.add_row({"12", "längername", "512 MiB", "-"});
  CHECK(table.render() ==
        "ID  NAME           SIZE  X\n"
        " 3  db           10 GiB\n"
        "12  längername  512 MiB  -\n");
  CHECK(Table({{"A"}, {"B"}}).render() == "A  B\n");
}

TEST_CASE("volume table shows human sizes, used = exclusive + shared, dashes for none") {
  capnp::MallocMessageBuilder message;
  auto v = message.initRoot<proto::Volume>();
  fill_volume(v);
  auto out = lines(volume_table({v.asReader()}));
  REQUIRE(out.size() == 2);
  CHECK(out[0] == "ID  NAME    SIZE   USED  FS    REPL  STATE     DEVICE  LABELS");
  CHECK(out[1] == " 3  db    10 GiB  3 MiB  ext4     1  detached  -       app=pg,tier=gold");
}

TEST_CASE("snapshot and pool tables") {
  setenv("TZ", "UTC", 1);
  tzset();
  capnp::MallocMessageBuilder message;
  auto s = message.initRoot<proto::Volume>();
  fill_volume(s);
  s.setName("db-s1");
  s.setIsSnapshot(true);
  s.setParent("db");
  auto out = lines(snapshot_table({s.asReader()}));
  REQUIRE(out.size() == 2);
  CHECK(out[0] == "ID  NAME   VOLUME    SIZE  EXCLUSIVE  SHARED  CREATED");
  CHECK(out[1] == " 3  db-s1  db      10 GiB      1 MiB   2 MiB  2026-11-18 11:06:40");

  capnp::MallocMessageBuilder pools_message;
  auto pools = pools_message.initRoot<proto::NodeStatus>().initPools(1);
  pools[0].setName("default");
  pools[0].setUuid("u-1");
  pools[0].setChunkSize(4 * kMiB);
  pools[0].setCapacityBytes(100 * kGiB);
  pools[0].setUsedBytes(kGiB + kGiB / 2);
  pools[0].setFreeBytes(98 * kGiB + kGiB / 2);
  auto devices = pools[0].initDevices(2);
  devices.set(0, "/dev/sdb");
  devices.set(1, "/dev/sdc");
  out = lines(pool_table(pools.asReader()));
  REQUIRE(out.size() == 2);
  CHECK(out[0] == "NAME     UUID  CAPACITY     USED      FREE  CHUNK  DEVICES");
  CHECK(out[1] == "default  u-1    100 GiB  1.5 GiB  98.5 GiB  4 MiB  /dev/sdb,/dev/sdc");
}

TEST_CASE("inspect block lines up its values") {
  capnp::MallocMessageBuilder message;
  auto v = message.initRoot<proto::Volume>();
  fill_volume(v);
  v.setParent("golden");
  auto out = lines(volume_block(v.asReader()));
  CHECK(out[0] == "Name:        db");
  CHECK(out[2] == "Type:        clone of golden");
  CHECK(out[3] == "Size:        10 GiB");
  CHECK(out[9] == "Device:      -");
  CHECK(out[10] == "Mounts:      -");
  CHECK(out[11] == "Labels:      app=pg,tier=gold");
  CHECK(out[12] == "Snapshots:   1 (db-s1)");
}

TEST_CASE("durations and times") {
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(59) == "59s");
  CHECK(format_duration(192) == "3m 12s");
  CHECK(format_duration(5 * 3600 + 180 + 7) == "5h 3m");
  CHECK(format_duration(12 * 86400 + 4 * 3600) == "12d 4h");
  CHECK(format_time(0) == "-");
  CHECK(key_value_block({{"A", "1"}, {"Long key", ""}}) == "A:         1\nLong key:\n");
}

}  // namespace pxd::pxctl
