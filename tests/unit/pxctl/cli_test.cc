// The pxctl binary end to end against stand-ins for pxd: exit codes, one-line errors on
// stderr, and stdout that parses as JSON with -j.
#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "tests/support/temp_dir.h"
#include "tests/unit/pxctl/fake_pxd.h"

namespace pxd::testing {

namespace {

using nlohmann::json;

size_t line_count(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// The error contract: nothing on stdout, exactly one line on stderr.
void check_one_error_line(const Run& run) {
  CAPTURE(run.err);
  CHECK(run.out.empty());
  CHECK(line_count(run.err) == 1);
  CHECK(run.err.rfind("pxctl: ", 0) == 0);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("no socket: exit 5 with one line naming the path") {
  TempDir dir;
  std::string socket = dir / "none.sock";
  for (auto args : std::vector<std::vector<std::string>>{
           {"--socket", socket, "status"},
           {"volume", "list", "-j", "--socket", socket},
           {"volume", "create", "db", "--size", "1", "--socket", socket}}) {
    Run run = run_pxctl(args);
    CHECK(run.exit_code == 5);
    check_one_error_line(run);
    CHECK(run.err == "pxctl: cannot reach pxd at " + socket +
                         ": No such file or directory (is pxd running?)\n");
  }
  // PXD_SOCKET picks the socket when --socket is not given.
  Run env = run_pxctl({"status"}, {"PXD_SOCKET=" + socket});
  CHECK(env.exit_code == 5);
  CHECK(contains(env.err, socket));
}

TEST_CASE("refused, closed and silent sockets are unreachable (exit 5)") {
  TempDir dir;
  {
    // A socket file nobody listens on.
    std::string path = dir / "stale.sock";
    { SilentSocket bound(path); }  // closed: the file stays, connect is refused
    Run run = run_pxctl({"--socket", path, "status"});
    CHECK(run.exit_code == 5);
    check_one_error_line(run);
    CHECK(contains(run.err, "Connection refused"));
  }
  {
    std::string path = dir / "closing.sock";
    ClosingSocket closing(path);
    Run run = run_pxctl({"--socket", path, "volume", "list"});
    CHECK(run.exit_code == 5);
    check_one_error_line(run);
    CHECK(contains(run.err, "cannot reach pxd at " + path + ": the connection closed"));
  }
  {
    std::string path = dir / "silent.sock";
    SilentSocket silent(path);
    Run run = run_pxctl({"--socket", path, "--timeout", "1", "status"});
    CHECK(run.exit_code == 5);
    check_one_error_line(run);
    CHECK(run.err ==
          "pxctl: cannot reach pxd at " + path + ": timed out after 1 s waiting for an answer\n");
  }
}

TEST_CASE("usage errors: exit 2, one line with a --help hint, no connection attempted") {
  TempDir dir;
  std::string socket = dir / "none.sock";
  struct Case {
    std::vector<std::string> args;
    std::string err;
  };
  for (const Case& c : std::vector<Case>{
           {{}, "pxctl: missing command; run 'pxctl --help'"},
           {{"volume", "frob"}, "pxctl: unknown command 'frob'; run 'pxctl volume --help'"},
           {{"volume", "create", "db"},
            "pxctl: --size is required; run 'pxctl volume create --help'"},
           {{"volume", "create", "db", "--size", "10x"}, "10x"},
           {{"volume", "create", "db", "--size", "0"}, "zero"},
           {{"volume", "create", "db", "--size", "1", "--fs", "zfs"}, "--fs"},
           {{"volume", "create", "db", "--size", "1", "--block_size", "1024"}, "--block_size"},
           {{"volume", "create", "db", "--size", "1", "--repl", "4"}, "--repl"},
           {{"volume", "create", "db", "--size", "1", "--label", "app"}, "'app' is not key=value"},
           {{"volume", "create", "db", "--size", "1", "-l", "a=1", "-l", "a=2"}, "given twice"},
           {{"volume", "update", "db"}, "nothing to update"},
           {{"volume", "list", "--bogus"}, "--bogus"},
           {{"volume", "snapshot", "create", "db"}, "--name is required"},
           {{"volume", "restore", "db"}, "--snapshot is required"},
       }) {
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"--socket", socket});
    Run run = run_pxctl(args);
    CAPTURE(args);
    CHECK(run.exit_code == 2);
    check_one_error_line(run);
    CHECK(contains(run.err, c.err));
    CHECK(contains(run.err, "--help'"));
    CHECK(!contains(run.err, "cannot reach"));
  }
}

TEST_CASE("--help on every verb and --version: exit 0 on stdout") {
  for (auto args :
       std::vector<std::vector<std::string>>{{"--help"},
                                             {"status", "--help"},
                                             {"version", "--help"},
                                             {"service", "pool", "show", "--help"},
                                             {"volume", "--help"},
                                             {"volume", "create", "--help"},
                                             {"volume", "list", "--help"},
                                             {"volume", "inspect", "--help"},
                                             {"volume", "update", "--help"},
                                             {"volume", "delete", "--help"},
                                             {"volume", "clone", "--help"},
                                             {"volume", "restore", "--help"},
                                             {"volume", "snapshot", "create", "--help"},
                                             {"volume", "snapshot", "list", "--help"},
                                             {"volume", "snapshot", "delete", "--help"}}) {
    CAPTURE(args);
    Run run = run_pxctl(args);
    CHECK(run.exit_code == 0);
    CHECK(contains(run.out, "Usage: pxctl"));
    CHECK(run.err.empty());
  }
  Run version = run_pxctl({"--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out.rfind("pxctl ", 0) == 0);
}

TEST_CASE("JSON from a fake pxd, with global flags before or after the verb") {
  TempDir dir;
  std::string socket = dir / "pxd.sock";
  FakePxd pxd(socket);

  Run inspect = run_pxctl({"-j", "--socket", socket, "volume", "inspect", "db"});
  REQUIRE(inspect.exit_code == 0);
  CHECK(inspect.err.empty());
  json v = json::parse(inspect.out);
  CHECK(v["id"] == 3);
  CHECK(v["name"] == "db");
  CHECK(v["size"] == 10ull << 30);
  CHECK(v["block_size"] == 4096);
  CHECK(v["fs"] == "ext4");
  CHECK(v["labels"] == json{{"app", "pg"}, {"tier", "gold"}});
  CHECK(v["parent"].is_null());
  CHECK(v["snapshots"] == json::array({"db-s1"}));
  CHECK(v["exclusive_bytes"] == 1 << 20);
  CHECK(v["shared_bytes"] == 0);
  CHECK(v["device_path"].is_null());
  CHECK(v["state"] == "detached");
  CHECK(v["created"] == 1795000000);

  Run several = run_pxctl({"volume", "inspect", "db", "db-s1", "--socket", socket, "--json"});
  REQUIRE(several.exit_code == 0);
  json both = json::parse(several.out);
  REQUIRE(both.is_array());
  CHECK(both[1]["parent"] == "db");
  CHECK(both[1]["is_snapshot"] == true);

  Run list = run_pxctl({"volume", "list", "--all", "-l", "app=pg", "-j", "--socket", socket});
  REQUIRE(list.exit_code == 0);
  CHECK(json::parse(list.out).size() == 2);

  Run status = run_pxctl({"status", "-j", "--socket", socket});
  REQUIRE(status.exit_code == 0);
  json node = json::parse(status.out);
  CHECK(node["node_name"] == "n1");
  CHECK(node["pools"][0]["capacity_bytes"] == 100ull << 30);

  Run pools = run_pxctl({"service", "pool", "show", "-j", "--socket", socket});
  REQUIRE(pools.exit_code == 0);
  json p = json::parse(pools.out);
  REQUIRE(p.is_array());
  for (const char* key :
       {"name", "uuid", "chunk_size", "capacity_bytes", "used_bytes", "free_bytes",
        "reclaiming_bytes", "metadata_bytes", "devices", "volumes", "snapshots"}) {
    CHECK(p[0].contains(key));
  }

  Run version = run_pxctl({"version", "-j", "--socket", socket});
  REQUIRE(version.exit_code == 0);
  CHECK(json::parse(version.out)["server"]["version"] == "9.9.9-fake");

  Run deleted = run_pxctl({"volume", "delete", "db", "-j", "--socket", socket});
  REQUIRE(deleted.exit_code == 0);
  CHECK(json::parse(deleted.out) == json{{"name", "db"}, {"deleted", true}});

  std::vector<std::string> calls = pxd.calls();
  CHECK(std::find(calls.begin(), calls.end(), "listVolumes selector=app=pg all=1") != calls.end());
}

TEST_CASE("requests carry what the user typed") {
  TempDir dir;
  std::string socket = dir / "pxd.sock";
  FakePxd pxd(socket);
  auto last_call = [&] { return pxd.calls().empty() ? "" : pxd.calls().back(); };

  Run create =
      run_pxctl({"--socket", socket, "volume", "create", "db2", "--size", "512M", "--fs", "xfs",
                 "--block_size", "512", "--label", "app=pg,tier=gold", "-l", "zone=a", "-j"});
  REQUIRE(create.exit_code == 0);
  CHECK(last_call() ==
        "createVolume db2 size=536870912 bs=512 fs=xfs repl=1 labels=app=pg,tier=gold,zone=a");
  CHECK(json::parse(create.out)["size"] == 512 << 20);

  // --label on update asks pxd to merge: k=v sets, k= removes, in one call.
  Run update = run_pxctl({"--socket", socket, "volume", "update", "db", "--size", "20", "--label",
                          "tier=,env=prod", "-j"});
  REQUIRE(update.exit_code == 0);
  CHECK(last_call() ==
        "updateVolume db size=21474836480 set_labels=0 merge=1 labels=env=prod remove=tier");
  CHECK(json::parse(update.out)["labels"] == json{{"app", "pg"}, {"env", "prod"}});

  Run grow = run_pxctl({"--socket", socket, "volume", "update", "db", "--size", "2T"});
  REQUIRE(grow.exit_code == 0);
  CHECK(last_call() == "updateVolume db size=2199023255552 set_labels=0 merge=0 labels= remove=");

  REQUIRE(run_pxctl({"--socket", socket, "volume", "snapshot", "create", "--name", "s2", "db"})
              .exit_code == 0);
  CHECK(last_call() == "createSnapshot db s2");
  REQUIRE(run_pxctl({"--socket", socket, "volume", "clone", "--name", "c1", "db-s1"}).exit_code ==
          0);
  CHECK(last_call() == "clone db-s1 c1");
  REQUIRE(
      run_pxctl({"--socket", socket, "volume", "restore", "--snapshot", "db-s1", "db"}).exit_code ==
      0);
  CHECK(last_call() == "restore db db-s1");
  REQUIRE(run_pxctl({"--socket", socket, "volume", "snapshot", "list", "db"}).exit_code == 0);
  CHECK(last_call() == "listSnapshots db");
  REQUIRE(run_pxctl({"--socket", socket, "volume", "snapshot", "delete", "s2"}).exit_code == 0);
  CHECK(last_call() == "deleteSnapshot s2");
  // A volume may be named like a verb.
  run_pxctl({"--socket", socket, "volume", "delete", "list"});
  CHECK(last_call() == "deleteVolume list force=0");
  REQUIRE(run_pxctl({"--socket", socket, "volume", "delete", "attached", "--force"}).exit_code ==
          0);
  CHECK(last_call() == "deleteVolume attached force=1");
}

TEST_CASE("status codes from pxd become exit codes and the server's message") {
  TempDir dir;
  std::string socket = dir / "pxd.sock";
  FakePxd pxd(socket);
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string err;
  };
  for (const Case& c : std::vector<Case>{
           {{"volume", "inspect", "nope"}, 3, "pxctl: volume 'nope' does not exist\n"},
           {{"volume", "inspect", "db", "nope", "-j"}, 3, "pxctl: volume 'nope' does not exist\n"},
           {{"volume", "create", "taken", "--size", "2"},
            4,
            "pxctl: volume 'taken' exists with size 1 GiB\n"},
           {{"volume", "delete", "attached"},
            4,
            "pxctl: volume 'attached' is attached; use --force\n"},
           {{"volume", "restore", "db", "--snapshot", "other"},
            4,
            "pxctl: 'other' is not a snapshot of 'db'\n"},
           {{"volume", "create", "r", "--size", "1", "--repl", "2"},
            1,
            "pxctl: --repl 2 needs a cluster; this node runs without one (single node), so "
            "volumes have one replica\n"},
       }) {
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"--socket", socket});
    CAPTURE(args);
    Run run = run_pxctl(args);
    CHECK(run.exit_code == c.exit_code);
    check_one_error_line(run);
    CHECK(run.err == c.err);
  }
  // An exception in pxd (a bug) is a failure, not unreachable.
  Run boom = run_pxctl({"volume", "inspect", "boom", "--socket", socket});
  CHECK(boom.exit_code == 1);
  check_one_error_line(boom);
  CHECK(contains(boom.err, "pxd failed the request"));
}

TEST_CASE("permission denied is exit 6; a server with an older API is refused") {
  TempDir dir;
  {
    std::string socket = dir / "denied.sock";
    FakePxd pxd(socket, FakePxd::Mode::kPermissionDenied);
    Run run = run_pxctl({"volume", "list", "--socket", socket});
    CHECK(run.exit_code == 6);
    check_one_error_line(run);
    CHECK(contains(run.err, "group pxd"));
  }
  {
    std::string socket = dir / "old.sock";
    FakePxd pxd(socket, FakePxd::Mode::kOldApi);
    Run run = run_pxctl({"status", "--socket", socket});
    CHECK(run.exit_code == 1);
    check_one_error_line(run);
    CHECK(contains(run.err, "speaks control API 0"));
    CHECK(pxd.calls().empty());
  }
}

TEST_CASE("human output: tables and blocks") {
  TempDir dir;
  std::string socket = dir / "pxd.sock";
  FakePxd pxd(socket);
  Run list = run_pxctl({"volume", "list", "--socket", socket});
  REQUIRE(list.exit_code == 0);
  CHECK(list.out ==
        "ID  NAME    SIZE   USED  FS    REPL  STATE     DEVICE  LABELS\n"
        " 3  db    10 GiB  1 MiB  ext4     1  detached  -       app=pg,tier=gold\n");
  Run status = run_pxctl({"status", "--socket", socket});
  REQUIRE(status.exit_code == 0);
  CHECK(contains(status.out, "Node:      n1\n"));
  CHECK(contains(status.out, "Uptime:    1h 2m\n"));
  CHECK(contains(status.out, "NAME     UUID       CAPACITY   USED    FREE  CHUNK  DEVICES\n"));
  Run version = run_pxctl({"version", "--socket", socket});
  CHECK(version.out.find("Server version: 9.9.9-fake (control API 1)\n") != std::string::npos);
}

}  // namespace pxd::testing
