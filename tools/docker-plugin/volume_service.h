// tools/docker-plugin/volume_service.h: what the Docker plugin needs from pxd.
//
// The plugin keeps no catalog of its own: every answer comes from pxd's control API, so
// volumes made with pxctl and with Docker are the same volumes. VolumeService is that
// API as the plugin uses it, asynchronous on the plugin's kj event loop;
// ControlService (control_service.h) speaks Cap'n Proto to pxd, and unit tests use an
// in-memory one.
//
// Thread safety: called on the plugin's event-loop thread only.
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "tools/docker-plugin/protocol.h"

namespace pxd::docker {

// A volume or snapshot as pxd describes it (proto::Volume, the fields the plugin uses).
struct VolumeInfo {
  uint64_t id = 0;
  std::string name;
  bool is_snapshot = false;
  uint64_t size_bytes = 0;
  uint32_t block_size = 4096;
  std::string fs;
  Labels labels;
  std::string parent;
  std::string state;        // detached, attached, mounted, error
  std::string device_path;  // "" while detached
  std::vector<std::string> mounts;
  uint32_t replicas = 1;
  int64_t created_unix = 0;
};

struct VolumeSpec {
  std::string name;
  uint64_t size_bytes = 0;
  uint32_t block_size = 4096;
  std::string fs = "ext4";
  Labels labels;
  uint32_t replicas = 1;
};

class VolumeService {
 public:
  virtual ~VolumeService() noexcept(false) = default;
  virtual kj::Promise<Result<VolumeInfo>> inspect(std::string name) = 0;
  // Volumes only, no snapshots.
  virtual kj::Promise<Result<std::vector<VolumeInfo>>> list() = 0;
  // Idempotent by name and spec, as the control API's createVolume.
  virtual kj::Promise<Result<VolumeInfo>> create(VolumeSpec spec) = 0;
  // A writable clone of a snapshot, or of a volume through an implicit snapshot.
  virtual kj::Promise<Result<VolumeInfo>> clone(std::string source, std::string name,
                                                Labels labels) = 0;
  virtual kj::Promise<Result<VolumeInfo>> resize(std::string name, uint64_t size_bytes) = 0;
  // Refused while attached (no force).
  virtual kj::Promise<Status> remove(std::string name) = 0;
  // Attaches if needed, makes the filesystem on first use, mounts at `path` (counted per
  // path by pxd). The bool says whether this call made the filesystem.
  virtual kj::Promise<Result<std::pair<VolumeInfo, bool>>> mount(std::string name,
                                                                 std::string path) = 0;
  // Undoes one mount at `path`; at zero unmounts, and detaches what the mount attached.
  virtual kj::Promise<Result<VolumeInfo>> unmount(std::string name, std::string path) = 0;
};

}  // namespace pxd::docker
