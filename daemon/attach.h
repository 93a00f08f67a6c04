// daemon/attach.h: volumes attached on this host as /dev/pxd<ID>, and their mounts.
//
// The AttachManager turns "attach volume v" into a block device through a Frontend
// (ublk where the kernel has it, served by pxd itself; else the NBD fallback: pxd's NBD
// export -> nbdfuse -> loop device), links /dev/pxd<ID> to it, and mounts filesystems on
// it, counting mounts per path. What is attached and mounted is kept in a state file in
// the data dir, so a restarted pxd re-adopts live devices, re-creates missing ones (after
// a reboot) and removes devices, FUSE mounts and links it left behind that the state does
// not name.
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
#include "daemon/mount_order.h"

namespace pxd::daemon {

// The volume or snapshot to attach, as the Node describes it.
struct AttachTarget {
  uint64_t volume_id = 0;
  std::string name;
  uint32_t block_size = 4096;
  uint64_t size_bytes = 0;
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
  std::string frontend;    // "nbd-loop" or "ublk"
  std::string device;      // the real node, e.g. /dev/loop3
  std::string link;        // /dev/pxd<ID>
  int64_t helper_pid = 0;  // the frontend's helper process (nbdfuse), if any
  // The size the device shows: the volume's at attach, until a resize reaches the device
  // (0: not known, from a state file older than this field).
  uint64_t device_size_bytes = 0;
  bool attached_by_mount = false;             // detach when the last mount goes
  std::map<std::string, MountRecord> mounts;  // by mount path
  std::string error;                          // set when a restart could not re-establish it
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
  // After a restart: takes over the device `att` names if it and its helpers are still in
  // place, so that it serves `target` again (ublk: user recovery; nbd-loop: its relay
  // reconnects by itself). An error means it is gone or not ours: the manager clears
  // what is left with detach(att, true) and attaches anew.
  virtual Status adopt(const AttachTarget& target, Attachment& att) = 0;
  // Removes devices, mounts and helpers of this frontend that `known` does not list.
  virtual void remove_stale(const std::vector<Attachment>& known) = 0;
  // Makes the device show the volume's new size `size_bytes` (and sets
  // att.device_size_bytes); kUnsupported, with the reason, where it cannot while attached.
  virtual Status resize(Attachment& att, uint64_t size_bytes) = 0;
  // pxd is stopping: stop serving, leaving every device for the next pxd to adopt.
  virtual void release_all() = 0;
};

struct AttachConfig {
  std::string state_path;           // <data dir>/attachments.json
  std::string device_dir = "/dev";  // where the pxd<ID> links go
  // pxd's systemd service unit ("" when not one): each mount is ordered after it, so
  // systemd unmounts before it stops pxd (daemon/mount_order.h). Drop-ins go in unit_dir.
  std::string service_unit;
  std::string unit_dir = "/run/systemd/system";
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
  // After the volume `name` grew to `size_bytes`: makes its device show it, if attached.
  // kUnsupported with the reason (and the device keeps its size) where the frontend
  // cannot while attached; OK if not attached.
  Status resize(const std::string& name, uint64_t size_bytes);
  // pxd is stopping. With `detach_all`, unmounts and detaches every volume (a mount that
  // cannot be unmounted keeps its volume attached); then every frontend releases what is
  // left for the next pxd (doc/attach.md, "Stopping").
  void shutdown(bool detach_all);
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
  // The frontend an attach would use now, or why none can; with the reasons preferred
  // frontends were passed over, e.g. "nbd-loop (ublk: ublk_drv not available: ...)".
  Result<std::string> preferred_frontend();

 private:
  struct Pick {
    Frontend* frontend = nullptr;
    std::string passed_over;  // "ublk: why; ..." for frontends before it that cannot serve
  };
  AttachManager(AttachConfig config, std::vector<std::unique_ptr<Frontend>> frontends);
  Status load();
  Status save();  // REQUIRES: mu_ held
  Result<Pick> pick_frontend();
  Frontend* frontend_named(const std::string& name);
  Result<Attachment*> attach_locked(const AttachTarget& target);  // REQUIRES: mu_ held
  Status detach_locked(const std::string& name, bool force);      // REQUIRES: mu_ held
  Status link_device(const Attachment& att);
  void unlink_device(const Attachment& att);
  // mount_fs() and unmount_fs() with the mount's order against pxd's unit kept beside.
  Status mount_ordered(const std::string& device, const std::string& path, const std::string& fs,
                       bool read_only);
  Status unmount_ordered(const std::string& path, bool lazy);

  const AttachConfig config_;
  MountOrder mount_order_;
  std::vector<std::unique_ptr<Frontend>> frontends_;
  std::mutex mu_;
  std::map<std::string, Attachment> attachments_;  // by name, GUARDED_BY(mu_)
};

}  // namespace pxd::daemon
