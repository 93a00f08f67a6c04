#include "ublk/device.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/log.h"
#include "ublk/control.h"
#include "ublk/queue.h"

namespace pxd::ublk {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxIoBytes = 1u << UBLK_IO_BUF_BITS;  // 32 MiB: the driver's limit
constexpr uint32_t kMaxDiscardSectors = (1u << 30) >> 9;  // 1 GiB per request

std::string device_name(int dev_id) { return "ublk device " + std::to_string(dev_id); }

// A control call's failure as a Status: what was asked, of which device, and why.
Status control_error(int rc, const std::string& what, int dev_id) {
  std::string context = what + " (" + device_name(dev_id) + ")";
  switch (-rc) {
    case ENODEV:
      return not_found(device_name(dev_id) + " does not exist");
    case EEXIST:
      return already_exists(device_name(dev_id) + " already exists");
    case EBUSY:
      return busy(context + ": device busy");
    case ETIMEDOUT:
      return io_error(context + ": the ublk driver did not answer in time");
    case EOPNOTSUPP:
      return unsupported(context + ": not supported by this kernel's ublk driver");
    default:
      return errno_status(-rc, context);
  }
}

DeviceState state_of(uint16_t state) {
  switch (state) {
    case UBLK_S_DEV_DEAD:
      return DeviceState::kDead;
    case UBLK_S_DEV_LIVE:
      return DeviceState::kLive;
    case UBLK_S_DEV_QUIESCED:
      return DeviceState::kQuiesced;
    case UBLK_S_DEV_FAIL_IO:
      return DeviceState::kFailIo;
    default:
      return DeviceState::kUnknown;
  }
}

DeviceInfo info_of(const ublksrv_ctrl_dev_info& raw) {
  DeviceInfo info;
  info.dev_id = static_cast<int>(raw.dev_id);
  info.state = state_of(raw.state);
  info.queues = raw.nr_hw_queues;
  info.queue_depth = raw.queue_depth;
  info.max_io_bytes = raw.max_io_buf_bytes;
  info.server_pid = raw.ublksrv_pid;
  info.flags = raw.flags;
  info.volume_id = raw.ublksrv_flags & 0xffffffffu;
  info.owner = static_cast<uint32_t>(raw.ublksrv_flags >> 32);
  return info;
}

// True if `pid` names a live process other than this one.
bool other_live_process(pid_t pid) {
  if (pid <= 0 || pid == ::getpid()) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

int shift_of(uint32_t power_of_two) {
  int shift = 0;
  while ((1u << shift) < power_of_two) ++shift;
  return shift;
}

bool is_power_of_two(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

Status check_volume(const Volume* volume) {
  if (volume == nullptr) return invalid_argument("no volume");
  uint32_t bs = volume->block_size();
  if (bs != 512 && bs != 4096) {
    return invalid_argument("volume block size " + std::to_string(bs) + " is neither 512 nor 4096");
  }
  if (volume->size_bytes() == 0 || volume->size_bytes() % bs != 0) {
    return invalid_argument("volume size " + std::to_string(volume->size_bytes()) +
                            " is not a positive multiple of its block size");
  }
  return Status::ok();
}

ublk_params params_for(const Volume& volume, const DeviceOptions& options, uint32_t max_io_bytes) {
  ublk_params p;
  std::memset(&p, 0, sizeof(p));
  p.len = sizeof(p);
  p.types = UBLK_PARAM_TYPE_BASIC;
  ublk_param_basic& b = p.basic;
  // The volume's write cache is volatile (volume.h): FLUSH and FUA make writes durable.
  b.attrs = UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA;
  if (volume.read_only()) b.attrs |= UBLK_ATTR_READ_ONLY;
  b.logical_bs_shift = static_cast<uint8_t>(shift_of(volume.block_size()));
  b.physical_bs_shift = std::max<uint8_t>(12, b.logical_bs_shift);
  b.io_min_shift = b.physical_bs_shift;
  b.io_opt_shift = b.physical_bs_shift;
  b.max_sectors = max_io_bytes >> 9;
  b.dev_sectors = volume.size_bytes() >> 9;
  if (!volume.read_only()) {
    // Discard and write-zeroes return whole chunks to the pool: aligned to the chunk size,
    // the filesystem's discards line up with what can be freed.
    p.types |= UBLK_PARAM_TYPE_DISCARD;
    ublk_param_discard& d = p.discard;
    d.discard_alignment = 0;
    d.discard_granularity = options.discard_granularity;
    d.max_discard_sectors = kMaxDiscardSectors;
    d.max_write_zeroes_sectors = kMaxDiscardSectors;
    d.max_discard_segments = 1;
  }
  return p;
}

Result<int> open_char_device(const std::string& path) {
  // devtmpfs creates the node when the driver adds the device; udev may briefly replace it.
  auto deadline = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) return fd;
    int err = errno;
    if (err != ENOENT || Clock::now() > deadline) return errno_status(err, "open " + path);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

// ---- features and device listing ----------------------------------------------------------

std::string Features::describe() const {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!out.empty()) out += ' ';
    out += name;
  };
  add(get_features, "get_features");
  add(ioctl_encoded, "ioctl_encode");
  add(user_copy, "user_copy");
  add(user_recovery, "user_recovery");
  add(recovery_reissue, "recovery_reissue");
  add(update_size, "update_size");
  return out.empty() ? "none" : out;
}

Result<Features> probe() {
  PXD_TRY(auto control, Control::open());
  Features f;
  f.get_features = control->has_get_features();
  f.flags = control->features();
  if (f.get_features) {
    f.ioctl_encoded = (f.flags & UBLK_F_CMD_IOCTL_ENCODE) != 0;
    f.user_copy = (f.flags & UBLK_F_USER_COPY) != 0;
    f.user_recovery = (f.flags & UBLK_F_USER_RECOVERY) != 0;
    f.recovery_reissue = (f.flags & UBLK_F_USER_RECOVERY_REISSUE) != 0;
    f.update_size = (f.flags & UBLK_F_UPDATE_SIZE) != 0;
  } else {
    // Drivers older than GET_FEATURES (6.0 to 6.4) all had recovery with re-issue.
    f.user_recovery = true;
    f.recovery_reissue = true;
  }
  return f;
}

const char* device_state_name(DeviceState state) {
  switch (state) {
    case DeviceState::kDead:
      return "dead";
    case DeviceState::kLive:
      return "live";
    case DeviceState::kQuiesced:
      return "quiesced";
    case DeviceState::kFailIo:
      return "fail-io";
    case DeviceState::kUnknown:
      break;
  }
  return "unknown";
}

bool DeviceInfo::recoverable() const { return (flags & UBLK_F_USER_RECOVERY) != 0; }
bool DeviceInfo::user_copy() const { return (flags & UBLK_F_USER_COPY) != 0; }

Result<DeviceInfo> device_info(int dev_id) {
  if (dev_id < 0) return invalid_argument("bad ublk device id " + std::to_string(dev_id));
  PXD_TRY(auto control, Control::open());
  ublksrv_ctrl_dev_info raw;
  int rc = control->get_dev_info(static_cast<uint32_t>(dev_id), &raw);
  if (rc < 0) return control_error(rc, "get device info", dev_id);
  return info_of(raw);
}

Result<std::vector<DeviceInfo>> list_devices() {
  PXD_TRY(auto control, Control::open());
  std::vector<DeviceInfo> out;
  DIR* dir = ::opendir("/sys/class/ublk-char");
  if (dir == nullptr) return out;  // the class appears with the first device on some kernels
  std::vector<int> ids;
  while (dirent* entry = ::readdir(dir)) {
    int id = -1;
    char tail = 0;
    if (std::sscanf(entry->d_name, "ublkc%d%c", &id, &tail) == 1 && id >= 0) ids.push_back(id);
  }
  ::closedir(dir);
  std::sort(ids.begin(), ids.end());
  for (int id : ids) {
    ublksrv_ctrl_dev_info raw;
    int rc = control->get_dev_info(static_cast<uint32_t>(id), &raw);
    if (rc == -ENODEV) continue;  // deleted meanwhile
    if (rc < 0) return control_error(rc, "get device info", id);
    out.push_back(info_of(raw));
  }
  return out;
}

Status remove_device(int dev_id) {
  if (dev_id < 0) return invalid_argument("bad ublk device id " + std::to_string(dev_id));
  PXD_TRY(auto control, Control::open());
  ublksrv_ctrl_dev_info raw;
  int rc = control->get_dev_info(static_cast<uint32_t>(dev_id), &raw);
  if (rc < 0) return control_error(rc, "get device info", dev_id);
  if (raw.state == UBLK_S_DEV_LIVE && other_live_process(raw.ublksrv_pid)) {
    return busy(device_name(dev_id) + " is served by live process " +
                std::to_string(raw.ublksrv_pid));
  }
  rc = control->stop_dev(static_cast<uint32_t>(dev_id));
  if (rc < 0 && rc != -ENODEV) return control_error(rc, "stop", dev_id);
  rc = control->del_dev(static_cast<uint32_t>(dev_id));
  if (rc < 0 && rc != -ENODEV) return control_error(rc, "delete", dev_id);
  return Status::ok();
}

// ---- Device -----------------------------------------------------------------------------

std::string Device::block_path() const { return "/dev/ublkb" + std::to_string(dev_id_); }
std::string Device::char_path() const { return "/dev/ublkc" + std::to_string(dev_id_); }
bool Device::recoverable() const { return (flags_ & UBLK_F_USER_RECOVERY) != 0; }

DeviceStats Device::stats() const {
  std::lock_guard<std::mutex> lock(queues_mu_);
  DeviceStats s = ended_stats_;
  for (const auto& q : queues_) {
    const QueueCounters& c = q->counters();
    s.requests += c.requests.load(std::memory_order_relaxed);
    s.errors += c.errors.load(std::memory_order_relaxed);
    s.read_bytes += c.read_bytes.load(std::memory_order_relaxed);
    s.write_bytes += c.write_bytes.load(std::memory_order_relaxed);
  }
  return s;
}

bool Device::in_use() const {
  int fd = ::open(block_path().c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
  if (fd < 0) return errno == EBUSY;
  ::close(fd);
  return false;
}

Status Device::start_queues(uint16_t count, uint32_t max_io_bytes) {
  PXD_TRY(char_fd_, open_char_device(char_path()));
  for (uint16_t q = 0; q < count; ++q) {
    QueueConfig config;
    config.char_fd = char_fd_;
    config.queue_id = q;
    config.depth = depth_;
    config.max_io_bytes = max_io_bytes;
    config.user_copy = user_copy_;
    config.ioctl_encode = ioctl_encode_;
    config.volume = volume_.get();
    PXD_TRY(auto queue, Queue::start(config));
    std::lock_guard<std::mutex> lock(queues_mu_);
    queues_.push_back(std::move(queue));
  }
  queue_count_ = count;
  return Status::ok();
}

void Device::end_queues(bool release) {
  (void)release;  // the same steps either way; the driver decides what becomes of the disk
  for (auto& q : queues_) q->begin_exit();
  for (auto& q : queues_) q->join();
  DeviceStats total = stats();
  std::lock_guard<std::mutex> lock(queues_mu_);
  ended_stats_ = total;
  queues_.clear();  // closes each ring, unmaps the buffers
  if (char_fd_ >= 0) {
    ::close(char_fd_);
    char_fd_ = -1;
  }
}

Result<std::unique_ptr<Device>> Device::create(std::shared_ptr<Volume> volume,
                                               const DeviceOptions& options) {
  PXD_RETURN_IF_ERROR(check_volume(volume.get()));
  if (options.queue_depth == 0 || options.queue_depth > UBLK_MAX_QUEUE_DEPTH) {
    return invalid_argument("queue depth " + std::to_string(options.queue_depth) +
                            " is outside 1.." + std::to_string(UBLK_MAX_QUEUE_DEPTH));
  }
  if (options.max_io_bytes < 4096 || options.max_io_bytes % 4096 != 0 ||
      options.max_io_bytes > kMaxIoBytes) {
    return invalid_argument("max I/O size " + std::to_string(options.max_io_bytes) +
                            " is not a multiple of 4096 between 4 KiB and 32 MiB");
  }
  if (!is_power_of_two(options.discard_granularity) ||
      options.discard_granularity < volume->block_size()) {
    return invalid_argument("discard granularity " + std::to_string(options.discard_granularity) +
                            " is not a power of two at least the block size");
  }
  if (options.dev_id < -1) return invalid_argument("bad ublk device id " + std::to_string(options.dev_id));
  if (volume->id() > UINT32_MAX) {
    return invalid_argument("volume id " + std::to_string(volume->id()) +
                            " does not fit the 32 bits a ublk device keeps");
  }

  PXD_TRY(auto control, Control::open());
  uint64_t features = control->features();
  bool known = control->has_get_features();
  if (options.copy_mode == CopyMode::kUserCopy && known && !(features & UBLK_F_USER_COPY)) {
    return unsupported("this kernel's ublk driver has no user copy (UBLK_F_USER_COPY, Linux 6.5+)");
  }

  uint16_t queues = options.queues;
  if (queues == 0) queues = static_cast<uint16_t>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));

  ublksrv_ctrl_dev_info info;
  std::memset(&info, 0, sizeof(info));
  info.nr_hw_queues = queues;
  info.queue_depth = options.queue_depth;
  info.max_io_buf_bytes = options.max_io_bytes;
  info.dev_id = options.dev_id < 0 ? UINT32_MAX : static_cast<uint32_t>(options.dev_id);
  info.ublksrv_flags = (static_cast<uint64_t>(options.owner) << 32) | volume->id();
  if (options.recoverable) info.flags |= UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE;
  if (options.copy_mode == CopyMode::kUserCopy) info.flags |= UBLK_F_USER_COPY;
  if (features & UBLK_F_UPDATE_SIZE) info.flags |= UBLK_F_UPDATE_SIZE;
  int rc = control->add_dev(&info);
  if (rc < 0) return control_error(rc, "add", options.dev_id);

  std::unique_ptr<Device> dev(new Device());
  dev->volume_ = std::move(volume);
  dev->dev_id_ = static_cast<int>(info.dev_id);
  dev->flags_ = info.flags;
  dev->depth_ = info.queue_depth;
  dev->user_copy_ = (info.flags & UBLK_F_USER_COPY) != 0;
  dev->ioctl_encode_ = (info.flags & UBLK_F_CMD_IOCTL_ENCODE) != 0;

  // From here on a failure deletes the half-made device again.
  auto undo = [&](Status status) -> Status {
    dev->finished_ = true;
    // STOP_DEV of a device that never started only ends the queues' fetches.
    int stop_rc = control->stop_dev(info.dev_id);
    dev->end_queues(false);
    int del_rc = control->del_dev(info.dev_id);
    if (stop_rc < 0 || del_rc < 0) {
      PXD_LOG(kWarn) << "cleanup of " << device_name(dev->dev_id_) << " failed: stop "
                     << stop_rc << ", delete " << del_rc;
    }
    return status;
  };
  if (options.recoverable && !dev->recoverable()) {
    return undo(unsupported("this kernel's ublk driver cannot make the device recoverable"));
  }
  if (options.copy_mode == CopyMode::kUserCopy && !dev->user_copy_) {
    return undo(unsupported("this kernel's ublk driver refused user copy"));
  }

  ublk_params params = params_for(*dev->volume_, options, info.max_io_buf_bytes);
  rc = control->set_params(info.dev_id, &params);
  if (rc < 0) return undo(control_error(rc, "set parameters", dev->dev_id_));

  dev->size_bytes_ = params.basic.dev_sectors << 9;
  Status started = dev->start_queues(info.nr_hw_queues, info.max_io_buf_bytes);
  if (!started.is_ok()) return undo(started);

  // Returns once every queue has fetched every tag; the disk then appears.
  rc = control->start_dev(info.dev_id, ::getpid());
  if (rc < 0) return undo(control_error(rc, "start", dev->dev_id_));

  PXD_LOG(kInfo) << "ublk: " << dev->block_path() << " serves volume " << dev->volume_->id()
                 << " (" << info.nr_hw_queues << " queues x " << info.queue_depth
                 << (dev->user_copy_ ? ", user copy" : ", kernel copy")
                 << (dev->recoverable() ? ", recoverable)" : ")");
  return dev;
}

Result<std::unique_ptr<Device>> Device::recover(int dev_id, std::shared_ptr<Volume> volume,
                                                const DeviceOptions& options) {
  PXD_RETURN_IF_ERROR(check_volume(volume.get()));
  if (dev_id < 0) return invalid_argument("bad ublk device id " + std::to_string(dev_id));
  PXD_TRY(auto control, Control::open());
  uint32_t id = static_cast<uint32_t>(dev_id);

  ublksrv_ctrl_dev_info info;
  int rc = control->get_dev_info(id, &info);
  if (rc < 0) return control_error(rc, "get device info", dev_id);
  if (!(info.flags & UBLK_F_USER_RECOVERY)) {
    return failed_precondition(device_name(dev_id) + " was not created recoverable");
  }
  DeviceInfo described = info_of(info);
  if (described.owner != options.owner) {
    return failed_precondition(device_name(dev_id) + " belongs to owner " +
                               std::to_string(described.owner) + ", not " +
                               std::to_string(options.owner));
  }
  if (described.volume_id != volume->id()) {
    return failed_precondition(device_name(dev_id) + " served volume " +
                               std::to_string(described.volume_id) + ", not volume " +
                               std::to_string(volume->id()));
  }
  ublk_params params;
  rc = control->get_params(id, &params);
  if (rc < 0) return control_error(rc, "get parameters", dev_id);
  if ((1u << params.basic.logical_bs_shift) != volume->block_size()) {
    return failed_precondition(device_name(dev_id) + " has block size " +
                               std::to_string(1u << params.basic.logical_bs_shift) +
                               ", the volume " + std::to_string(volume->block_size()));
  }
  if ((params.basic.dev_sectors << 9) > volume->size_bytes()) {
    return failed_precondition(device_name(dev_id) + " is larger than the volume");
  }

  // The previous server's death reaches the driver asynchronously: its queues are
  // cancelled, the disk quiesced, /dev/ublkcN closed. Wait for that, within bounds.
  auto deadline = Clock::now() + std::chrono::milliseconds(options.recover_timeout_ms);
  for (;;) {
    rc = control->get_dev_info(id, &info);
    if (rc < 0) return control_error(rc, "get device info", dev_id);
    if (info.state == UBLK_S_DEV_LIVE && other_live_process(info.ublksrv_pid)) {
      return busy(device_name(dev_id) + " is served by live process " +
                  std::to_string(info.ublksrv_pid));
    }
    if (info.state == UBLK_S_DEV_DEAD) {
      return failed_precondition(device_name(dev_id) +
                                 " is stopped: remove it and create a new device");
    }
    if (info.state == UBLK_S_DEV_QUIESCED || info.state == UBLK_S_DEV_FAIL_IO) {
      rc = control->start_user_recovery(id);
      if (rc == 0) break;
      if (rc != -EBUSY) return control_error(rc, "start recovery", dev_id);
    }
    if (Clock::now() > deadline) {
      return busy(device_name(dev_id) + " did not become recoverable within " +
                  std::to_string(options.recover_timeout_ms) + " ms (state " +
                  device_state_name(state_of(info.state)) + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  std::unique_ptr<Device> dev(new Device());
  dev->volume_ = std::move(volume);
  dev->dev_id_ = dev_id;
  dev->flags_ = info.flags;
  dev->depth_ = info.queue_depth;
  dev->user_copy_ = (info.flags & UBLK_F_USER_COPY) != 0;
  dev->ioctl_encode_ = (info.flags & UBLK_F_CMD_IOCTL_ENCODE) != 0;
  dev->size_bytes_ = params.basic.dev_sectors << 9;
  Status started = dev->start_queues(info.nr_hw_queues, info.max_io_buf_bytes);
  if (started.is_ok()) {
    rc = control->end_user_recovery(id, ::getpid());
    if (rc < 0) started = control_error(rc, "end recovery", dev_id);
  }
  if (!started.is_ok()) {
    // The device stays quiesced for another attempt.
    dev->finished_ = true;
    dev->end_queues(true);
    return started;
  }
  PXD_LOG(kInfo) << "ublk: recovered " << dev->block_path() << " for volume " << dev->volume_->id()
                 << " (" << info.nr_hw_queues << " queues x " << info.queue_depth << ")";
  return dev;
}

Device::~Device() {
  if (finished_.load()) return;
  Status s = recoverable() ? release() : stop(true);
  if (!s.is_ok()) PXD_LOG(kWarn) << "ublk: closing " << block_path() << ": " << s;
}

Status Device::stop(bool delete_device) {
  if (finished_.exchange(true)) return Status::ok();
  auto control = Control::open();
  if (!control) {
    end_queues(false);
    return control.error();
  }
  uint32_t id = static_cast<uint32_t>(dev_id_);
  // Waits for the requests in flight (the queue threads still serve them), removes the
  // disk and aborts the queues' fetches, which ends the threads.
  int stop_rc = control.value()->stop_dev(id);
  end_queues(false);
  if (stop_rc < 0 && stop_rc != -ENODEV) return control_error(stop_rc, "stop", dev_id_);
  if (delete_device) {
    int rc = control.value()->del_dev(id);
    if (rc < 0 && rc != -ENODEV) return control_error(rc, "delete", dev_id_);
  }
  PXD_LOG(kInfo) << "ublk: stopped " << block_path();
  return Status::ok();
}

Status Device::release() {
  if (!recoverable()) return stop(true);
  if (finished_.exchange(true)) return Status::ok();
  end_queues(true);
  PXD_LOG(kInfo) << "ublk: released " << block_path() << " for recovery";
  return Status::ok();
}

Status Device::resize(uint64_t new_size_bytes) {
  if (finished_.load()) return failed_precondition(device_name(dev_id_) + " is no longer served");
  if (new_size_bytes == 0 || new_size_bytes % volume_->block_size() != 0 ||
      new_size_bytes > volume_->size_bytes()) {
    return invalid_argument("size " + std::to_string(new_size_bytes) +
                            " is not a positive multiple of the block size within the volume");
  }
  if (!(flags_ & UBLK_F_UPDATE_SIZE)) {
    return unsupported("this kernel's ublk driver cannot change a live device's size "
                       "(UBLK_F_UPDATE_SIZE, Linux 6.14+): detach and attach again to see "
                       "the new size");
  }
  PXD_TRY(auto control, Control::open());
  int rc = control->update_size(static_cast<uint32_t>(dev_id_), new_size_bytes >> 9);
  if (rc < 0) return control_error(rc, "update size", dev_id_);
  size_bytes_ = new_size_bytes;
  PXD_LOG(kInfo) << "ublk: " << block_path() << " now has " << new_size_bytes << " bytes";
  return Status::ok();
}

}  // namespace pxd::ublk
