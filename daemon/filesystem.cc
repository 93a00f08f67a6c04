#include "daemon/filesystem.h"

#include <blkid/blkid.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/subprocess.h"

namespace pxd::daemon {
namespace {

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out.push_back(static_cast<char>(v));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

Status check_fs_type(const std::string& fs) {
  if (fs == "ext4" || fs == "xfs" || fs == "none") return Status::ok();
  return invalid_argument("unknown filesystem '" + fs + "' (ext4, xfs or none)");
}

Result<std::string> probe_fs(const std::string& device) {
  blkid_probe probe = blkid_new_probe_from_filename(device.c_str());
  if (!probe) return errno_status(errno ? errno : EIO, "probe " + device);
  blkid_probe_enable_superblocks(probe, 1);
  blkid_probe_set_superblocks_flags(probe, BLKID_SUBLKS_TYPE);
  blkid_probe_enable_partitions(probe, 1);
  int rc = blkid_do_safeprobe(probe);
  std::string type;
  const char* value = nullptr;
  if (rc == 0 && blkid_probe_lookup_value(probe, "TYPE", &value, nullptr) == 0)
    type = value;
  else if (rc == 0 && blkid_probe_lookup_value(probe, "PTTYPE", &value, nullptr) == 0)
    type = std::string("partition table ") + value;
  blkid_free_probe(probe);
  if (rc < 0) return io_error("cannot probe " + device + " for a filesystem");
  if (rc == -2) return failed_precondition(device + " has ambiguous signatures");
  return type;
}

Status make_fs(const std::string& device, const std::string& fs) {
  std::vector<std::string> argv;
  if (fs == "ext4")
    argv = {"mkfs.ext4", "-q", "-E", "nodiscard,lazy_itable_init=1", device};
  else if (fs == "xfs")
    argv = {"mkfs.xfs", "-q", "-K", device};
  else
    return check_fs_type(fs).is_ok() ? invalid_argument("no filesystem to make for '" + fs + "'")
                                     : check_fs_type(fs);
  PXD_TRY(auto result, run_command(argv, std::chrono::minutes(10)));
  if (result.exit_code != 0)
    return io_error(argv[0] + " failed (exit " + std::to_string(result.exit_code) +
                    "): " + result.output);
  return Status::ok();
}

Status mount_fs(const std::string& device, const std::string& path, const std::string& fs,
                bool read_only) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return io_error("create " + path + ": " + ec.message());
  unsigned long flags = MS_NOSUID | MS_NODEV;
  std::string data;
  if (read_only) {
    flags |= MS_RDONLY;
    if (fs == "ext4") data = "noload";
    if (fs == "xfs") data = "norecovery";
  }
  if (::mount(device.c_str(), path.c_str(), fs.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) != 0)
    return errno_status(errno, "mount " + device + " (" + fs + ") at " + path);
  return Status::ok();
}

Status unmount_fs(const std::string& path, bool lazy) {
  // A mount is briefly busy after its last files close (writeback, lookups in flight):
  // retry for a moment before calling it in use.
  for (int attempt = 0;; ++attempt) {
    if (::umount2(path.c_str(), lazy ? MNT_DETACH : 0) == 0) return Status::ok();
    if (errno != EBUSY || attempt == 30) break;
    ::usleep(100 * 1000);
  }
  if (errno == EBUSY) return busy(path + " is in use (open files or a process inside it)");
  if (errno == EINVAL) return Status::ok();  // not a mount point any more
  return errno_status(errno, "unmount " + path);
}

std::vector<MountEntry> mount_table() {
  std::vector<MountEntry> out;
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    // id parent major:minor root mount-point options [optional...] - type source super
    std::istringstream in(line);
    std::string id, parent, dev, root, point, options, field;
    in >> id >> parent >> dev >> root >> point >> options;
    while (in >> field && field != "-") {
    }
    MountEntry e;
    in >> e.fs_type >> e.source;
    e.mount_point = unescape(point);
    e.source = unescape(e.source);
    out.push_back(std::move(e));
  }
  return out;
}

bool is_mounted_at(const std::string& path) {
  for (const auto& e : mount_table())
    if (e.mount_point == path) return true;
  return false;
}

Result<std::string> clean_mount_path(const std::string& path) {
  if (path.empty() || path[0] != '/')
    return invalid_argument("mount path '" + path + "' is not absolute");
  std::filesystem::path p(path);
  for (const auto& part : p)
    if (part == "..") return invalid_argument("mount path '" + path + "' contains '..'");
  std::string clean = p.lexically_normal().string();
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  if (clean == "/") return invalid_argument("refusing to mount over /");
  return clean;
}

}  // namespace pxd::daemon
