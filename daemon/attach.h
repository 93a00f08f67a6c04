// daemon/attach.h: volumes attached on this host as /dev/pxd<ID>, and their mounts.
//
// The AttachManager turns "attach volume v" into a block device through a Frontend
// (ublk where the kernel has it, else the NBD fallback: pxd's NBD export -> nbdfuse ->
// loop device), links /dev/pxd<ID> to it, and mounts filesystems on it, counting mounts
// per path. What is attached and mounted is kept in a state file in the data dir, so a
// restarted pxd re-adopts live devices, re-creates missing ones (after a reboot) and
// removes devices, FUSE mounts and links it left behind that the state does not name.
// doc/attach.md has the reasons and the state file's format.
//
// Thread safety: every method may be called from any thread; they are serialized by an
// internal mutex and may block (mkfs, mount, starting helpers). Not for ring threads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace pxd::daemon {

// The volume or snapshot to attach, as the Node describes it.
struct AttachTarget {
  uint64_t volume_id = 0;
  std::string name;
  uint32_t block_size = 4096;
  bool read_only = false;  // snapshots
};

struct MountRecord {
  std::string fs;     // what is mounted ("ext4", "xfs")
  uint32_t refs = 0;  // mount requests not yet undone
};

struct Attachment {
  uint64_t volume_id = 0;
  std::string name;
  bool read_only = false;
  uint32_t block_size = 4096;
  std::string frontend;  // "nbd-loop" or "ublk"
  std::string device;    // the real node, e.g. /dev/loop3
  std::string link;      // /dev/pxd<ID>
  int64_t helper_pid = 0;  // the frontend's helper process (nbdfuse), if any
  bool attached_by_mount = false;  // detach when the last mount goes
  std::map<std::string, MountRecord> mounts;  // by mount path
  std::string error;  // set when a restart could not re-establish it
};

// One way to make a block device for a volume.
class Frontend {
 public:
  virtual ~Frontend() = default;
  virtual std::string name() const = 0;
  // Whether this host can use it now (kernel support, helpers installed).
  virtual Status available() const = 0;
  // Makes the device; sets att.device and the frontend's own fields.
  virtual Status attach(const AttachTarget& target, Attachment& att) = 0;
  // Removes the device. A busy device is kBusy unless `force`.
  virtual Status detach(const Attachment& att, bool force) = 0;
  // After a restart: whether the device and its helpers are still in place.
  virtual bool alive(const Attachment& att) = 0;
  // Removes devices, mounts and helpers of this frontend that `known` does not list.
  virtual void remove_stale(const std::vector<Attachment>& known) = 0;
};

struct AttachConfig {
  std::string state_path;        // <data dir>/attachments.json
  std::string device_dir = "/dev";  // where the pxd<ID> links go
};

struct MountResult {
  Attachment attachment;
  std::string fs;        // the filesystem mounted
  bool made_fs = false;  // this mount created it
};

class AttachManager {
 public:
  // Frontends in order of preference. Reads the state file (a missing file is an empty
  // state; a corrupt one is an error naming the file).
  static Result<std::unique_ptr<AttachManager>> open(
      AttachConfig config, std::vector<std::unique_ptr<Frontend>> frontends);

  // After a restart: keeps attachments whose devices are alive, re-creates the others
  // (and their mounts) through `lookup` (which says whether the volume still exists), and
  // removes what the state does not name. Problems are logged and kept in
  // Attachment::error; they do not stop pxd.
  void reconcile(const std::function<std::optional<AttachTarget>(const Attachment&)>& lookup);

  // Idempotent: an attached volume returns its attachment.
  Result<Attachment> attach(const AttachTarget& target);
  // Refused while mounted unless `force` (which unmounts lazily first).
  Status detach(const std::string& name, bool force);
  // Attaches if needed, makes `fs` if the device has no filesystem (unless fs is "none":
  // then a raw volume cannot be mounted), mounts at `path` or counts one more mount there.
  Result<MountResult> mount(const AttachTarget& target, const std::string& path,
                            const std::string& fs);
  // Undoes one mount at `path`; unmounts when none remain, then detaches if the mount
  // attached it.
  Result<Attachment> unmount(const std::string& name, const std::string& path);

  std::optional<Attachment> find(const std::string& name);
  std::vector<Attachment> list();
  // The frontend an attach would use now, or why none can.
  Result<std::string> preferred_frontend();

 private:
  AttachManager(AttachConfig config, std::vector<std::unique_ptr<Frontend>> frontends);
  Status load();
  Status save();  // REQUIRES: mu_ held
  Result<Frontend*> pick_frontend();
  Frontend* frontend_named(const std::string& name);
  Result<Attachment*> attach_locked(const AttachTarget& target);  // REQUIRES: mu_ held
  Status detach_locked(const std::string& name, bool force);     // REQUIRES: mu_ held
  Status link_device(const Attachment& att);
  void unlink_device(const Attachment& att);

  const AttachConfig config_;
  std::vector<std::unique_ptr<Frontend>> frontends_;
  std::mutex mu_;
  std::map<std::string, Attachment> attachments_;  // by name, GUARDED_BY(mu_)
};

}  // namespace pxd::daemon
