// daemon/mount_order.h: shutting down, systemd unmounts pxd's filesystems before it stops
// pxd.
//
// A filesystem pxd mounts (pxctl host mount, the Docker plugin) becomes a mount unit that
// systemd makes from /proc/self/mountinfo, with no order against pxd's own unit. At
// shutdown both stop at once, and an unmount whose writes need a pxd that has already
// gone waits until its timeout and leaves the filesystem unclean. So before each mount,
// when pxd runs as a systemd service, order_after_service() writes a runtime drop-in for
// that mount unit, `After=<pxd's unit>`, which makes systemd stop the mount first;
// unordered() removes it after the unmount. Elsewhere (no systemd, a test's pxd in a
// scope) both do nothing.
//
// Thread safety: call with the AttachManager's lock held (it serializes mounts).
#pragma once

#include <string>

#include "common/status.h"

namespace pxd::daemon {

// The service unit this process runs in ("pxd.service"), or "" if none.
std::string own_service_unit();

// The mount unit name systemd gives the mount point `path` (absolute, clean):
// "/mnt/db-1" -> "mnt-db\x2d1.mount".
std::string mount_unit_name(const std::string& path);

class MountOrder {
 public:
  // `unit_dir`: where runtime units live (/run/systemd/system). `service`: pxd's unit, ""
  // to do nothing.
  MountOrder(std::string unit_dir, std::string service);

  // Writes the drop-in for `path` (before mounting it); an error if it cannot.
  Status order_after_service(const std::string& path);
  // Removes it (after unmounting); missing files are fine.
  void unordered(const std::string& path);

  // The drop-in file for `path`.
  std::string drop_in_path(const std::string& path) const;
  bool enabled() const { return !service_.empty(); }

 private:
  std::string unit_dir_, service_;
};

}  // namespace pxd::daemon
