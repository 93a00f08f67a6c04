// daemon/filesystem.h: filesystems on attached volumes, and the host's mount table.
//
// pxd makes a volume's filesystem on its first mount only: it probes the device with
// libblkid and runs mkfs only when no filesystem (or other signature) is there, so a
// clone or a restored volume keeps its data. Mounts happen in the host's mount namespace
// (DESIGN.md: pxd never holds mounts of its own devices privately).
//
// Thread safety: free functions, callable from any thread; they block.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace pxd::daemon {

// The filesystems pxd makes. "none" leaves the volume raw.
Status check_fs_type(const std::string& fs);

// The signature on `device` ("ext4", "xfs", ..., "" if none).
Result<std::string> probe_fs(const std::string& device);
// mkfs.<fs> on `device`, without discarding (a fresh thin volume is all holes already).
Status make_fs(const std::string& device, const std::string& fs);
// Mounts `device` (filesystem `fs`) at `path`, creating the directory if needed.
// Read-only mounts skip journal recovery, which a snapshot cannot take.
Status mount_fs(const std::string& device, const std::string& path, const std::string& fs,
                bool read_only);
// Unmounts `path`; kBusy if something still uses it, unless `lazy`.
Status unmount_fs(const std::string& path, bool lazy);

struct MountEntry {
  std::string source;       // the device as the mount table says
  std::string mount_point;  // unescaped
  std::string fs_type;
};
// The current mount table of this mount namespace.
std::vector<MountEntry> mount_table();
bool is_mounted_at(const std::string& path);

// Absolute, normalized, no "..": what pxd accepts as a mount path.
Result<std::string> clean_mount_path(const std::string& path);

}  // namespace pxd::daemon
