#include "daemon/loop_device.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace pxd::daemon {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

}  // namespace

Result<std::string> loop_attach(const LoopSpec& spec) {
  if (spec.tag.size() >= LO_NAME_SIZE) return invalid_argument("loop tag too long");
  Fd backing(::open(spec.backing_file.c_str(),
                    (spec.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
                        (spec.direct_io ? O_DIRECT : 0)));
  if (backing.get() < 0) return errno_status(errno, "open " + spec.backing_file);
  Fd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (control.get() < 0) return errno_status(errno, "open /dev/loop-control");
  // Another program may take the free device between GET_FREE and CONFIGURE: retry.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int index = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (index < 0) return errno_status(errno, "no free loop device");
    std::string device = "/dev/loop" + std::to_string(index);
    Fd dev(::open(device.c_str(), (spec.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    if (dev.get() < 0) return errno_status(errno, "open " + device);
    loop_config config{};
    config.fd = static_cast<uint32_t>(backing.get());
    config.block_size = spec.block_size;
    config.info.lo_flags = (spec.read_only ? LO_FLAGS_READ_ONLY : 0) |
                           (spec.direct_io ? LO_FLAGS_DIRECT_IO : 0);
    std::memcpy(config.info.lo_file_name, spec.tag.data(), spec.tag.size());
    if (::ioctl(dev.get(), LOOP_CONFIGURE, &config) == 0) return device;
    if (errno != EBUSY) return errno_status(errno, "configure " + device);
  }
  return busy("every free loop device was taken by someone else; try again");
}

Status loop_detach(const std::string& device, bool force) {
  Fd dev(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (dev.get() < 0) {
    if (errno == ENOENT) return Status::ok();
    return errno_status(errno, "open " + device);
  }
  // The kernel may report busy briefly after a filesystem on it was unmounted.
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::ioctl(dev.get(), LOOP_CLR_FD) == 0 || errno == ENXIO) return Status::ok();
    if (errno != EBUSY) return errno_status(errno, "detach " + device);
    ::usleep(20000);
  }
  if (!force) return busy(device + " is in use");
  loop_info64 info{};
  if (::ioctl(dev.get(), LOOP_GET_STATUS64, &info) != 0)
    return errno_status(errno, "status of " + device);
  info.lo_flags |= LO_FLAGS_AUTOCLEAR;
  if (::ioctl(dev.get(), LOOP_SET_STATUS64, &info) != 0)
    return errno_status(errno, "set autoclear on " + device);
  return Status::ok();
}

std::vector<LoopInfo> loop_list(const std::string& tag_prefix) {
  std::vector<LoopInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/block", ec)) {
    std::string name = entry.path().filename();
    if (name.rfind("loop", 0) != 0) continue;
    std::string backing = read_line(entry.path() / "loop" / "backing_file");
    if (backing.empty()) continue;
    std::string device = "/dev/" + name;
    Fd dev(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
    if (dev.get() < 0) continue;
    loop_info64 info{};
    if (::ioctl(dev.get(), LOOP_GET_STATUS64, &info) != 0) continue;
    std::string tag(reinterpret_cast<const char*>(info.lo_file_name),
                    strnlen(reinterpret_cast<const char*>(info.lo_file_name), LO_NAME_SIZE));
    if (tag.rfind(tag_prefix, 0) != 0) continue;
    out.push_back({device, backing, tag});
  }
  return out;
}

}  // namespace pxd::daemon
