// tools/docker-plugin/mount_ids.h: which Docker callers hold each volume mounted.
//
// Docker calls Mount once per container start with a unique ID and Unmount with the same
// ID when the container stops; several containers may share a volume. The plugin holds
// one pxd mount per volume while its ID set is not empty. The sets are kept in a file
// (replaced atomically after every change) so that a pxd restart keeps the count, with
// the kernel's boot ID: after a reboot no container of the old boot is running, so the
// sets of an older boot are dropped on load.
//
// File format (doc/docker.md): {"version": 1, "boot_id": "...",
//                               "volumes": {"db": ["<id>", ...]}}
//
// Thread safety: none; the plugin's event-loop thread owns it.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace pxd::docker {

class MountIds {
 public:
  // Reads `path` (a missing file is empty; a damaged one is an error naming it). `boot_id`
  // is this boot's; sets saved under another boot are dropped.
  static Result<MountIds> load(const std::string& path, const std::string& boot_id);

  bool contains(const std::string& volume, const std::string& id) const;
  size_t count(const std::string& volume) const;
  std::vector<std::string> volumes() const;

  // Each change is saved before it returns; on error the set is as before.
  Status add(const std::string& volume, const std::string& id);
  Status remove(const std::string& volume, const std::string& id);
  Status drop(const std::string& volume);  // all IDs of `volume`

  // Whether load() dropped the sets of an earlier boot.
  bool dropped_old_boot() const { return dropped_old_boot_; }

 private:
  MountIds(std::string path, std::string boot_id) : path_(path), boot_id_(boot_id) {}
  Status save(const std::map<std::string, std::set<std::string>>& volumes) const;

  std::string path_;
  std::string boot_id_;
  std::map<std::string, std::set<std::string>> volumes_;
  bool dropped_old_boot_ = false;
};

// /proc/sys/kernel/random/boot_id, or "" if unreadable.
std::string current_boot_id();

}  // namespace pxd::docker
