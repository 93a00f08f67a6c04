// daemon/loop_device.h: kernel loop devices over a file, through the loop ioctls.
//
// The NBD fallback binds nbdfuse's file to a loop device with direct I/O and the volume's
// block size, so the host gets a real block device without ublk. Each device pxd makes
// carries a tag in its file name field ("pxd:<volume id>"), which is how a restarted pxd
// tells its own devices from everyone else's.
//
// Thread safety: free functions, callable from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pxd::daemon {

struct LoopSpec {
  std::string backing_file;
  uint32_t block_size = 4096;
  bool read_only = false;
  bool direct_io = true;
  std::string tag;  // at most 63 bytes, kept in lo_file_name
};

struct LoopInfo {
  std::string device;        // /dev/loopN
  std::string backing_file;  // as the kernel reports it
  std::string tag;
};

// Binds a free loop device to spec.backing_file; returns its path.
Result<std::string> loop_attach(const LoopSpec& spec);
// Unbinds `device`. If it is busy (mounted or open) and `force`, it is marked to unbind
// at its last close instead; without `force` a busy device is kBusy.
Status loop_detach(const std::string& device, bool force);
// Every bound loop device whose tag starts with `tag_prefix`.
std::vector<LoopInfo> loop_list(const std::string& tag_prefix);

}  // namespace pxd::daemon
