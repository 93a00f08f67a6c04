#include "daemon/ublk_frontend.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "common/log.h"
#include "common/units.h"
#include "daemon/subprocess.h"

namespace pxd::daemon {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kOwnerMagic = 0x7078;  // "px"

std::string first_line(std::string text) {
  auto nl = text.find('\n');
  if (nl != std::string::npos) text.resize(nl);
  return text;
}

std::string block_path(int dev_id) { return "/dev/ublkb" + std::to_string(dev_id); }

}  // namespace

uint32_t owner_tag(const std::string& pool_uuid) {
  // FNV-1a, folded to 16 bits: stable across builds and versions (it is kept by the
  // driver with each device, so a new pxd must compute the same tag).
  uint32_t h = 2166136261u;
  for (unsigned char c : pool_uuid) {
    h ^= c;
    h *= 16777619u;
  }
  return (kOwnerMagic << 16) | ((h >> 16) ^ (h & 0xffff));
}

int ublk_device_number(const std::string& device_path) {
  int n = -1;
  char tail = 0;
  if (std::sscanf(device_path.c_str(), "/dev/ublkb%d%c", &n, &tail) != 1 || n < 0) return -1;
  return n;
}

UblkFrontend::~UblkFrontend() { release_all(); }

std::string UblkFrontend::load_driver_once() const {
  std::lock_guard<std::mutex> lock(modprobe_mu_);
  if (modprobe_tried_ || config_.modprobe.empty()) return modprobe_result_;
  modprobe_tried_ = true;
  auto ran = run_command({config_.modprobe, "ublk_drv"}, std::chrono::seconds(30));
  if (!ran.has_value()) {
    modprobe_result_ = config_.modprobe + " ublk_drv: " + ran.error().message();
  } else if (ran.value().exit_code != 0) {
    modprobe_result_ = config_.modprobe + " ublk_drv failed: " + first_line(ran.value().output);
  } else {
    // devtmpfs makes the node as the module registers it; allow a moment.
    struct stat st;
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    while (::stat(ublk::kControlPath, &st) != 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    PXD_LOG(kInfo) << "loaded ublk_drv (" << config_.modprobe << " ublk_drv)";
  }
  if (!modprobe_result_.empty()) PXD_LOG(kInfo) << "ublk: " << modprobe_result_;
  return modprobe_result_;
}

Status UblkFrontend::available() const {
  auto features = ublk::probe();
  std::string modprobe_failure;
  if (!features.has_value() && features.error().code() == StatusCode::kUnsupported) {
    modprobe_failure = load_driver_once();
    features = ublk::probe();
  }
  if (!features.has_value()) {
    return unsupported("ublk_drv not available: " + features.error().message() +
                       (modprobe_failure.empty() ? "" : "; " + modprobe_failure));
  }
  if (!features.value().user_recovery || !features.value().recovery_reissue) {
    return unsupported("this kernel's ublk_drv cannot recover devices (" +
                       features.value().describe() + "), so a pxd restart would lose them");
  }
  return Status::ok();
}

ublk::DeviceOptions UblkFrontend::device_options() const {
  ublk::DeviceOptions options;
  options.owner = config_.owner;
  options.discard_granularity = config_.discard_granularity;
  options.copy_mode = config_.copy_mode;
  options.recoverable = true;
  return options;
}

Status UblkFrontend::attach(const AttachTarget& target, Attachment& att) {
  if (devices_.count(target.volume_id)) {
    return failed_precondition("volume " + std::to_string(target.volume_id) +
                               " already has a ublk device");
  }
  PXD_TRY(std::shared_ptr<Volume> volume, config_.open_volume(target));
  if (volume->read_only() != target.read_only) {
    return internal_error("volume '" + target.name + "' opened " +
                          (volume->read_only() ? "read-only" : "read-write") +
                          " for an attachment that is not");
  }
  ublk::DeviceOptions options = device_options();
  if (options.discard_granularity < volume->block_size())
    options.discard_granularity = volume->block_size();
  PXD_TRY(auto device, ublk::Device::create(std::move(volume), options));
  att.device = device->block_path();
  att.helper_pid = 0;
  att.device_size_bytes = device->size_bytes();
  devices_[target.volume_id] = std::move(device);
  return Status::ok();
}

Status UblkFrontend::detach(const Attachment& att, bool force) {
  auto it = devices_.find(att.volume_id);
  if (it != devices_.end()) {
    ublk::Device& device = *it->second;
    if (!force && device.in_use()) {
      return busy(device.block_path() + " is in use (mounted, or held open exclusively); " +
                  "unmount it first or detach with --force");
    }
    // Requests in flight complete; later ones fail. Bounded by the driver's control
    // timeout, so a detach under load ends either way.
    Status s = device.stop(/*delete_device=*/true);
    devices_.erase(it);
    return s;
  }
  // Not served by this pxd: what a failed adoption or a dead pxd left. Only our own.
  int dev_id = ublk_device_number(att.device);
  if (dev_id < 0) return Status::ok();
  auto info = ublk::device_info(dev_id);
  if (!info.has_value()) {
    return info.error().code() == StatusCode::kNotFound ? Status::ok() : info.error();
  }
  if (info.value().owner != config_.owner || info.value().volume_id != att.volume_id)
    return Status::ok();  // the number belongs to someone else now (after a reboot)
  return ublk::remove_device(dev_id);
}

Status UblkFrontend::adopt(const AttachTarget& target, Attachment& att) {
  if (devices_.count(att.volume_id)) return Status::ok();
  int dev_id = ublk_device_number(att.device);
  if (dev_id < 0) return not_found("'" + att.device + "' is not a ublk device");
  PXD_TRY(ublk::DeviceInfo info, ublk::device_info(dev_id));
  if (info.owner != config_.owner || info.volume_id != att.volume_id) {
    return failed_precondition(att.device + " now serves volume " +
                               std::to_string(info.volume_id) + " of owner " +
                               std::to_string(info.owner) + ", not ours");
  }
  PXD_TRY(std::shared_ptr<Volume> volume, config_.open_volume(target));
  PXD_TRY(auto device, ublk::Device::recover(dev_id, std::move(volume), device_options()));
  att.device_size_bytes = device->size_bytes();
  devices_[att.volume_id] = std::move(device);
  return Status::ok();
}

void UblkFrontend::remove_stale(const std::vector<Attachment>& known) {
  auto devices = ublk::list_devices();
  if (!devices.has_value()) return;  // no ublk_drv: nothing of ours can exist
  for (const ublk::DeviceInfo& info : devices.value()) {
    if (info.owner != config_.owner) continue;  // another server's, or another pxd's
    bool named = false;
    for (const auto& a : known)
      named |= a.frontend == name() && ublk_device_number(a.device) == info.dev_id;
    for (const auto& [id, device] : devices_) named |= device->dev_id() == info.dev_id;
    if (named) continue;
    PXD_LOG(kInfo) << "removing stale ublk device " << block_path(info.dev_id) << " (volume "
                   << info.volume_id << ", " << ublk::device_state_name(info.state) << ")";
    Status s = ublk::remove_device(info.dev_id);
    if (!s.is_ok()) PXD_LOG(kWarn) << "removing " << block_path(info.dev_id) << ": " << s;
  }
}

Status UblkFrontend::resize(Attachment& att, uint64_t size_bytes) {
  auto it = devices_.find(att.volume_id);
  if (it == devices_.end())
    return failed_precondition(att.device + " is not served by this pxd");
  PXD_RETURN_IF_ERROR(it->second->resize(size_bytes));
  att.device_size_bytes = it->second->size_bytes();
  return Status::ok();
}

void UblkFrontend::release_all() {
  for (auto& [id, device] : devices_) {
    Status s = device->release();
    if (!s.is_ok()) PXD_LOG(kWarn) << "releasing " << device->block_path() << ": " << s;
  }
  devices_.clear();
}

}  // namespace pxd::daemon
