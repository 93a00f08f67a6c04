// pxctl end to end, part 3: sixteen pxctl clients at once, racing on shared names and
// working on their own, leave pxd consistent: every listed object inspects, every snapshot's
// volume exists, names are unique, only the documented outcomes happen, and the pool is
// empty once everything is deleted.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <thread>

#include "tests/integration/pxctl_test_support.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using testing::describe;
using testing::Json;
using testing::ok_json;
using testing::PxdProcess;
using testing::RunResult;
using testing::TempDir;

constexpr int kClients = 16;
constexpr int kRounds = 4;
constexpr int kGroups = 4;  // clients t and t + 4k share names

// One pxctl run and the exit codes it may end with.
struct Outcome {
  std::vector<std::string> args;
  std::set<int> allowed;
  RunResult result;
};

// What one client does. Names of its own have one possible outcome per step; names shared
// with the other clients of its group have several, depending on who comes first.
std::vector<Outcome> client(const std::string& socket, int t) {
  std::vector<Outcome> log;
  auto run = [&](std::vector<std::string> args, std::set<int> allowed) {
    RunResult result = testing::pxctl_json(socket, args);
    log.push_back({std::move(args), std::move(allowed), std::move(result)});
  };
  const std::string group = std::to_string(t % kGroups);
  const std::string shared = "shared-" + group;
  const std::string mixed = "mixed-" + group;
  const std::string own = "own-" + std::to_string(t);
  for (int r = 0; r < kRounds; ++r) {
    const std::string round = std::to_string(r);
    const std::string shared_snap = shared + "-snap-" + round;
    const std::string own_snap = own + "-s" + round;
    const std::string own_clone = own + "-c" + round;
    // The same spec from every client of the group is idempotent.
    run({"volume", "create", shared, "--size", "1", "--label", "group=" + group}, {0});
    // Different specs under one name: the first wins, the others are told what differs.
    run({"volume", "create", mixed, "--size", t % 2 ? "1G" : "2G"}, {0, 4});
    run({"volume", "create", own, "--size", std::to_string(1 + t % 3), "--label", "owner=" + own},
        {0});
    // Taken by another client (4), or its volume was just deleted (3).
    run({"volume", "snapshot", "create", shared, "--name", shared_snap}, {0, 3, 4});
    run({"volume", "snapshot", "create", own, "--name", own_snap}, {0});
    run({"volume", "clone", own_snap, "--name", own_clone}, {0});
    run({"volume", "list", "--all"}, {0});
    run({"volume", "inspect", shared, own}, {0, 3});
    run({"volume", "snapshot", "list", own}, {0});
    run({"volume", "delete", own}, {4});  // it has a snapshot
    if (r + 1 < kRounds) {
      run({"volume", "snapshot", "delete", own_snap}, {0});
      run({"volume", "delete", own_clone}, {0});
      run({"volume", "delete", own}, {0});
    }
    run({"volume", "snapshot", "delete", shared_snap}, {0, 3});
    // Gone already (3), or another client's snapshot still holds it (4).
    run({"volume", "delete", shared}, {0, 3, 4});
  }
  return log;
}

TEST_CASE("16 concurrent pxctl clients leave pxd consistent") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  const std::string& sock = pxd.socket();

  std::vector<std::vector<Outcome>> logs(kClients);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kClients; ++t) threads.emplace_back([&, t] { logs[t] = client(sock, t); });
    for (auto& thread : threads) thread.join();
  }
  REQUIRE(pxd.running());

  std::map<std::string, uint64_t> mixed_sizes;  // what a successful create of mixed-g said
  for (int t = 0; t < kClients; ++t) {
    for (const Outcome& o : logs[t]) {
      const RunResult& r = o.result;
      INFO(describe(o.args, r));
      CHECK(!r.timed_out);
      CHECK(o.allowed.count(r.exit_code) == 1);
      if (r.exit_code == 0) {
        CHECK(r.err.empty());
        Json json = testing::parse_stdout(r);
        CHECK(!json.is_discarded());
        if (o.args[1] == "create" && o.args[2].rfind("mixed-", 0) == 0 && json.is_object()) {
          uint64_t size = json["size"];
          CHECK(size == (o.args[4] == "1G" ? 1 : 2) * testing::kGiB);
          auto [it, first] = mixed_sizes.emplace(o.args[2], size);
          CHECK(it->second == size);  // every success saw the same volume
        }
      } else {
        CHECK(r.out.empty());
        CHECK(testing::one_error_line(r.err));
      }
    }
  }

  // Everything listed is unique and inspects to the same thing; relations hold both ways.
  Json all = ok_json(sock, {"volume", "list", "--all"});
  REQUIRE(all.is_array());
  std::map<std::string, Json> by_name;
  std::set<uint64_t> ids;
  for (Json v : all) {
    std::string name = v["name"];
    CHECK_MESSAGE(by_name.emplace(name, v).second, "listed twice: " << name);
    CHECK_MESSAGE(ids.insert(v["id"].get<uint64_t>()).second, "id used twice: " << v.dump());
    CHECK(ok_json(sock, {"volume", "inspect", name}) == v);
  }
  size_t volumes = 0, snapshots = 0;
  for (auto& [name, v] : by_name) {
    INFO(v.dump());
    if (v["is_snapshot"]) {
      ++snapshots;
      REQUIRE(v["parent"].is_string());
      auto parent = by_name.find(v["parent"].get<std::string>());
      REQUIRE(parent != by_name.end());
      CHECK(parent->second["is_snapshot"] == false);
      CHECK(std::count(parent->second["snapshots"].begin(), parent->second["snapshots"].end(),
                       name) == 1);
    } else {
      ++volumes;
      for (const auto& s : v["snapshots"]) {
        auto snap = by_name.find(s.get<std::string>());
        REQUIRE_MESSAGE(snap != by_name.end(), s);
        CHECK(snap->second["parent"] == name);
      }
    }
  }
  // What each client kept of its own in the last round, exactly.
  const std::string last = std::to_string(kRounds - 1);
  for (int t = 0; t < kClients; ++t) {
    const std::string own = "own-" + std::to_string(t);
    REQUIRE(by_name.count(own) == 1);
    CHECK(by_name[own]["size"] == (1 + t % 3) * testing::kGiB);
    CHECK(by_name[own]["labels"] == Json{{"owner", own}});
    CHECK(by_name[own]["snapshots"] == Json::array({own + "-s" + last}));
    REQUIRE(by_name.count(own + "-c" + last) == 1);
    CHECK(by_name[own + "-c" + last]["parent"] == own + "-s" + last);
  }
  for (int g = 0; g < kGroups; ++g) {
    const std::string mixed = "mixed-" + std::to_string(g);
    REQUIRE(by_name.count(mixed) == 1);
    CHECK(by_name[mixed]["size"] == mixed_sizes[mixed]);
  }
  for (auto& [name, v] : by_name) {
    bool expected =
        name.rfind("own-", 0) == 0 || name.rfind("mixed-", 0) == 0 || name.rfind("shared-", 0) == 0;
    CHECK_MESSAGE(expected, name);
  }

  Json status = ok_json(sock, {"status"});
  CHECK(status["volumes"] == volumes);
  CHECK(status["snapshots"] == snapshots);
  CHECK(status["pools"][0]["used_bytes"] == 0);  // nothing was ever written

  // Deleting everything empties the pool: snapshots first, then volumes.
  for (auto& [name, v] : by_name) {
    if (v["is_snapshot"])
      CHECK(ok_json(sock, {"volume", "snapshot", "delete", name})["deleted"] == true);
  }
  for (auto& [name, v] : by_name) {
    if (!v["is_snapshot"]) CHECK(ok_json(sock, {"volume", "delete", name})["deleted"] == true);
  }
  CHECK(ok_json(sock, {"volume", "list", "--all"}) == Json::array());
  Json pool = ok_json(sock, {"service", "pool", "show"})[0];
  CHECK(pool["used_bytes"] == 0);
  CHECK(pool["volumes"] == 0);
  CHECK(pool["snapshots"] == 0);
  CHECK(pxd.stop() == 0);
}

TEST_CASE("concurrent pxctl volume update --label keeps every client's label") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  const std::string& sock = pxd.socket();
  ok_json(sock, {"volume", "create", "target", "--size", "1", "--label", "base=1"});

  std::vector<RunResult> results(kClients);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kClients; ++t) {
      threads.emplace_back([&, t] {
        results[t] = testing::pxctl_json(
            sock, {"volume", "update", "target", "--label", "k" + std::to_string(t) + "=v"});
      });
    }
    for (auto& thread : threads) thread.join();
  }
  Json expected = {{"base", "1"}};
  for (int t = 0; t < kClients; ++t) {
    CHECK_MESSAGE(results[t].exit_code == 0, results[t].err);
    expected["k" + std::to_string(t)] = "v";
  }
  // Each client was told its label was set, so each label must be there.
  Json labels = ok_json(sock, {"volume", "inspect", "target"})["labels"];
  CHECK_MESSAGE(labels == expected, "labels acknowledged to concurrent clients were lost: have ",
                labels.dump(), ", want ", expected.dump());
  CHECK(labels["base"] == "1");
  CHECK(pxd.stop() == 0);
}

}  // namespace
}  // namespace pxd
