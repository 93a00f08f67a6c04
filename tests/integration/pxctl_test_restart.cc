// pxctl end to end, part 2: what pxctl shows survives pxd restarting, after a clean SIGTERM
// and after SIGKILL. Every change pxctl reported as done was durable before pxctl heard of
// it, so a SIGKILL right after it loses nothing.
#include <doctest/doctest.h>

#include <optional>

#include "tests/integration/pxctl_test_support.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using testing::Json;
using testing::ok_json;
using testing::PxdProcess;
using testing::TempDir;

// The size of the metadata store's files is no state: reopening the store replays its
// write-ahead log into a table and drops the log, so the number changes.
void forget_metadata_bytes(Json& pools) {
  if (!pools.is_array()) return;
  for (auto& pool : pools) pool.erase("metadata_bytes");
}

// Everything a user can see of the node but its uptime and metadata_bytes.
Json visible_state(const std::string& socket) {
  Json status = ok_json(socket, {"status"});
  Json pools = ok_json(socket, {"service", "pool", "show"});
  if (status.is_object()) {
    status.erase("uptime_seconds");
    forget_metadata_bytes(status["pools"]);
  }
  forget_metadata_bytes(pools);
  return Json{{"list", ok_json(socket, {"volume", "list", "--all"})},
              {"snapshots", ok_json(socket, {"volume", "snapshot", "list"})},
              {"pools", pools},
              {"status", status}};
}

uint64_t highest_id(const Json& state) {
  uint64_t id = 0;
  for (const auto& v : state["list"]) id = std::max(id, v.value("id", uint64_t{0}));
  return id;
}

// Each difference between two states as a JSON patch, one operation per line; empty when
// they are equal.
std::string differences(const Json& before, const Json& after) {
  std::string out;
  for (const auto& op : Json::diff(before, after)) out += op.dump() + "\n";
  return out;
}

TEST_CASE("volumes, snapshots and clones survive SIGTERM and SIGKILL of pxd") {
  TempDir dir;
  std::optional<PxdProcess> pxd;
  pxd.emplace(dir.path());
  REQUIRE_MESSAGE(pxd->start(), pxd->log());
  // The socket path stays the same across restarts.
  const std::string sock = pxd->socket();

  ok_json(sock, {"volume", "create", "db", "--size", "10", "--label", "app=pg,tier=gold"});
  ok_json(sock, {"volume", "create", "web", "--size", "512M", "--fs", "xfs"});
  ok_json(sock, {"volume", "create", "raw", "--size", "1.5G", "--fs", "none"});
  ok_json(sock, {"volume", "snapshot", "create", "db", "--name", "db-s1", "--label", "when=first"});
  ok_json(sock, {"volume", "update", "db", "--size", "12"});
  ok_json(sock, {"volume", "snapshot", "create", "db", "--name", "db-s2"});
  ok_json(sock, {"volume", "clone", "db-s1", "--name", "db-c", "--label", "clone=yes"});
  ok_json(sock, {"volume", "clone", "web", "--name", "web-c"});
  ok_json(sock, {"volume", "snapshot", "create", "web-c", "--name", "web-c-s"});
  ok_json(sock, {"volume", "update", "web", "--label", "tier=bronze"});
  ok_json(sock, {"volume", "restore", "db", "--snapshot", "db-s1"});
  ok_json(sock, {"volume", "create", "gone", "--size", "1"});
  ok_json(sock, {"volume", "delete", "gone"});

  Json before = visible_state(sock);
  REQUIRE(before["list"].size() == 8);

  SUBCASE("after SIGTERM") {
    CHECK(pxd->stop() == 0);
    pxd.reset();
    pxd.emplace(dir.path());
    REQUIRE_MESSAGE(pxd->start(), pxd->log());
    Json after = visible_state(sock);
    CHECK_MESSAGE(differences(before, after).empty(), differences(before, after));
    // A second clean cycle after more changes.
    ok_json(sock, {"volume", "update", "db", "--label", "tier=,new=1"});
    ok_json(sock, {"volume", "snapshot", "delete", "db-s2"});
    before = visible_state(sock);
    CHECK(pxd->stop() == 0);
    pxd.reset();
    pxd.emplace(dir.path());
    REQUIRE_MESSAGE(pxd->start(), pxd->log());
    after = visible_state(sock);
    CHECK_MESSAGE(differences(before, after).empty(), differences(before, after));
  }

  SUBCASE("after SIGKILL") {
    // Changes made just before the kill count as much as older ones.
    ok_json(sock, {"volume", "snapshot", "create", "raw", "--name", "raw-s"});
    ok_json(sock, {"volume", "snapshot", "delete", "web-c-s"});
    ok_json(sock, {"volume", "update", "web-c", "--size", "1G", "--label", "late=1"});
    before = visible_state(sock);
    pxd->kill9();
    pxd.reset();
    pxd.emplace(dir.path());
    REQUIRE_MESSAGE(pxd->start(), pxd->log());
    Json after = visible_state(sock);
    CHECK_MESSAGE(differences(before, after).empty(), differences(before, after));
    // Twice in a row, with a change in between.
    ok_json(sock, {"volume", "clone", "raw-s", "--name", "raw-c"});
    before = visible_state(sock);
    pxd->kill9();
    pxd.reset();
    pxd.emplace(dir.path());
    REQUIRE_MESSAGE(pxd->start(), pxd->log());
    after = visible_state(sock);
    CHECK_MESSAGE(differences(before, after).empty(), differences(before, after));
  }

  // The restarted pxd goes on: new objects get new ids, and old ones can be changed.
  Json fresh = ok_json(sock, {"volume", "create", "fresh", "--size", "1"});
  CHECK(fresh["id"].get<uint64_t>() > highest_id(before));
  Json snap = ok_json(sock, {"volume", "snapshot", "create", "db", "--name", "db-s3"});
  CHECK(snap["id"].get<uint64_t>() > fresh["id"].get<uint64_t>());
  CHECK(ok_json(sock, {"volume", "update", "db", "--size", "20"})["size"] == 20 * testing::kGiB);
  CHECK(ok_json(sock, {"volume", "delete", "web"})["deleted"] == true);
  CHECK(pxd->stop() == 0);
}

}  // namespace
}  // namespace pxd
