#include "tests/integration/docker_engine.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace pxd::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDockerd = "/usr/sbin/dockerd";
constexpr const char* kDocker = "/usr/bin/docker";  // Debian's CLI, not another on PATH
constexpr const char* kSpecDir = "/etc/docker/plugins";

std::string tail_of(const std::string& text, size_t lines) {
  size_t pos = text.size();
  for (size_t n = 0; n <= lines && pos > 0; ++n) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

void unmount_below(const std::string& dir) {
  std::vector<std::string> points;
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string id, parent, dev, root, point;
    in >> id >> parent >> dev >> root >> point;
    if (point == dir || point.rfind(dir + "/", 0) == 0) points.push_back(point);
  }
  std::sort(points.begin(), points.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const auto& p : points) ::umount2(p.c_str(), MNT_DETACH);
}

DockerEngine::DockerEngine(std::string dir)
    : dir_(std::move(dir)),
      socket_(dir_ + "/docker.sock"),
      log_path_(dir_ + "/dockerd.log"),
      namespace_("pxdtest-" + std::to_string(::getpid())) {}

DockerEngine::~DockerEngine() {
  stop();
}

std::string DockerEngine::start(std::chrono::seconds timeout) {
  for (const char* binary : {kDockerd, kDocker}) {
    if (::access(binary, X_OK) != 0)
      return std::string(binary) + " is not installed (scripts/install-deps.sh installs docker.io)";
  }
  for (const char* sub : {"/data", "/exec", "/config"}) fs::create_directories(dir_ + sub);
  std::vector<std::string> argv = {
      // The engine dies with the test, even a test killed by its timeout.
      "setpriv", "--pdeathsig", "TERM", kDockerd, "--iptables=false", "--ip6tables=false",
      "--bridge=none", "--storage-driver=vfs", "--data-root", dir_ + "/data", "--exec-root",
      dir_ + "/exec", "-H", "unix://" + socket_, "--pidfile", dir_ + "/dockerd.pid",
      // If the host runs a containerd of its own, dockerd uses it: keep to our namespaces.
      "--containerd-namespace", namespace_, "--containerd-plugins-namespace",
      namespace_ + "-plugins"};
  if (!dockerd_.start(argv, log_path_)) return "cannot start dockerd";
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!dockerd_.running()) return "dockerd exited at start; its log ends:\n" + tail_of(log(), 15);
    if (::access(socket_.c_str(), F_OK) == 0 &&
        docker({"version", "--format", "{{.Server.Version}}"}, std::chrono::seconds(10))
                .exit_code == 0)
      return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return "dockerd did not answer within " + std::to_string(timeout.count()) +
         " s; its log ends:\n" + tail_of(log(), 15);
}

RunResult DockerEngine::docker(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  std::vector<std::string> argv = {kDocker, "-H", "unix://" + socket_};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {"DOCKER_CONFIG=" + dir_ + "/config"}, timeout);
}

std::string DockerEngine::import_busybox(const std::string& tag) {
  std::string root = dir_ + "/image";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root + "/bin");
  fs::create_directories(root + "/home/app");
  fs::copy_file("/bin/busybox", root + "/bin/busybox", ec);
  if (ec) return "cannot copy /bin/busybox (scripts/install-deps.sh installs busybox-static)";
  auto list = run({root + "/bin/busybox", "--list"});
  if (list.exit_code != 0) return "busybox --list failed: " + list.err;
  std::istringstream applets(list.out);
  for (std::string applet; std::getline(applets, applet);) {
    if (!applet.empty() && applet != "busybox")
      fs::create_symlink("busybox", root + "/bin/" + applet, ec);
  }
  if (::chown((root + "/home/app").c_str(), 1000, 1000) != 0 ||
      ::chmod((root + "/home/app").c_str(), 0750) != 0)
    return "cannot set the owner of /home/app";
  auto tar = run({"tar", "--numeric-owner", "-C", root, "-cf", dir_ + "/image.tar", "."});
  if (tar.exit_code != 0) return "tar failed: " + tar.err;
  auto imported = docker({"import", "--change", "ENV PATH=/bin", dir_ + "/image.tar", tag});
  if (imported.exit_code != 0) return "docker import failed: " + imported.err;
  return "";
}

void DockerEngine::stop() {
  if (dockerd_.running()) {
    auto ids = docker({"ps", "-aq"}, std::chrono::seconds(30));
    std::vector<std::string> rm = {"rm", "-f"};
    std::istringstream in(ids.out);
    for (std::string id; std::getline(in, id);)
      if (!id.empty()) rm.push_back(id);
    if (rm.size() > 2) docker(rm, std::chrono::seconds(60));
    dockerd_.stop(std::chrono::seconds(30));
  }
  // The containerd dockerd started, if SIGTERM did not take it down.
  std::string pid_text = read_all(dir_ + "/exec/containerd/containerd.pid");
  if (!pid_text.empty()) {
    pid_t pid = static_cast<pid_t>(std::atoi(pid_text.c_str()));
    if (pid > 1 && read_all("/proc/" + std::to_string(pid) + "/cmdline").find("containerd") == 0)
      ::kill(pid, SIGKILL);
  }
  unmount_below(dir_);
}

std::string DockerEngine::log() const {
  return read_all(log_path_);
}

PluginSpec::PluginSpec(const std::string& prefix, const std::string& socket) {
  std::error_code ec;
  fs::create_directories(kSpecDir, ec);
  // Specs of test processes that died without removing theirs.
  for (const auto& entry : fs::directory_iterator(kSpecDir, ec)) {
    std::string file = entry.path().filename();
    if (file.rfind(prefix + "-", 0) != 0 || entry.path().extension() != ".spec") continue;
    pid_t pid = static_cast<pid_t>(std::atoi(file.c_str() + prefix.size() + 1));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(entry.path(), ec);
  }
  name_ = prefix + "-" + std::to_string(::getpid());
  path_ = std::string(kSpecDir) + "/" + name_ + ".spec";
  std::ofstream(path_) << "unix://" << socket << "\n";
}

PluginSpec::~PluginSpec() {
  ::unlink(path_.c_str());
}

}  // namespace pxd::testing
