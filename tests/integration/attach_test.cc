// Attach and mount on the host kernel (no ublk here: the nbd-loop frontend), end to end
// through pxctl: real loop devices, nbdfuse, ext4 and xfs, pxd restarts.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/units.h"
#include "tests/integration/process.h"
#include "tests/support/temp_dir.h"

namespace pxd::testing {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

struct Node {
  TempDir dir;
  PxdProcess pxd{dir.path()};
  std::string mnt(const std::string& name) const { return dir / ("mnt-" + name); }

  explicit Node(PxdOptions options = {}) : pxd(dir.path(), std::move(options)) {
    REQUIRE(pxd.start());
  }
  ~Node() {
    // Leave nothing mounted or attached behind, whatever the test did.
    auto list = pxctl(pxd.socket(), {"-j", "volume", "list", "-a"});
    if (list.exit_code == 0) {
      for (const auto& v : Json::parse(list.out))
        if (v["state"] != "detached")
          pxctl(pxd.socket(), {"host", "detach", "--force", v["name"].get<std::string>()});
    }
    pxd.stop();
  }

  RunResult ctl(const std::vector<std::string>& args) { return pxctl(pxd.socket(), args); }
  std::string ok(const std::vector<std::string>& args) {
    auto r = ctl(args);
    std::string command;
    for (auto& a : args) command += " " + a;
    const std::string log = pxd.log();
    INFO("pxctl", command, ": ", r.err, "\npxd log:\n", log);
    REQUIRE(r.exit_code == 0);
    return r.out;
  }
  Json inspect(const std::string& name) {
    return Json::parse(ok({"-j", "volume", "inspect", name}));
  }
};

bool mounted_at(const std::string& path) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string id, parent, dev, root, point;
    in >> id >> parent >> dev >> root >> point;
    if (point == path) return true;
  }
  return false;
}

void write_file(const std::string& path, const std::string& text) {
  // O_CLOEXEC: the test starts pxd while writer threads run, and an inherited descriptor
  // would keep the filesystem busy for as long as that pxd lives.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  REQUIRE(::fsync(fd) == 0);
  ::close(fd);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// nbdfuse and relay processes serving attachments under `dir`.
int helpers_of(const std::string& dir) {
  int n = 0;
  for (const auto& proc : fs::directory_iterator("/proc")) {
    std::ifstream f(proc.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if ((cmdline.rfind("nbdfuse", 0) == 0 || cmdline.find("pxd-nbd-relay") != std::string::npos) &&
        cmdline.find(dir + "/") != std::string::npos)
      ++n;
  }
  return n;
}

void drop_caches() {
  ::sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3";
}

TEST_CASE("mount, write, unmount, detach, attach again: files intact; mounts are counted") {
  Node n;
  n.ok({"volume", "create", "--size", "1G", "v"});
  const std::string mnt = n.mnt("v");
  CHECK(n.ok({"host", "mount", "v", mnt}).find("new ext4 filesystem") != std::string::npos);
  CHECK(mounted_at(mnt));
  write_file(mnt + "/a", "first");
  Json v = n.inspect("v");
  CHECK(v["state"] == "mounted");
  CHECK(v["frontend"] == "nbd-loop");
  CHECK(v["mounts"] == Json::array({mnt}));
  const std::string link = v["device_path"];
  CHECK(link == n.dir / ("dev/pxd" + std::to_string(v["id"].get<uint64_t>())));
  CHECK(fs::read_symlink(link).string().rfind("/dev/loop", 0) == 0);

  // A second mount at the same path is counted; the first unmount keeps it mounted.
  n.ok({"host", "mount", "v", mnt});
  n.ok({"host", "unmount", "v", mnt});
  CHECK(mounted_at(mnt));
  // Busy while mounted: no detach, no delete, no restore.
  auto detach = n.ctl({"host", "detach", "v"});
  CHECK(detach.exit_code == 4);
  CHECK(detach.err.find("mounted at " + mnt) != std::string::npos);
  auto del = n.ctl({"volume", "delete", "v"});
  CHECK(del.exit_code == 4);
  CHECK(del.err.find("attached") != std::string::npos);
  // The last unmount detaches what the mount attached.
  n.ok({"host", "unmount", "v", mnt});
  CHECK_FALSE(mounted_at(mnt));
  CHECK(n.inspect("v")["state"] == "detached");
  CHECK_FALSE(fs::exists(fs::symlink_status(link)));

  // Attach explicitly: prints the path; mount then finds the filesystem and the file.
  CHECK(n.ok({"host", "attach", "v"}) == link + "\n");
  CHECK(n.ok({"host", "attach", "v"}) == link + "\n");  // idempotent
  Json m = Json::parse(n.ok({"-j", "host", "mount", "v", mnt}));
  CHECK(m["made_fs"] == false);
  drop_caches();
  CHECK(read_file(mnt + "/a") == "first");
  // Unmount keeps an explicit attachment.
  n.ok({"host", "unmount", "v", mnt});
  CHECK(n.inspect("v")["state"] == "attached");
  n.ok({"host", "detach", "v"});
  CHECK(wait_until([&] { return helpers_of(n.dir.path()) == 0; }));
  n.ok({"volume", "delete", "v"});
}

TEST_CASE("a clone of a snapshot shows the snapshot's files; a snapshot attaches read-only") {
  Node n;
  n.ok({"volume", "create", "--size", "1G", "v"});
  const std::string mv = n.mnt("v"), mc = n.mnt("c"), ms = n.mnt("s");
  n.ok({"host", "mount", "v", mv});
  write_file(mv + "/a", "before");
  ::sync();
  n.ok({"volume", "snapshot", "create", "v", "--name", "s"});
  write_file(mv + "/a", "after");
  write_file(mv + "/b", "new");

  n.ok({"volume", "clone", "s", "--name", "c"});
  n.ok({"host", "mount", "c", mc});
  CHECK(read_file(mc + "/a") == "before");
  CHECK_FALSE(fs::exists(mc + "/b"));
  write_file(mc + "/c-only", "clone");  // the clone is writable
  CHECK(read_file(mv + "/a") == "after");

  const std::string dev = n.ok({"host", "attach", "s"});
  const std::string path = dev.substr(0, dev.size() - 1);
  CHECK(n.inspect("s")["state"] == "attached");
  // A read-only device: the kernel says so, and a write fails.
  const std::string real = fs::canonical(path).filename();
  CHECK(read_file("/sys/block/" + real + "/ro") == "1\n");
  int fd = ::open(path.c_str(), O_WRONLY | O_DIRECT);
  if (fd >= 0) {
    void* buf = nullptr;
    REQUIRE(::posix_memalign(&buf, 4096, 4096) == 0);
    CHECK(::pwrite(fd, buf, 4096, 0) < 0);
    ::free(buf);
    ::close(fd);
  }
  n.ok({"host", "mount", "s", ms});
  CHECK(read_file(ms + "/a") == "before");
  std::ofstream(ms + "/x") << "no";
  CHECK_FALSE(fs::exists(ms + "/x"));
  auto del = n.ctl({"volume", "snapshot", "delete", "s"});
  CHECK(del.exit_code == 4);
}

TEST_CASE("a mounted filesystem keeps working across pxd restarts, clean and killed") {
  Node n;
  n.ok({"volume", "create", "--size", "1G", "v"});
  const std::string mnt = n.mnt("v");
  n.ok({"host", "mount", "v", mnt});
  write_file(mnt + "/one", "1");

  REQUIRE(n.pxd.stop() == 0);
  REQUIRE(n.pxd.start());
  CHECK(n.inspect("v")["state"] == "mounted");
  drop_caches();
  CHECK(read_file(mnt + "/one") == "1");
  write_file(mnt + "/two", "2");

  // Killed while a writer is busy: the writer only waits.
  std::string block(1 << 20, 'w');
  std::thread writer([&] {
    for (int i = 0; i < 16; ++i) write_file(mnt + "/during-" + std::to_string(i), block);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  n.pxd.kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  REQUIRE(n.pxd.start());
  writer.join();
  drop_caches();
  CHECK(read_file(mnt + "/two") == "2");
  for (int i = 0; i < 16; ++i) CHECK(read_file(mnt + "/during-" + std::to_string(i)) == block);
  CHECK(n.inspect("v")["state"] == "mounted");
  n.ok({"host", "unmount", "v", mnt});
}

TEST_CASE("pxd removes devices, FUSE mounts and links it left behind") {
  Node n;
  n.ok({"volume", "create", "--size", "1G", "v"});
  const std::string link = n.ok({"host", "attach", "v"});
  const std::string attach_dir = n.dir / "run/attach";
  auto ours = [&] {
    int loops = 0;
    for (const auto& e : fs::directory_iterator("/sys/block")) {
      std::ifstream f(e.path() / "loop/backing_file");
      std::string backing;
      if (std::getline(f, backing) && backing.rfind(attach_dir, 0) == 0) ++loops;
    }
    return loops;
  };
  CHECK(ours() == 1);
  n.pxd.kill9();
  fs::remove(n.pxd.data_dir() + "/attachments.json");  // pxd forgets it attached anything
  REQUIRE(n.pxd.start());
  CHECK(ours() == 0);
  CHECK_FALSE(mounted_at(attach_dir + "/1/fuse"));
  CHECK(wait_until([&] { return helpers_of(n.dir.path()) == 0; }));
  CHECK_FALSE(fs::exists(fs::symlink_status(link.substr(0, link.size() - 1))));
  CHECK(n.inspect("v")["state"] == "detached");
  n.ok({"volume", "delete", "v"});
}

TEST_CASE("xfs, raw volumes and bad mount requests") {
  Node n;
  n.ok({"volume", "create", "--size", "1G", "--fs", "xfs", "x"});
  n.ok({"volume", "create", "--size", "1G", "--fs", "none", "raw"});
  CHECK(n.ok({"host", "mount", "x", n.mnt("x")}).find("new xfs filesystem") != std::string::npos);
  write_file(n.mnt("x") + "/f", "xfs");

  auto raw = n.ctl({"host", "mount", "raw", n.mnt("raw")});
  CHECK(raw.exit_code == 4);
  CHECK(raw.err.find("no filesystem") != std::string::npos);
  CHECK(n.inspect("raw")["state"] == "detached");  // the failed mount attached nothing
  n.ok({"host", "attach", "raw"});                  // raw volumes attach fine

  CHECK(n.ctl({"host", "mount", "x", "relative/path"}).exit_code == 2);
  CHECK(n.ctl({"host", "mount", "missing", n.mnt("m")}).exit_code == 3);
  auto taken = n.ctl({"host", "mount", "raw", n.mnt("x")});
  CHECK(taken.exit_code == 4);
  CHECK(taken.err.find("already has volume 'x'") != std::string::npos);
  auto up = n.ctl({"host", "mount", "x", n.dir / "mnt-x/../../etc"});
  CHECK(up.exit_code == 2);
  auto not_mounted = n.ctl({"host", "unmount", "x", n.mnt("elsewhere")});
  CHECK(not_mounted.exit_code == 4);
  n.ok({"host", "unmount", "x", n.mnt("x")});
}

TEST_CASE("without ublk_drv: status says why nbd-loop; growing; --attach-frontend ublk refuses") {
  Node n;
  n.ok({"volume", "create", "--size", "1G", "v"});
  const bool host_has_ublk = fs::exists("/dev/ublk-control");
  std::string frontend = Json::parse(n.ok({"-j", "status"}))["frontend"];
  INFO("status frontend: ", frontend);
  if (!host_has_ublk) {
    // ublk is preferred; the fallback says why it is used (modprobe was tried once).
    CHECK(frontend.rfind("nbd-loop (ublk: ublk_drv not available: ", 0) == 0);
    CHECK(frontend.find("modprobe ublk_drv") != std::string::npos);
  }
  n.ok({"host", "attach", "v"});
  Json v = n.inspect("v");
  CHECK(v["device_size"] == kGiB);
  if (!host_has_ublk) CHECK(v["frontend"] == "nbd-loop");
  if (v["frontend"] == "nbd-loop") {
    // Growing succeeds on the volume; the nbd-loop device keeps its size until re-attached.
    std::string out = n.ok({"volume", "update", "--size", "2G", "v"});
    CHECK(out.find("still shows 1 GiB") != std::string::npos);
    v = n.inspect("v");
    CHECK(v["size"] == 2 * kGiB);
    CHECK(v["device_size"] == kGiB);
    CHECK(n.ok({"volume", "inspect", "v"}).find("Device size") != std::string::npos);
    n.ok({"host", "detach", "v"});
    n.ok({"host", "attach", "v"});
    CHECK(n.inspect("v")["device_size"] == 2 * kGiB);
  }
  n.ok({"host", "detach", "v"});
  if (host_has_ublk) return;

  Node only_ublk(PxdOptions{{"--attach-frontend", "ublk"}});
  only_ublk.ok({"volume", "create", "--size", "1G", "u"});
  auto refused = only_ublk.ctl({"host", "attach", "u"});
  CHECK(refused.exit_code != 0);
  CHECK(refused.err.find("ublk_drv not available") != std::string::npos);
  CHECK(only_ublk.inspect("u")["state"] == "detached");
}

TEST_CASE("--detach-on-stop: SIGTERM unmounts and detaches; the next pxd attaches nothing") {
  Node n(PxdOptions{{"--detach-on-stop"}});
  n.ok({"volume", "create", "--size", "1G", "v"});
  n.ok({"volume", "create", "--size", "1G", "--fs", "none", "raw"});
  const std::string mnt = n.mnt("v");
  n.ok({"host", "mount", "v", mnt});
  write_file(mnt + "/kept", "kept");
  const std::string link = n.ok({"host", "attach", "raw"});
  REQUIRE(n.pxd.stop() == 0);
  CHECK_FALSE(mounted_at(mnt));
  CHECK_FALSE(fs::exists(fs::symlink_status(link.substr(0, link.size() - 1))));
  CHECK(wait_until([&] { return helpers_of(n.dir.path()) == 0; }));
  REQUIRE(n.pxd.start());
  CHECK(n.inspect("v")["state"] == "detached");
  CHECK(n.inspect("raw")["state"] == "detached");
  n.ok({"host", "mount", "v", mnt});
  CHECK(read_file(mnt + "/kept") == "kept");
  n.ok({"host", "unmount", "v", mnt});
}

}  // namespace
}  // namespace pxd::testing
