// daemon/ublk_frontend.h: attaching a volume through the kernel's ublk driver.
//
// The main frontend (DESIGN.md): /dev/ublkb<N>, served by pxd itself. Each device's
// queue threads (ublk/device.h) take the kernel's requests and run them straight on the
// engine Volume, on the same io_uring as the pool I/O: no socket, relay, FUSE file or
// extra copy between the block layer and the pool, which is why the Device lives in
// pxd and not in a helper process as the NBD fallback's nbdfuse does. The device outlives
// pxd anyway: ublk user recovery keeps it, its I/O waiting, when pxd dies or stops, and
// the next pxd takes it over (adopt(), before READY). doc/attach.md and doc/ublk.md give
// the recovery sequence and the rules below.
//
// Ownership: every device pxd makes carries an owner tag (ublk::DeviceOptions::owner,
// kept by the driver): "px" in the high 16 bits and a 16-bit hash of the node's pool uuid
// in the low ones (owner_tag()). adopt() recovers only a device with this tag and the
// attachment's volume id; remove_stale() deletes only devices with this tag that the
// state does not name and no live process serves. Devices of other ublk servers, and of
// a pxd on another pool, are never touched.
//
// Thread safety: the Frontend methods are called by the AttachManager under its mutex,
// except available(), which may run concurrently with them. They block while the driver
// works (seconds at most); the queue threads belong to the Devices.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "daemon/attach.h"
#include "engine/volume.h"
#include "ublk/device.h"

namespace pxd::daemon {

struct UblkConfig {
  // Opens the engine Volume of `target` (a snapshot read-only). The Volumes' pool must
  // outlive the frontend.
  std::function<Result<std::shared_ptr<Volume>>(const AttachTarget&)> open_volume;
  uint32_t owner = 0;                     // owner_tag() of this node's pool
  uint32_t discard_granularity = 1u << 20;  // the pool's chunk size
  ublk::CopyMode copy_mode = ublk::CopyMode::kAuto;
  // Run once, the first time ublk_drv is missing, to load it on demand ("" never).
  std::string modprobe = "modprobe";
};

// "px" and a hash of the pool uuid: the owner tag of the devices of the pxd on that pool.
uint32_t owner_tag(const std::string& pool_uuid);

class UblkFrontend final : public Frontend {
 public:
  explicit UblkFrontend(UblkConfig config) : config_(std::move(config)) {}
  // Releases every device still served (as release_all()).
  ~UblkFrontend() override;

  std::string name() const override { return "ublk"; }
  // /dev/ublk-control answers (after one modprobe of ublk_drv if it was missing) and the
  // driver offers user recovery; else why not, e.g. "ublk_drv not available: ...".
  Status available() const override;
  Status attach(const AttachTarget& target, Attachment& att) override;
  // kBusy if the device is in use (mounted, or held exclusively) unless `force`; stops
  // and deletes it: requests in flight complete first, later ones fail.
  Status detach(const Attachment& att, bool force) override;
  // Device::recover() of the device att.device names, if it is ours and serves the volume.
  Status adopt(const AttachTarget& target, Attachment& att) override;
  void remove_stale(const std::vector<Attachment>& known) override;
  // Online where the driver can (UBLK_F_UPDATE_SIZE, Linux 6.14+), else kUnsupported.
  Status resize(Attachment& att, uint64_t size_bytes) override;
  // Releases every device: each stays, quiesced, for the next pxd's adopt().
  void release_all() override;

 private:
  ublk::DeviceOptions device_options() const;
  // Runs config_.modprobe once per process; returns its failure, if any, for messages.
  std::string load_driver_once() const;

  const UblkConfig config_;
  mutable std::mutex modprobe_mu_;
  mutable bool modprobe_tried_ = false;  // GUARDED_BY(modprobe_mu_)
  mutable std::string modprobe_result_;  // GUARDED_BY(modprobe_mu_): "" or why it failed
  std::map<uint64_t, std::unique_ptr<ublk::Device>> devices_;  // by volume id
};

// The N of "/dev/ublkbN", or -1.
int ublk_device_number(const std::string& device_path);

}  // namespace pxd::daemon
