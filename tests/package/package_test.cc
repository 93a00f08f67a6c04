// package_test: builds the Debian package from this build tree (cpack), inspects it,
// installs it on this machine with apt, checks what it put where, runs the packaged pxd
// on private paths through an attach, a refused removal and an upgrade, then purges the
// package and checks that nothing of it is left.
//
// It changes the machine (the dpkg database, /usr, /etc, the group pxd, /run/pxd), so
// CTest runs it alone, and it puts back what it changed beyond the package (the group
// and /run/pxd if it made them). It never replaces an installation it did not make: it
// skips (exit 77, saying why) when not root, when a pxd package is installed or its
// configuration is left, or when pxd's paths exist without the package. Under a running
// systemd it installs a policy-rc.d (if there is none) so that pxd.service is not
// started on the machine's default pool.
#include <doctest/doctest.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "daemon/config.h"
#include "tests/integration/process.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

namespace fs = std::filesystem;
using testing::RunResult;
using testing::TempDir;
using namespace std::chrono_literals;

const std::vector<std::string> kAptEnv = {"DEBIAN_FRONTEND=noninteractive"};
constexpr char kPolicyRcd[] = "/usr/sbin/policy-rc.d";
constexpr char kPolicyRcdMarker[] = "# written by pxd's package_test while it runs";

[[noreturn]] void skip(const std::string& why) {
  std::cerr << "package_test: SKIPPED: " << why << std::endl;
  std::exit(77);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string describe(const RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") +
         "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// dpkg's two-letter state of package pxd ("ii", "rc", "un", ...), "" if it never heard of it.
std::string package_state() {
  auto r = testing::run({"dpkg-query", "-W", "-f=${db:Status-Abbrev}", "pxd"});
  if (r.exit_code != 0) return "";
  return r.out.substr(0, 2);
}

bool systemd_running() {
  return fs::is_directory("/run/systemd/system");
}

// What the test changes on the machine beyond the package, put back on every exit path;
// and the package itself purged if a check failed half-way.
class MachineState {
 public:
  MachineState() {
    had_group_ = ::getgrnam("pxd") != nullptr;
    had_run_dir_ = ::stat("/run/pxd", &run_dir_) == 0;
    had_var_lib_ = fs::exists("/var/lib/pxd");
    if (systemd_running() && !fs::exists(kPolicyRcd)) {
      std::ofstream(kPolicyRcd) << "#!/bin/sh\n" << kPolicyRcdMarker << "\nexit 101\n";
      ::chmod(kPolicyRcd, 0755);
      wrote_policy_ = true;
    }
  }
  ~MachineState() {
    if (package_state().size() == 2 && package_state()[1] != 'n')
      testing::run({"dpkg", "--purge", "pxd"}, {"PXD_REMOVE_ATTACHED=1"}, 120s);
    if (!had_group_ && ::getgrnam("pxd") != nullptr) testing::run({"groupdel", "pxd"});
    struct stat now;
    if (!had_run_dir_) {
      ::rmdir("/run/pxd");
    } else if (::stat("/run/pxd", &now) == 0) {
      ::chmod("/run/pxd", run_dir_.st_mode & 07777);
      if (::chown("/run/pxd", run_dir_.st_uid, run_dir_.st_gid) != 0) {
      }
    }
    if (wrote_policy_ && read_file(kPolicyRcd).find(kPolicyRcdMarker) != std::string::npos)
      ::unlink(kPolicyRcd);
  }
  bool had_var_lib() const { return had_var_lib_; }

 private:
  bool had_group_ = false, had_run_dir_ = false, had_var_lib_ = false, wrote_policy_ = false;
  struct stat run_dir_ {};
};

// Refuses to go on where the test could clobber someone's pxd.
void check_machine_is_ours() {
  if (::geteuid() != 0) skip("needs root: it installs and purges the pxd package");
  std::string state = package_state();
  if (state.size() == 2 && state[1] != 'n')
    skip("a pxd package is on this machine (dpkg state '" + state +
         "'); this test installs and purges pxd and leaves an installation it did not make "
         "alone. `apt purge pxd` (volumes in /var/lib/pxd stay) lets it run.");
  for (const char* path : {"/usr/sbin/pxd", "/usr/bin/pxctl", "/usr/libexec/pxd", "/etc/pxd",
                           "/usr/lib/systemd/system/pxd.service", "/lib/systemd/system/pxd.service",
                           "/etc/systemd/system/pxd.service"}) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(path, ec)))
      skip(std::string(path) + " exists without the pxd package; this test would replace it");
  }
}

std::string build_package(const TempDir& dir) {
  auto r = testing::run(
      {PXD_CPACK, "--config", std::string(PXD_BUILD_DIR) + "/CPackConfig.cmake", "-B", dir / "pkg"},
      {}, 300s);
  REQUIRE_MESSAGE(r.exit_code == 0, describe(r));
  std::vector<std::string> debs;
  for (const auto& e : fs::directory_iterator(dir / "pkg"))
    if (e.path().extension() == ".deb") debs.push_back(e.path());
  REQUIRE(debs.size() == 1);
  return debs[0];
}

// The package's name, before any version or alternative: "libc6 (>= 2.34)" -> "libc6".
std::set<std::string> depends_of(const std::string& deb) {
  auto r = testing::run({"dpkg-deb", "-f", deb, "Depends"});
  REQUIRE_MESSAGE(r.exit_code == 0, describe(r));
  std::set<std::string> names;
  std::string field = r.out;
  size_t start = 0;
  while (start < field.size()) {
    size_t comma = field.find(',', start);
    if (comma == std::string::npos) comma = field.size();
    std::string item = field.substr(start, comma - start);
    size_t b = item.find_first_not_of(" \n");
    size_t e = item.find_first_of(" (|\n", b);
    if (b != std::string::npos) names.insert(item.substr(b, e == std::string::npos ? e : e - b));
    start = comma + 1;
  }
  return names;
}

void inspect_package(const std::string& deb, const TempDir& dir) {
  auto field = [&](const char* name) {
    auto r = testing::run({"dpkg-deb", "-f", deb, name});
    REQUIRE_MESSAGE(r.exit_code == 0, describe(r));
    return r.out.substr(0, r.out.find('\n'));
  };
  CHECK(field("Package") == "pxd");
  CHECK(field("Version") == PXD_VERSION);
  auto arch = testing::run({"dpkg", "--print-architecture"});
  CHECK(field("Architecture") + "\n" == arch.out);

  // Runtime libraries come from dpkg-shlibdeps; the programs pxd runs are named by hand.
  std::set<std::string> depends = depends_of(deb);
  for (const char* needed : {"libc6", "libstdc++6", "liburing2", "libsystemd0", "libnbd-bin",
                             "fuse3", "e2fsprogs", "xfsprogs", "kmod", "init-system-helpers"})
    CHECK_MESSAGE(depends.count(needed) == 1, needed);
  bool rocksdb = false, capnp = false;
  for (const auto& d : depends) {
    CHECK_MESSAGE(d.find("-dev") == std::string::npos, d);  // build-only packages
    rocksdb = rocksdb || d.rfind("librocksdb", 0) == 0;
    capnp = capnp || d.rfind("libcapnp", 0) == 0;
  }
  CHECK(rocksdb);
  CHECK(capnp);

  auto listing = testing::run({"dpkg-deb", "-c", deb});
  REQUIRE_MESSAGE(listing.exit_code == 0, describe(listing));
  std::set<std::string> files;
  for (const auto& line : lines_of(listing.out)) {
    std::istringstream in(line);
    std::string mode, owner, size, date, time, path;
    in >> mode >> owner >> size >> date >> time >> path;
    if (path == "./") continue;
    CHECK_MESSAGE(owner == "root/root", line);
    CHECK_MESSAGE((path.rfind("./usr/", 0) == 0 || path.rfind("./etc/", 0) == 0), line);
    CHECK_MESSAGE(path.rfind("./usr/local", 0) != 0, line);
    if (mode[0] == '-') files.insert(path.substr(1));
    if (path == "./usr/sbin/pxd" || path == "./usr/bin/pxctl" ||
        path == "./usr/libexec/pxd/pxd-nbd-relay")
      CHECK_MESSAGE(mode == "-rwxr-xr-x", line);
  }
  for (const char* needed :
       {"/usr/sbin/pxd", "/usr/bin/pxctl", "/usr/libexec/pxd/pxd-nbd-relay",
        "/usr/lib/systemd/system/pxd.service", "/usr/lib/sysusers.d/pxd.conf",
        "/usr/lib/tmpfiles.d/pxd.conf", "/etc/pxd/pxd.conf",
        "/usr/share/bash-completion/completions/pxctl", "/usr/share/man/man8/pxd.8.gz",
        "/usr/share/man/man1/pxctl.1.gz", "/usr/share/doc/pxd/README.md"})
    CHECK_MESSAGE(files.count(needed) == 1, needed);

  auto conffiles = testing::run({"dpkg-deb", "-I", deb, "conffiles"});
  CHECK(conffiles.out == "/etc/pxd/pxd.conf\n");
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    auto r = testing::run({"dpkg-deb", "-I", deb, script});
    CHECK_MESSAGE(r.exit_code == 0, script);
    CHECK_MESSAGE(r.out.rfind("#!/bin/sh\n", 0) == 0, script);
  }

  // The contents: the config is the rendered key list, the unit runs the packaged pxd.
  auto x = testing::run({"dpkg-deb", "-x", deb, dir / "contents"});
  REQUIRE_MESSAGE(x.exit_code == 0, describe(x));
  CHECK(read_file(dir / "contents/etc/pxd/pxd.conf") == daemon::config_file_template());
  std::string unit = read_file(dir / "contents/usr/lib/systemd/system/pxd.service");
  CHECK(unit.find("\nExecStart=/usr/sbin/pxd\n") != std::string::npos);
  CHECK(unit.find("@SBINDIR@") == std::string::npos);
}

// The package's files and directories, as dpkg lists them.
std::vector<std::string> installed_paths() {
  auto r = testing::run({"dpkg", "-L", "pxd"});
  REQUIRE_MESSAGE(r.exit_code == 0, describe(r));
  std::vector<std::string> paths;
  for (const auto& line : lines_of(r.out))
    if (!line.empty() && line[0] == '/' && line != "/.") paths.push_back(line);
  return paths;
}

void check_installed() {
  CHECK(package_state() == "ii");
  auto version = testing::run({"/usr/sbin/pxd", "--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out == std::string("pxd ") + PXD_VERSION + "\n");
  auto help = testing::run({"/usr/bin/pxctl", "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("Usage: pxctl") != std::string::npos);
  auto pxd_help = testing::run({"/usr/sbin/pxd", "--help"});
  CHECK(pxd_help.exit_code == 0);
  CHECK(pxd_help.out.find("/etc/pxd/pxd.conf") != std::string::npos);
  CHECK(::access("/usr/libexec/pxd/pxd-nbd-relay", X_OK) == 0);

  const std::string unit = "/usr/lib/systemd/system/pxd.service";
  REQUIRE(fs::is_regular_file(unit));
  CHECK(fs::is_regular_file("/usr/lib/sysusers.d/pxd.conf"));
  CHECK(fs::is_regular_file("/usr/lib/tmpfiles.d/pxd.conf"));
  CHECK(fs::is_regular_file("/etc/pxd/pxd.conf"));
  // Enabled the way dh_installsystemd enables, with or without a running systemd.
  std::error_code ec;
  CHECK(fs::is_symlink("/etc/systemd/system/multi-user.target.wants/pxd.service", ec));
  // Man pages are checked in the package: dpkg may be told not to install them.
  auto verify = testing::run({"systemd-analyze", "verify", "--man=no", unit}, {}, 60s);
  CHECK_MESSAGE(verify.exit_code == 0, describe(verify));
  CHECK_MESSAGE(verify.err.find("pxd.service") == std::string::npos, describe(verify));
  for (const char* kind : {"sysusers", "tmpfiles"}) {
    std::string path = std::string("/usr/lib/") + kind + ".d/pxd.conf";
    auto cat = testing::run({std::string("systemd-") + kind, "--cat-config"});
    CHECK_MESSAGE(cat.out.find(path) != std::string::npos, path);
  }

  group* g = ::getgrnam("pxd");
  REQUIRE(g != nullptr);
  struct stat st;
  REQUIRE(::stat("/run/pxd", &st) == 0);
  CHECK((st.st_mode & 07777) == 0750);
  CHECK(st.st_uid == 0);
  CHECK(st.st_gid == g->gr_gid);

  auto completion = testing::run(
      {"bash", "-c", "source /usr/share/bash-completion/completions/pxctl && complete -p pxctl"});
  CHECK_MESSAGE(completion.exit_code == 0, describe(completion));
  CHECK(completion.out.find("pxctl") != std::string::npos);
}

// The packaged pxd on private paths (it reads the installed /etc/pxd/pxd.conf).
class PackagedPxd {
 public:
  explicit PackagedPxd(const TempDir& dir)
      : dir_(dir), socket_(dir / "run/pxd.sock"), notify_(dir / "notify.sock") {}
  ~PackagedPxd() {
    if (attached_) pxctl({"host", "detach", "--force", "v1"});
    child_.stop(30s);
  }
  void start() {
    fs::create_directories(dir_ / "dev");
    REQUIRE(child_.start({"/usr/sbin/pxd", "--data-dir", dir_ / "data", "--control-socket", socket_,
                          "--nbd-socket", dir_ / "run/nbd.sock", "--device-dir", dir_ / "dev",
                          "--pool", dir_ / "pool0.img:2G", "--docker-plugin-socket", ""},
                         dir_ / "pxd.log", {"NOTIFY_SOCKET=" + notify_.path()}));
    std::string seen;
    REQUIRE_MESSAGE(notify_.wait_for("READY=1", 30s, &seen), read_file(dir_ / "pxd.log"));
  }
  RunResult pxctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/pxctl", "--socket", socket_, "-j"});
    return testing::run(args, {}, 60s);
  }
  void set_attached(bool attached) { attached_ = attached; }
  int stop() { return child_.stop(30s); }
  std::string log() const { return read_file(dir_ / "pxd.log"); }

 private:
  const TempDir& dir_;
  std::string socket_;
  testing::NotifySocket notify_;
  testing::Child child_;
  bool attached_ = false;
};

TEST_CASE("the package builds, installs, serves, upgrades and purges cleanly") {
  check_machine_is_ours();
  TempDir dir;
  REQUIRE(!dir.path().empty());
  ::chmod(dir.path().c_str(), 0755);  // apt's _apt user reads the .deb from here

  std::string deb = build_package(dir);
  inspect_package(deb, dir);

  MachineState machine;
  auto install = testing::run({"apt-get", "install", "-y", "-q", "--no-install-recommends", deb},
                              kAptEnv, 300s);
  REQUIRE_MESSAGE(install.exit_code == 0, describe(install));
  check_installed();
  const std::vector<std::string> paths = installed_paths();

  TempDir run_dir;
  ::chmod(run_dir.path().c_str(), 0755);
  {
    PackagedPxd pxd(run_dir);
    pxd.start();
    // It found its relay under /usr/libexec/pxd: an attach works.
    auto status = pxd.pxctl({"status"});
    REQUIRE_MESSAGE(status.exit_code == 0, describe(status));
    std::string frontend = nlohmann::json::parse(status.out).value("frontend", "");
    CHECK_MESSAGE(frontend.rfind("none", 0) != 0, frontend);
    auto create = pxd.pxctl({"volume", "create", "v1", "--size", "256M"});
    REQUIRE_MESSAGE(create.exit_code == 0, describe(create));
    auto attach = pxd.pxctl({"host", "attach", "v1"});
    REQUIRE_MESSAGE(attach.exit_code == 0, (describe(attach) + pxd.log()));
    pxd.set_attached(true);

    // Removal under an attached volume is refused, and the package stays.
    auto remove = testing::run({"apt-get", "remove", "-y", "-q", "pxd"}, kAptEnv, 300s);
    CHECK_MESSAGE(remove.exit_code != 0, describe(remove));
    CHECK_MESSAGE((remove.out + remove.err).find("pxd: not removing") != std::string::npos,
                  describe(remove));
    CHECK(package_state() == "ii");
    auto detach = pxd.pxctl({"host", "detach", "v1"});
    REQUIRE_MESSAGE(detach.exit_code == 0, describe(detach));
    pxd.set_attached(false);

    // An upgrade (the same package again) leaves a running pxd running; without systemd
    // it says that the old binary still runs.
    auto upgrade = testing::run({"dpkg", "-i", deb}, kAptEnv, 300s);
    CHECK_MESSAGE(upgrade.exit_code == 0, describe(upgrade));
    if (!systemd_running())
      CHECK_MESSAGE(
          (upgrade.out + upgrade.err).find("still runs the replaced pxd") != std::string::npos,
          describe(upgrade));
    CHECK(pxd.pxctl({"status"}).exit_code == 0);
    CHECK(package_state() == "ii");

    // Purge stops the pxd running from the package, which exits cleanly.
    auto purge = testing::run({"apt-get", "purge", "-y", "-q", "pxd"}, kAptEnv, 300s);
    CHECK_MESSAGE(purge.exit_code == 0, describe(purge));
    CHECK(pxd.stop() == 0);
    CHECK(pxd.log().find("stopped") != std::string::npos);
  }

  // Nothing of the package is left; the machine's state dir is as it was.
  std::string state = package_state();
  CHECK_MESSAGE((state.empty() || state[1] == 'n'), state);
  for (const auto& path : paths) {
    std::error_code ec;
    bool shared_dir = fs::is_directory(path, ec) && !fs::is_empty(path, ec);
    if (!shared_dir) CHECK_MESSAGE(!fs::exists(fs::symlink_status(path, ec)), path);
  }
  for (const char* gone : {"/etc/pxd", "/usr/libexec/pxd", "/usr/share/doc/pxd",
                           "/etc/systemd/system/multi-user.target.wants/pxd.service",
                           "/etc/systemd/system/pxd.service"}) {
    std::error_code ec;
    CHECK_MESSAGE(!fs::exists(fs::symlink_status(gone, ec)), gone);
  }
  CHECK(fs::exists("/var/lib/pxd") == machine.had_var_lib());
}

}  // namespace
}  // namespace pxd
