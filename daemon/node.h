// daemon/node.h: what one pxd node does for its control API, in engine terms.
//
// The Node owns the node's pool and applies the control API's rules on top of the
// engine: create is idempotent by name, filesystem type and replica count are kept as
// volume attributes, replication is refused without a cluster, label selectors filter
// lists. It knows nothing of Cap'n Proto (the ControlServer translates).
//
// Thread safety: every method may be called from any thread; the engine serializes
// control operations.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/attach.h"
#include "daemon/config.h"
#include "engine/pool.h"
#include "nbd/server.h"

namespace pxd::daemon {

struct CreateRequest {
  std::string name;
  uint64_t size_bytes = 0;
  uint32_t block_size = 4096;
  std::string fs = "ext4";
  Labels labels;
  uint32_t replicas = 1;
};

// What a client sees of a volume or snapshot.
struct VolumeView {
  ObjectInfo info;
  std::string fs;
  uint32_t replicas = 1;
  std::string parent;       // snapshot: its volume; clone: its origin
  std::string device_path;  // /dev/pxd<ID>; empty while detached
  // What the attached device shows: below info.size_bytes after a grow the frontend could
  // not pass on while attached (detach and attach again); 0 while detached or not known.
  uint64_t device_size_bytes = 0;
  std::string state = "detached";  // "attached", "mounted", or "error" (attach_error says)
  std::vector<std::string> mounts;
  std::string frontend;
  std::string attach_error;
  std::string pool = "default";
};

struct NodeView {
  std::string node_name;
  Labels labels;
  std::string data_dir;
  uint64_t uptime_seconds = 0;
  std::vector<PoolUsage> pools;
  uint32_t volumes = 0;
  uint32_t snapshots = 0;
  std::string frontend;  // what an attach would use now, or why nothing can
  std::string nbd_socket;
  std::string docker_plugin_socket;
};

class Node : public nbd::ExportProvider {
 public:
  // Opens the pool under config.data_dir, creating it (and its default sparse file) on
  // first start. Devices named in the config must match an existing pool's.
  static Result<std::unique_ptr<Node>> start(const Config& config);
  // Stops serving attached devices before the pool closes (see stop_attachments()).
  ~Node() override;

  NodeView status();
  Result<VolumeView> create_volume(const CreateRequest& request);
  Result<std::vector<VolumeView>> list(const Labels& selector, bool include_snapshots);
  Result<VolumeView> inspect(const std::string& name);
  // size_bytes 0 leaves the size. With `labels`: replace them, or with `merge` set those
  // and remove the keys in `remove`, keeping the rest. A grown attached volume's device
  // is grown too where the frontend can do it online; where it cannot, the update still
  // succeeds, the view's device_size_bytes stays smaller and the log says why.
  Result<VolumeView> update(const std::string& name, uint64_t size_bytes, const Labels* labels,
                            bool merge = false, const std::vector<std::string>& remove = {});
  Status delete_volume(const std::string& name, bool force);
  Result<VolumeView> create_snapshot(const std::string& volume, const std::string& name,
                                     const Labels& labels);
  Result<std::vector<VolumeView>> list_snapshots(const std::string& volume);
  Status delete_snapshot(const std::string& name);
  Result<VolumeView> clone(const std::string& source, const std::string& name,
                           const Labels& labels);
  Result<VolumeView> restore(const std::string& volume, const std::string& snapshot);
  // Makes everything durable (at shutdown).
  Status sync();

  // Host attachment and mounts (daemon/attach.h has the rules).
  Result<VolumeView> attach(const std::string& name);
  Result<VolumeView> detach(const std::string& name, bool force);
  // Returns the view and whether this mount made the filesystem.
  Result<std::pair<VolumeView, bool>> mount(const std::string& name, const std::string& path);
  Result<VolumeView> unmount(const std::string& name, const std::string& path);
  // After a restart, once the NBD server listens: re-adopts or re-creates attachments and
  // removes stale devices (see AttachManager::reconcile).
  void restore_attachments();
  // pxd is stopping: ublk devices are released for the next pxd to recover, or with
  // `detach_all` every volume is unmounted and detached (AttachManager::shutdown).
  void stop_attachments(bool detach_all);

  // nbd::ExportProvider: every volume (read-write) and snapshot (read-only) by name.
  Result<std::shared_ptr<Volume>> open_export(const std::string& name) override;
  std::vector<std::string> list_exports() override;

  static const char* default_pool_file() { return "pool0.img"; }

 private:
  Node(Config config, std::unique_ptr<Pool> pool, std::unique_ptr<AttachManager> attachments);
  VolumeView view(const ObjectInfo& info);
  Result<AttachTarget> target_of(const std::string& name);
  // Waits (bounded) until nothing has `name` open, e.g. after a detach the NBD relay's
  // connection closes a moment later.
  void wait_closed(const std::string& name);

  const Config config_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<AttachManager> attachments_;
  const std::chrono::steady_clock::time_point started_;
};

// Picks the default pool file size: 80% of the free space under `dir`, capped at 1 TiB,
// rounded down to a GiB. Fails if that leaves less than 1 GiB.
Result<uint64_t> default_pool_size(const std::string& dir);

}  // namespace pxd::daemon
