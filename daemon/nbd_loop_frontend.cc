#include "daemon/nbd_loop_frontend.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/log.h"
#include "daemon/filesystem.h"
#include "daemon/loop_device.h"
#include "daemon/subprocess.h"

namespace pxd::daemon {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const char kTagPrefix[] = "pxd:";

std::string tail_of(const std::string& path) {
  std::ifstream f(path);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (all.size() > 2000) all = all.substr(all.size() - 2000);
  while (!all.empty() && all.back() == '\n') all.pop_back();
  return all;
}

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    if (executable(dirs.substr(start, end - start) + "/" + program)) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

std::string find_relay_binary() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const char* rel : {"../libexec/pxd/pxd-nbd-relay", "../tools/nbd-relay/pxd-nbd-relay"}) {
      fs::path candidate = (self.parent_path() / rel).lexically_normal();
      if (executable(candidate)) return candidate;
    }
  }
  return "pxd-nbd-relay";
}

std::string NbdLoopFrontend::dir_of(uint64_t volume_id) const {
  return attach_root() + "/" + std::to_string(volume_id);
}

Status NbdLoopFrontend::available() const {
  if (config_.nbd_socket.empty())
    return unsupported("the NBD socket is disabled (nbd_socket), and it is needed without ublk");
  if (!on_path(config_.nbdfuse_binary) && !executable(config_.nbdfuse_binary))
    return unsupported("nbdfuse is not installed (Debian package libnbd-bin)");
  if (!executable(config_.relay_binary) && !on_path(config_.relay_binary))
    return unsupported("pxd-nbd-relay not found (" + config_.relay_binary + ")");
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return unsupported("/dev/fuse is not available");
  if (::access("/dev/loop-control", R_OK | W_OK) != 0)
    return unsupported("/dev/loop-control is not available");
  return Status::ok();
}

Status NbdLoopFrontend::attach(const AttachTarget& target, Attachment& att) {
  const std::string dir = dir_of(target.volume_id);
  const std::string mount_dir = dir + "/fuse";
  const std::string file = mount_dir + "/disk";
  const std::string pid_file = dir + "/nbdfuse.pid";
  const std::string log_file = dir + "/nbdfuse.log";
  std::error_code ec;
  if (is_mounted_at(mount_dir)) (void)unmount_fs(mount_dir, true);
  fs::remove_all(dir, ec);
  fs::create_directories(mount_dir, ec);
  if (ec) return io_error("create " + mount_dir + ": " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, ec);

  std::vector<std::string> argv = {config_.nbdfuse_binary, "-P", pid_file};
  if (target.read_only) argv.push_back("-r");
  argv.insert(argv.end(), {file, "--command", config_.relay_binary, "--socket",
                           config_.nbd_socket, "--export", target.name});
  PXD_TRY(pid_t pid, spawn_detached(argv, log_file));
  auto cleanup = [&] {
    // Kill it and make sure it is gone before looking at its mount: a slow starter
    // could otherwise mount after we looked.
    ::kill(pid, SIGKILL);
    const auto until = Clock::now() + std::chrono::seconds(5);
    while (process_alive(pid, "nbdfuse") && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (is_mounted_at(mount_dir)) (void)unmount_fs(mount_dir, true);
  };
  // nbdfuse writes its pid file once the FUSE file is ready.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (!(fs::exists(pid_file, ec) && fs::exists(file, ec))) {
    if (!process_alive(pid, "nbdfuse")) {
      std::string log = tail_of(log_file);
      cleanup();
      return io_error("nbdfuse for '" + target.name + "' (pid " + std::to_string(pid) +
                      ") exited before it was ready" + (log.empty() ? "" : ": " + log));
    }
    if (Clock::now() > deadline) {
      cleanup();
      return io_error("nbdfuse for '" + target.name + "' was not ready within 30 s: " +
                      tail_of(log_file));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  LoopSpec spec;
  spec.backing_file = file;
  spec.block_size = target.block_size;
  spec.read_only = target.read_only;
  spec.tag = kTagPrefix + std::to_string(target.volume_id);
  auto device = loop_attach(spec);
  if (!device.has_value()) {
    cleanup();
    return device.error();
  }
  att.device = device.value();
  att.helper_pid = pid;
  return Status::ok();
}

Status NbdLoopFrontend::detach(const Attachment& att, bool force) {
  if (!att.device.empty()) {
    // Only our own device: after a reboot the number may belong to someone else.
    bool ours = false;
    for (const auto& loop : loop_list(kTagPrefix + std::to_string(att.volume_id)))
      ours |= loop.device == att.device;
    if (ours) PXD_RETURN_IF_ERROR(loop_detach(att.device, force));
  }
  const std::string dir = dir_of(att.volume_id);
  const std::string mount_dir = dir + "/fuse";
  if (is_mounted_at(mount_dir)) {
    Status s = unmount_fs(mount_dir, false);
    if (!s.is_ok()) s = unmount_fs(mount_dir, true);
    if (!s.is_ok()) return s;
  }
  // nbdfuse exits once its file system is gone; the relay flushes and disconnects.
  pid_t pid = static_cast<pid_t>(att.helper_pid);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (process_alive(pid, "nbdfuse") && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (process_alive(pid, "nbdfuse")) ::kill(pid, SIGTERM);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return Status::ok();
}

Status NbdLoopFrontend::adopt(const AttachTarget& target, Attachment& att) {
  (void)target;
  const std::string file = dir_of(att.volume_id) + "/fuse/disk";
  if (!process_alive(static_cast<pid_t>(att.helper_pid), "nbdfuse"))
    return not_found("its nbdfuse (pid " + std::to_string(att.helper_pid) + ") is gone");
  if (!is_mounted_at(dir_of(att.volume_id) + "/fuse"))
    return not_found("its FUSE file system is not mounted");
  for (const auto& loop : loop_list(kTagPrefix + std::to_string(att.volume_id)))
    if (loop.device == att.device && loop.backing_file == file) return Status::ok();
  return not_found("its loop device " + att.device + " is gone");
}

Status NbdLoopFrontend::resize(Attachment& att, uint64_t size_bytes) {
  (void)size_bytes;
  return unsupported(att.device + " (nbd-loop) keeps the size nbdfuse gave its file at "
                     "attach: detach and attach again to see the new size");
}

void NbdLoopFrontend::remove_stale(const std::vector<Attachment>& known) {
  auto known_id = [&](uint64_t id) {
    for (const auto& a : known)
      if (a.frontend == name() && a.volume_id == id) return true;
    return false;
  };
  auto known_device = [&](const std::string& device) {
    for (const auto& a : known)
      if (a.device == device) return true;
    return false;
  };
  for (const auto& loop : loop_list(kTagPrefix)) {
    if (loop.backing_file.rfind(attach_root() + "/", 0) != 0) continue;  // another pxd's
    if (known_device(loop.device)) continue;
    PXD_LOG(kInfo) << "removing stale loop device " << loop.device;
    (void)loop_detach(loop.device, true);
  }
  for (const auto& m : mount_table()) {
    if (m.mount_point.rfind(attach_root() + "/", 0) != 0) continue;
    uint64_t id = std::strtoull(m.mount_point.c_str() + attach_root().size() + 1, nullptr, 10);
    if (known_id(id)) continue;
    PXD_LOG(kInfo) << "removing stale FUSE mount " << m.mount_point;
    (void)unmount_fs(m.mount_point, true);
  }
  // nbdfuse processes serving files of ours that no attachment names (their mount may be
  // gone already: a lazily unmounted FUSE file system keeps its server alive).
  std::error_code ec;
  for (const auto& proc : fs::directory_iterator("/proc", ec)) {
    const std::string pid_text = proc.path().filename();
    if (pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (!process_alive(pid, "nbdfuse")) continue;
    std::ifstream f(proc.path() / "cmdline");
    std::string arg;
    while (std::getline(f, arg, '\0')) {
      if (arg.rfind(attach_root() + "/", 0) != 0) continue;
      uint64_t id = std::strtoull(arg.c_str() + attach_root().size() + 1, nullptr, 10);
      if (!known_id(id)) {
        PXD_LOG(kInfo) << "stopping stale nbdfuse " << pid << " (" << arg << ")";
        ::kill(pid, SIGKILL);
      }
      break;
    }
  }
  for (const auto& entry : fs::directory_iterator(attach_root(), ec)) {
    uint64_t id = std::strtoull(entry.path().filename().c_str(), nullptr, 10);
    if (known_id(id) || is_mounted_at(entry.path().string() + "/fuse")) continue;
    fs::remove_all(entry.path(), ec);
  }
}

}  // namespace pxd::daemon
