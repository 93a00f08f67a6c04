// daemon/instance_lock.h: one pxd per data directory.
//
// An flock on DATA_DIR/pxd.lock, held for the life of the process (the kernel drops it if
// pxd dies, so a crash never leaves a stale lock). The file holds the holder's pid so a
// second pxd can say who it is.
#pragma once

#include <string>

#include "common/status.h"

namespace pxd::daemon {

class InstanceLock {
 public:
  // Fails with kBusy naming the holder's pid when another process holds the lock.
  static Result<InstanceLock> acquire(const std::string& data_dir);
  InstanceLock(InstanceLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  InstanceLock& operator=(InstanceLock&&) = delete;
  ~InstanceLock();

 private:
  explicit InstanceLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace pxd::daemon
