#include "daemon/mount_order.h"

#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/log.h"

namespace pxd::daemon {

std::string own_service_unit() {
  if (sd_booted() <= 0) return "";
  char* unit = nullptr;
  if (sd_pid_get_unit(::getpid(), &unit) < 0 || unit == nullptr) return "";
  std::string name = unit;
  std::free(unit);
  const std::string suffix = ".service";
  if (name.size() <= suffix.size() ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "";
  return name;
}

// systemd's path escaping (systemd.unit(5), "String Escaping for Inclusion in Unit
// Names"): slashes at the ends dropped, each run of '/' becomes '-', every byte other than
// [A-Za-z0-9:_.] (and a leading '.') becomes \xNN.
std::string mount_unit_name(const std::string& path) {
  size_t begin = path.find_first_not_of('/');
  if (begin == std::string::npos) return "-.mount";
  size_t end = path.find_last_not_of('/') + 1;
  std::string out;
  for (size_t i = begin; i < end; ++i) {
    const unsigned char c = static_cast<unsigned char>(path[i]);
    if (c == '/') {
      if (path[i - 1] != '/') out += '-';  // "//" counts as one, as systemd simplifies it
    } else if (std::isalnum(c) || c == ':' || c == '_' || (c == '.' && i != begin)) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out + ".mount";
}

MountOrder::MountOrder(std::string unit_dir, std::string service)
    : unit_dir_(std::move(unit_dir)), service_(std::move(service)) {}

std::string MountOrder::drop_in_path(const std::string& path) const {
  return unit_dir_ + "/" + mount_unit_name(path) + ".d/50-pxd.conf";
}

Status MountOrder::order_after_service(const std::string& path) {
  if (!enabled()) return Status::ok();
  const std::string file = drop_in_path(path);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(file).parent_path(), ec);
  if (ec)
    return io_error("cannot create " + std::filesystem::path(file).parent_path().string() + ": " +
                    ec.message());
  // Read when systemd loads the mount unit, which it does when the mount appears.
  PXD_RETURN_IF_ERROR(write_file_atomically(file, "# Written by pxd: unmount before " + service_ +
                                                      " stops (pxd removes it at unmount)\n"
                                                      "[Unit]\nAfter=" +
                                                      service_ + "\n"));
  return Status::ok();
}

void MountOrder::unordered(const std::string& path) {
  if (!enabled()) return;
  const std::filesystem::path file = drop_in_path(path);
  std::error_code ec;
  std::filesystem::remove(file, ec);
  if (ec) PXD_LOG(kWarn) << "cannot remove " << file.string() << ": " << ec.message();
  std::filesystem::remove(file.parent_path(), ec);  // only if empty
}

}  // namespace pxd::daemon
