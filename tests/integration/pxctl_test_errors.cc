// pxctl end to end, part 4: bad input. Each mistake gets one clear "pxctl: ..." line on
// stderr, nothing on stdout, the exit code doc/control-api.md gives, no change to any
// volume, and pxd serving on afterwards.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/integration/pxctl_test_support.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using testing::describe;
using testing::error_mismatch;
using testing::Json;
using testing::ok_json;
using testing::PxdProcess;
using testing::TempDir;

struct BadInput {
  std::vector<std::string> args;
  int exit_code;
  std::string needle;  // the message names what was wrong
};

std::vector<std::string> create(const std::string& name, const std::string& size = "1") {
  return {"volume", "create", name, "--size", size};
}

std::vector<std::string> create_with(const std::string& flag, const std::string& value) {
  return {"volume", "create", "x", "--size", "1", flag, value};
}

// 65 labels, one more than a volume may carry.
std::string many_labels() {
  std::string text;
  for (int i = 0; i < 65; ++i) text += (i ? ",k" : "k") + std::to_string(i) + "=v";
  return text;
}

// Whether `err` has no control characters but its final newline.
bool printable(const std::string& err) {
  for (size_t i = 0; i + 1 < err.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(err[i]);
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Leaves a unix socket file nobody listens on.
void dead_socket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  ::close(fd);
}

TEST_CASE("bad input: one clear line, the right exit code, nothing changed") {
  TempDir dir;
  PxdProcess pxd(dir.path());
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  const std::string& sock = pxd.socket();
  ok_json(sock, create("vol"));
  ok_json(sock, {"volume", "snapshot", "create", "vol", "--name", "vol-s"});
  ok_json(sock, create("other"));
  ok_json(sock, {"volume", "snapshot", "create", "other", "--name", "other-s"});
  Json before = ok_json(sock, {"volume", "list", "--all"});

  const std::string long_name(256, 'n');
  const std::string long_key(256, 'k');
  const std::vector<BadInput> cases = {
      // Sizes.
      {create("x", "0"), 2, "zero"},
      {create("x", "-1"), 2, "-1"},
      {create("x", "10X"), 2, "10X"},
      {create("x", "abc"), 2, "abc"},
      {create("x", ""), 2, "size"},
      {create("x", "99999T"), 2, "beyond the limit of 256 TiB"},
      {create("x", "99999999999999999999"), 2, "too large"},
      {create("x", "1000B"), 2, "not a multiple of the block size"},
      {create("x", "1.3K"), 2, "1.3K"},
      {{"volume", "update", "vol", "--size", "0"}, 2, "zero"},
      {{"volume", "update", "vol", "--size", "abc"}, 2, "abc"},
      {{"volume", "update", "vol", "--size", "99999T"}, 2, "beyond the limit"},
      // Names.
      {create(""), 2, "name is empty"},
      {create(long_name), 2, "256 bytes long; at most 255"},
      {create("a/b"), 2, "contains '/'"},
      {create(".."), 2, "'..' is reserved"},
      {create("."), 2, "'.' is reserved"},
      {create("bell\x07name"), 2, "control character"},
      {create("tab\tname"), 2, "control character"},
      {create("esc\x1b[31mname"), 2, "control character"},
      {{"volume", "snapshot", "create", "vol", "--name", "a/b"}, 2, "contains '/'"},
      {{"volume", "snapshot", "create", "vol", "--name", ""}, 2, "name is empty"},
      {{"volume", "snapshot", "create", "vol", "--name", long_name}, 2, "256 bytes"},
      {{"volume", "clone", "vol", "--name", ".."}, 2, "reserved"},
      {{"volume", "clone", "vol", "--name", "new\x01"}, 2, "control character"},
      // Unknown flags and verbs.
      {{"volume", "create", "x", "--size", "1", "--bogus"}, 2, "--bogus"},
      {{"--bogus", "status"}, 2, "--bogus"},
      {{"volume", "list", "--al"}, 2, "--al"},
      {{"volume", "frobnicate"}, 2, "unknown command 'frobnicate'"},
      {{"volume", "snapshot", "frobnicate"}, 2, "frobnicate"},
      {{"frobnicate"}, 2, "frobnicate"},
      {{"volume"}, 2, "pxctl volume --help"},
      {{}, 2, "pxctl"},
      // Missing and extra arguments.
      {{"volume", "create"}, 2, "name"},
      {{"volume", "create", "x"}, 2, "--size"},
      {{"volume", "create", "x", "--size"}, 2, "--size"},
      {{"volume", "inspect"}, 2, "name"},
      {{"volume", "delete"}, 2, "name"},
      {{"volume", "delete", "vol", "other"}, 2, "other"},
      {{"volume", "update", "vol"}, 2, "nothing to update"},
      {{"volume", "snapshot", "create", "vol"}, 2, "--name"},
      {{"volume", "snapshot", "delete"}, 2, "name"},
      {{"volume", "clone", "vol"}, 2, "--name"},
      {{"volume", "restore", "vol"}, 2, "--snapshot"},
      {{"--timeout", "0", "status"}, 2, "--timeout"},
      // Filesystem and block size.
      {create_with("--fs", "btrfs"), 2, "btrfs"},
      {create_with("--fs", ""), 2, "--fs"},
      {create_with("--block_size", "1024"), 2, "1024"},
      {create_with("--repl", "0"), 2, "--repl"},
      // Label text.
      {create_with("--label", "novalue"), 2, "'novalue' is not key=value"},
      {create_with("--label", "=x"), 2, "'=x' has an empty key"},
      {create_with("--label", "a=1,,b=2"), 2, "empty item"},
      {create_with("--label", "a=1,a=2"), 2, "'a' is given twice"},
      {create_with("--label", "k=v\x01"), 2, "control character"},
      {create_with("--label", long_key + "=v"), 2, "longer than 255 bytes"},
      {create_with("--label", many_labels()), 2, "65 labels given; at most 64"},
      {{"volume", "update", "vol", "--label", "novalue"}, 2, "novalue"},
      {{"volume", "list", "--label", "=x"}, 2, "empty key"},
      {{"volume", "snapshot", "create", "vol", "-n", "s", "--label", "novalue"}, 2, "novalue"},
      // Unknown names.
      {{"volume", "inspect", "nope"}, 3, "nope"},
      {{"volume", "delete", "nope"}, 3, "nope"},
      {{"volume", "update", "nope", "--size", "2"}, 3, "nope"},
      {{"volume", "update", "nope", "--label", "a=b"}, 3, "nope"},
      {{"volume", "snapshot", "create", "nope", "--name", "s"}, 3, "nope"},
      {{"volume", "snapshot", "delete", "nope"}, 3, "nope"},
      {{"volume", "snapshot", "list", "nope"}, 3, "nope"},
      {{"volume", "clone", "nope", "--name", "c"}, 3, "nope"},
      {{"volume", "restore", "nope", "--snapshot", "vol-s"}, 3, "nope"},
      {{"volume", "restore", "vol", "--snapshot", "nope"}, 3, "nope"},
      // The wrong kind of object.
      {{"volume", "snapshot", "create", "vol-s", "--name", "s2"}, 2, "snapshots of snapshots"},
      {{"volume", "restore", "vol", "--snapshot", "other-s"}, 2, "is not a snapshot of 'vol'"},
      {{"volume", "restore", "vol", "--snapshot", "other"}, 2, "is a volume, not a snapshot"},
      {{"volume", "restore", "vol-s", "--snapshot", "vol-s"}, 2, "is a snapshot, not a volume"},
      {{"volume", "delete", "vol-s"}, 2, "use snapshot delete"},
      {{"volume", "snapshot", "delete", "vol"}, 2, "is a volume, not a snapshot"},
      {{"volume", "snapshot", "list", "vol-s"}, 2, "is a snapshot, not a volume"},
      {{"volume", "update", "vol-s", "--size", "5"}, 2, "snapshots cannot be resized"},
      // Names already taken.
      {create("vol-s"), 4, "'vol-s' is the name of a snapshot"},
      {{"volume", "clone", "vol", "--name", "other"}, 4, "'other' is taken"},
      {{"volume", "snapshot", "create", "vol", "--name", "other"}, 4, "'other' is taken"},
      {{"volume", "delete", "vol"}, 4, "has 1 snapshots"},
  };
  for (const BadInput& bad : cases) {
    auto result = testing::pxctl_json(sock, bad.args);
    std::string wrong = error_mismatch(result, bad.exit_code, bad.needle);
    CHECK_MESSAGE(wrong.empty(), wrong << "\n" << describe(bad.args, result));
    CHECK_MESSAGE(printable(result.err), describe(bad.args, result));
  }
  {
    // The message should say what a block size may be, not only repeat the text.
    auto args = create_with("--block_size", "abc");
    auto result = testing::pxctl_json(sock, args);
    std::string wrong = error_mismatch(result, 2, "abc");
    CHECK_MESSAGE(wrong.empty(), wrong << "\n" << describe(args, result));
    CHECK_MESSAGE(
        result.err.find("4096") != std::string::npos,
        "the error for a block size that is no number does not say what is allowed: ", result.err);
  }
  {
    // A label key with an escape sequence is refused; the message must not replay the
    // sequence to the user's terminal (names are refused without echoing them).
    auto args = create_with("--label", "k\x1b[31m=v");
    auto result = testing::pxctl_json(sock, args);
    std::string wrong = error_mismatch(result, 2, "control character");
    CHECK_MESSAGE(wrong.empty(), wrong << "\n" << describe(args, result));
    CHECK_MESSAGE(printable(result.err),
                  "the error for a label with a control character echoes the raw bytes: ",
                  Json(result.err).dump());
  }
  // Without -j the errors are the same.
  auto text = testing::pxctl(sock, {"volume", "inspect", "nope"});
  CHECK_MESSAGE(error_mismatch(text, 3, "nope").empty(), text.err);

  // The longest allowed name works, so the limit is where the message says.
  const std::string longest(255, 'n');
  CHECK(ok_json(sock, create(longest))["name"] == longest);
  CHECK(ok_json(sock, {"volume", "delete", longest})["deleted"] == true);

  CHECK(ok_json(sock, {"volume", "list", "--all"}) == before);
  CHECK(ok_json(sock, {"status"})["volumes"] == 2);
  CHECK(pxd.running());
  CHECK(pxd.stop() == 0);
}

TEST_CASE("pxctl without a reachable pxd exits 5") {
  TempDir dir;
  auto missing = testing::pxctl(dir / "missing.sock", {"status"});
  CHECK_MESSAGE(error_mismatch(missing, 5, "cannot reach pxd at " + (dir / "missing.sock")).empty(),
                missing.err);
  CHECK(missing.err.find("is pxd running?") != std::string::npos);
  auto json = testing::pxctl_json(dir / "missing.sock", {"volume", "list"});
  CHECK_MESSAGE(error_mismatch(json, 5, "cannot reach pxd").empty(), json.err);

  dead_socket(dir / "dead.sock");
  auto refused = testing::pxctl(dir / "dead.sock", {"volume", "list"});
  CHECK_MESSAGE(error_mismatch(refused, 5, "refused").empty(), refused.err);

  // Usage errors come before any attempt to connect.
  auto usage = testing::pxctl(dir / "missing.sock", {"volume", "create", "x", "--size", "abc"});
  CHECK_MESSAGE(error_mismatch(usage, 2, "abc").empty(), usage.err);

  auto too_long = testing::pxctl(std::string(200, 's'), {"status"});
  CHECK_MESSAGE(error_mismatch(too_long, 2, "longer than").empty(), too_long.err);

  // After pxd stops, the same command is unreachable again, not a crash.
  PxdProcess pxd(dir.path());
  REQUIRE_MESSAGE(pxd.start(), pxd.log());
  CHECK(testing::pxctl(pxd.socket(), {"status"}).exit_code == 0);
  CHECK(pxd.stop() == 0);
  auto stopped = testing::pxctl(pxd.socket(), {"status"});
  CHECK_MESSAGE(error_mismatch(stopped, 5, "cannot reach pxd").empty(), stopped.err);
}

}  // namespace
}  // namespace pxd
