// pxctl volume import / export against a real pxd: raw and qcow2 files, NBD URIs (nbdkit),
// sparseness both ways, byte-for-byte comparison, and interrupted imports leaving nothing.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "tests/integration/process.h"
#include "tests/support/temp_dir.h"

namespace pxd::testing {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1 << 20;

// A sparse file of `size` bytes with random data in the given MiB-aligned ranges.
void make_image(const std::string& path, uint64_t size,
                const std::vector<std::pair<uint64_t, uint64_t>>& data_mib) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  std::mt19937_64 rng(42);
  std::vector<uint64_t> buf(kMiB / 8);
  for (auto [start, count] : data_mib)
    for (uint64_t m = start; m < start + count; ++m) {
      for (auto& w : buf) w = rng();
      REQUIRE(::pwrite(fd, buf.data(), kMiB, static_cast<off_t>(m * kMiB)) == (ssize_t)kMiB);
    }
  ::close(fd);
}

bool same_bytes(const std::string& a, const std::string& b) {
  return run({"cmp", a, b}).exit_code == 0;
}

uint64_t allocated_bytes(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

struct Fixture {
  TempDir dir;
  PxdProcess pxd{dir.path()};
  Fixture() { REQUIRE(pxd.start()); }
  RunResult ctl(const std::vector<std::string>& args) { return pxctl(pxd.socket(), args); }
  void ok(const std::vector<std::string>& args) {
    auto r = ctl(args);
    INFO(r.err, "\n", pxd.log());
    REQUIRE(r.exit_code == 0);
  }
  Json inspect(const std::string& name) {
    auto r = ctl({"-j", "volume", "inspect", name});
    REQUIRE(r.exit_code == 0);
    return Json::parse(r.out);
  }
  bool exists(const std::string& name) {
    return ctl({"volume", "inspect", name}).exit_code == 0;
  }
};

// nbdkit serving `file` on a private unix socket; `options` go before the plugin (e.g.
// --readonly, --filter=delay) and `params` after it (e.g. the delay filter's rdelay=).
struct Nbdkit {
  Child server;
  std::string socket;
  Nbdkit(const TempDir& dir, const std::string& file, const std::vector<std::string>& options = {},
         const std::vector<std::string>& params = {}) {
    static int instance = 0;
    socket = dir / ("nbdkit" + std::to_string(++instance) + ".sock");
    std::vector<std::string> argv = {"nbdkit", "--foreground", "--unix", socket};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.insert(argv.end(), {"file", file});
    argv.insert(argv.end(), params.begin(), params.end());
    REQUIRE(server.start(argv, dir / "nbdkit.log"));
    REQUIRE(wait_until([&] { return fs::exists(socket); }));
  }
  std::string uri() const { return "nbd+unix:///?socket=" + socket; }
};

TEST_CASE("raw and qcow2 files in, files out: sparse both ways and byte for byte") {
  Fixture f;
  const std::string src = f.dir / "src.img";
  make_image(src, 96 * kMiB + 4096, {{3, 2}, {40, 1}, {95, 1}});
  f.ok({"volume", "import", "raw", "--from", src, "--label", "app=x"});
  Json v = f.inspect("raw");
  CHECK(v["size"] == 96 * kMiB + 4096);
  CHECK(v["labels"] == Json{{"app", "x"}});  // the import marker is gone
  CHECK(v["exclusive_bytes"].get<uint64_t>() <= 5 * kMiB);  // holes stayed holes

  const std::string out = f.dir / "out.img";
  f.ok({"volume", "export", "raw", "--to", out});
  CHECK(same_bytes(src, out));
  CHECK(allocated_bytes(out) <= allocated_bytes(src) + 1 * kMiB);

  // qcow2 is read through qemu-nbd; a snapshot exports what it saw.
  const std::string qcow = f.dir / "src.qcow2";
  REQUIRE(run({"qemu-img", "convert", "-O", "qcow2", src, qcow}).exit_code == 0);
  f.ok({"volume", "import", "fromq", "--from", qcow});
  f.ok({"volume", "snapshot", "create", "fromq", "--name", "snap"});
  const std::string out2 = f.dir / "out2.img";
  f.ok({"volume", "export", "snap", "--to", out2});
  CHECK(same_bytes(src, out2));
  CHECK(run({"qemu-img", "compare", "-f", "raw", "-F", "qcow2", out2, qcow}).exit_code == 0);

  // Existing files are not overwritten unless asked; bad sources say why.
  auto again = f.ctl({"volume", "export", "raw", "--to", out});
  CHECK(again.exit_code == 4);
  CHECK(again.err.find("--overwrite") != std::string::npos);
  f.ok({"volume", "export", "raw", "--to", out, "--overwrite"});
  auto missing = f.ctl({"volume", "import", "x", "--from", f.dir / "missing.img"});
  CHECK(missing.exit_code == 2);
  CHECK_FALSE(f.exists("x"));
  auto small = f.ctl({"volume", "import", "y", "--from", src, "--size", "1M"});
  CHECK(small.exit_code == 2);
  CHECK_FALSE(f.exists("y"));
}

TEST_CASE("NBD URIs in and out") {
  Fixture f;
  const std::string src = f.dir / "src.img";
  make_image(src, 32 * kMiB, {{1, 1}, {20, 2}});
  {
    Nbdkit kit(f.dir, src, {"--readonly"});
    f.ok({"volume", "import", "vol", "--from", kit.uri()});
  }
  const std::string target = f.dir / "target.img";
  make_image(target, 32 * kMiB, {{0, 32}});  // full of other data: zeros must be written
  {
    Nbdkit kit(f.dir, target);
    f.ok({"volume", "export", "vol", "--to", kit.uri()});
  }
  CHECK(same_bytes(src, target));
}

TEST_CASE("an interrupted import leaves no volume; a killed one is replaced next time") {
  Fixture f;
  const std::string src = f.dir / "src.img";
  make_image(src, 64 * kMiB, {{0, 64}});
  // Each attempt reads from its own slow server, so the import is surely in progress when
  // it is interrupted.
  auto start_import = [&](Child& importer, const Nbdkit& kit, const std::string& log) {
    REQUIRE(importer.start({pxctl_binary(), "--socket", f.pxd.socket(), "volume", "import",
                            "slow", "--from", kit.uri()},
                           f.dir / log));
    bool created = wait_until([&] { return f.exists("slow"); }, std::chrono::seconds(20));
    INFO(run({"cat", f.dir / log}).out);
    REQUIRE(created);
  };
  {
    Nbdkit kit(f.dir, src, {"--filter=delay"}, {"rdelay=200ms"});
    Child importer;
    start_import(importer, kit, "import1.log");
    CHECK(f.inspect("slow")["labels"]["pxd.import"] == "incomplete");
    ::kill(importer.pid(), SIGINT);
    CHECK(importer.stop(std::chrono::seconds(30)) == 1);
    CHECK_FALSE(f.exists("slow"));
  }
  {
    // SIGKILL gives pxctl no chance to clean up: the volume stays, marked incomplete.
    Nbdkit kit(f.dir, src, {"--filter=delay"}, {"rdelay=200ms"});
    Child importer;
    start_import(importer, kit, "import2.log");
    importer.kill9();
  }
  CHECK(f.inspect("slow")["labels"]["pxd.import"] == "incomplete");
  auto redo = f.ctl({"volume", "import", "slow", "--from", src});
  REQUIRE(redo.exit_code == 0);
  CHECK(redo.out.find("replacing an unfinished import") != std::string::npos);
  CHECK(f.inspect("slow")["labels"].empty());
  // A finished volume of that name is never replaced.
  auto taken = f.ctl({"volume", "import", "slow", "--from", src});
  CHECK(taken.exit_code == 4);
}

}  // namespace
}  // namespace pxd::testing
