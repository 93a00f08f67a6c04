// ublk/device.h: a Volume served as a Linux block device through the kernel's ublk driver.
//
// This is where to start reading ublk/. A Device is one /dev/ublkbN whose requests the
// kernel hands to this process: ADD_DEV and SET_PARAMS describe it (sizes from the Volume,
// a volatile write cache with FUA, discard and write-zeroes at the pool's chunk
// granularity), one thread per hardware queue fetches requests and runs them on the
// Volume, START_DEV makes the disk appear. How the protocol is used, and why: doc/ublk.md.
//
// Devices are created recoverable by default (UBLK_F_USER_RECOVERY with
// UBLK_F_USER_RECOVERY_REISSUE): if this process dies or releases a device, the disk stays,
// its I/O waits (requests the dead server held are re-issued later), and a new process
// takes it over with Device::recover(). list_devices() shows what a previous process left.
//
// Threads:
//  * create(), recover(), stop(), release(), resize(), the destructor, probe(),
//    list_devices(), device_info() and remove_device() run on the caller's thread and may
//    block for seconds (they wait for the driver): call them from a control thread, never
//    from a queue thread or a Volume completion.
//  * Each hardware queue has its own thread owning one IoRing that carries both the ublk
//    FETCH_REQ / COMMIT_AND_FETCH_REQ commands and the Volume's pool I/O
//    (Volume::submit on the same ring), so a queue thread waits in exactly one place and
//    never blocks elsewhere. The Volume's completions run on these threads.
//  * dev_id(), block_path(), queues(), user_copy(), stats() may be called from any thread.
//
// Lifetime: the Device holds the Volume; the Volume's Pool must outlive the Device (stop
// or release it before closing the pool). Every request the kernel hands over is completed
// on every path, errors included, before its buffer is freed; requests a released device
// leaves behind are re-issued to the next server.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/volume.h"

namespace pxd::ublk {

class Queue;

// The driver's control node; missing while ublk_drv is not loaded.
inline constexpr const char* kControlPath = "/dev/ublk-control";

// What the running ublk driver offers.
struct Features {
  // The driver answered GET_FEATURES (Linux 6.5+); without it `flags` is 0 and the
  // capabilities below are those every ublk driver had (recovery with re-issue).
  bool get_features = false;
  uint64_t flags = 0;  // UBLK_F_* bits
  bool ioctl_encoded = false;
  bool user_copy = false;
  bool user_recovery = false;
  bool recovery_reissue = false;
  bool update_size = false;  // a live device's size can change (Linux 6.14+)
  // "user_copy user_recovery ..." for logs and benchmark notes.
  std::string describe() const;
};

// kUnsupported if /dev/ublk-control is missing (ublk_drv not loaded), so the caller can
// fall back to another frontend.
Result<Features> probe();

// How request data moves between the kernel and the server's buffers.
enum class CopyMode : uint8_t {
  kAuto,        // the kernel copies (measured faster: doc/ublk.md)
  kKernelCopy,  // the driver copies into and out of a per-tag buffer it was given
  kUserCopy,    // the server reads and writes the request's pages through /dev/ublkcN
};

struct DeviceOptions {
  int dev_id = -1;           // the N of /dev/ublkbN, or -1 for the first free one
  uint16_t queues = 0;       // hardware queues (threads); 0: min(4, online CPUs)
  uint16_t queue_depth = 128;
  uint32_t max_io_bytes = 1u << 20;  // largest request; multiple of 4096, at most 32 MiB
  // Discard and write-zeroes granularity and alignment: the pool's chunk size, so that
  // a discard the filesystem sends can return whole chunks.
  uint32_t discard_granularity = 1u << 20;
  bool recoverable = true;  // USER_RECOVERY (+ REISSUE): survives the server's death
  // Who made the device, kept by the driver beside the volume id (DeviceInfo::owner), so
  // that a server can tell its own devices from other servers' after a restart. recover()
  // takes over only a device with the same owner.
  uint32_t owner = 0;
  CopyMode copy_mode = CopyMode::kAuto;
  // recover(): how long to wait for the driver to finish quiescing a device whose
  // previous server has just died.
  uint32_t recover_timeout_ms = 60'000;
};

enum class DeviceState : uint8_t {
  kDead,      // added but not started, or stopped
  kLive,      // served
  kQuiesced,  // recoverable, its server gone: I/O waits for recover()
  kFailIo,    // recoverable, its server gone, I/O fails until recover()
  kUnknown,
};
const char* device_state_name(DeviceState state);

struct DeviceInfo {
  int dev_id = -1;
  DeviceState state = DeviceState::kUnknown;
  uint16_t queues = 0;
  uint16_t queue_depth = 0;
  uint32_t max_io_bytes = 0;
  pid_t server_pid = -1;  // as the driver recorded it; the process may be gone
  uint64_t flags = 0;     // UBLK_F_* the device was created with
  // The id of the Volume the device serves and DeviceOptions::owner, kept by the driver
  // with the device (the 64-bit ublksrv_flags field of its info: owner in the high half,
  // volume id in the low half), so a restarted daemon knows what is its and what to recover.
  uint64_t volume_id = 0;
  uint32_t owner = 0;
  bool recoverable() const;
  bool user_copy() const;
};

// Every ublk device of this host, in dev id order. kUnsupported without ublk_drv.
Result<std::vector<DeviceInfo>> list_devices();
// kNotFound if there is no device `dev_id`.
Result<DeviceInfo> device_info(int dev_id);
// Stops and deletes device `dev_id` that no Device of this process serves: the orphan a
// dead server left. Requests waiting on it fail. kBusy if a live process serves it.
Status remove_device(int dev_id);

struct DeviceStats {
  uint64_t requests = 0;  // completed back to the kernel
  uint64_t errors = 0;    // of which with an error
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
};

class Device {
 public:
  // Adds, configures and starts a new device serving `volume` (whose id must fit in 32
  // bits). On failure nothing is left behind (the device is deleted again).
  static Result<std::unique_ptr<Device>> create(std::shared_ptr<Volume> volume,
                                                const DeviceOptions& options);
  // Takes over device `dev_id` whose server died or released it: the device keeps its
  // queues, depth and copy mode (`options` gives only owner and recover_timeout_ms).
  // `volume` must be the one the device served and `options.owner` its owner
  // (DeviceInfo::volume_id and owner, else kFailedPrecondition), the volume at least as
  // large as the device. kBusy if a live process serves the device; kNotFound if there is
  // no such device; kFailedPrecondition if it is not recoverable.
  static Result<std::unique_ptr<Device>> recover(int dev_id, std::shared_ptr<Volume> volume,
                                                 const DeviceOptions& options);

  // A device neither stopped nor released: release() if it is recoverable (the daemon
  // exiting leaves its disks for the next one), else stop(true).
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  int dev_id() const { return dev_id_; }
  std::string block_path() const;  // /dev/ublkbN
  std::string char_path() const;   // /dev/ublkcN
  uint16_t queues() const { return queue_count_; }
  uint16_t queue_depth() const { return depth_; }
  bool user_copy() const { return user_copy_; }
  bool recoverable() const;
  // The size the kernel shows (set at create, recover and resize).
  uint64_t size_bytes() const { return size_bytes_.load(); }
  const std::shared_ptr<Volume>& volume() const { return volume_; }
  DeviceStats stats() const;

  // True if something holds the block device exclusively: a mounted filesystem, a
  // device-mapper or md device on it. (An exclusive open attempt; cheap.)
  bool in_use() const;

  // Removes the disk (I/O in flight completes first; later I/O fails), ends the queue
  // threads and, with `delete_device`, deletes the device so its id is free again.
  // Idempotent. The device must not be in use by a mounted filesystem the caller cares
  // about: check in_use() first.
  Status stop(bool delete_device = true);

  // Stops serving but leaves the device for recover() by another Device (of this or a
  // later process): the queue threads finish the requests already running on the Volume
  // and exit; requests not yet started are re-issued to the next server. I/O to the disk
  // waits meanwhile. A device that is not recoverable is removed by the driver instead.
  Status release();

  // Tells the kernel the device's new size (at most the Volume's). kUnsupported if the
  // driver cannot change a live device's size (before Linux 6.14): detach and attach
  // again to see the new size.
  Status resize(uint64_t new_size_bytes);

 private:
  Device() = default;
  Status start_queues(uint16_t count, uint32_t max_io_bytes);
  // Ends the queue threads and closes /dev/ublkcN. `release`: the device stays.
  void end_queues(bool release);

  std::shared_ptr<Volume> volume_;
  int dev_id_ = -1;
  uint64_t flags_ = 0;
  uint16_t depth_ = 0;
  uint16_t queue_count_ = 0;
  bool user_copy_ = false;
  bool ioctl_encode_ = false;
  int char_fd_ = -1;
  mutable std::mutex queues_mu_;  // queues_ and ended_stats_ for stats() from any thread
  std::vector<std::unique_ptr<Queue>> queues_;
  DeviceStats ended_stats_;  // of queues already ended
  std::atomic<bool> finished_{false};  // stopped or released
  std::atomic<uint64_t> size_bytes_{0};
};

}  // namespace pxd::ublk
