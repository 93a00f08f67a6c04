// ublk/control.h: the ublk control channel, /dev/ublk-control (internal to ublk/).
//
// Each control command is one IORING_OP_URING_CMD in a 128-byte SQE on a small private
// io_uring; the driver runs it in an io_uring worker, where it may block (START_DEV waits
// for every queue to fetch, DEL_DEV for the last reference to go, END_USER_RECOVERY for
// the new server's queues). A call submits one command and waits for its completion, at
// most `timeout_ms`.
//
// Commands are sent ioctl-encoded (UBLK_U_CMD_*) when the driver reports
// UBLK_F_CMD_IOCTL_ENCODE through GET_FEATURES, else with the legacy opcodes of 6.0-6.3.
//
// Thread safety: one Control is used by one thread at a time; any number may be open.
// Calls return 0 or a negative errno, so that callers can tell EBUSY, ENODEV, EEXIST apart.
#pragma once

#include <liburing.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>

#include "common/status.h"
#include "ublk/uapi.h"

namespace pxd::ublk {

class Control {
 public:
  // kUnsupported when /dev/ublk-control does not exist (ublk_drv not loaded).
  static Result<std::unique_ptr<Control>> open();
  ~Control();
  Control(const Control&) = delete;
  Control& operator=(const Control&) = delete;

  // What open() learned: the driver's UBLK_F_* set (0 if it lacks GET_FEATURES).
  bool has_get_features() const { return has_get_features_; }
  uint64_t features() const { return features_; }

  // `info` is sent and the driver's answer (device id, accepted flags, queue count)
  // written back. info->dev_id is the wanted id or UINT32_MAX for any.
  int add_dev(ublksrv_ctrl_dev_info* info);
  int set_params(uint32_t dev_id, ublk_params* params);
  int get_params(uint32_t dev_id, ublk_params* params);
  int start_dev(uint32_t dev_id, pid_t server_pid);
  int stop_dev(uint32_t dev_id);
  int del_dev(uint32_t dev_id);
  int get_dev_info(uint32_t dev_id, ublksrv_ctrl_dev_info* info);
  int start_user_recovery(uint32_t dev_id);
  int end_user_recovery(uint32_t dev_id, pid_t server_pid);
  int update_size(uint32_t dev_id, uint64_t sectors);

  void set_timeout_ms(int timeout_ms) { timeout_ms_ = timeout_ms; }

 private:
  Control() = default;
  // Sends `cmd` as `legacy_op` or `ioctl_op` and waits for the result.
  int run(uint32_t legacy_op, uint32_t ioctl_op, const ublksrv_ctrl_cmd& cmd);
  int run_encoded(uint32_t op, const ublksrv_ctrl_cmd& cmd);
  // Closes and reopens the ring after a command that did not finish in time (closing
  // cancels it, so it cannot complete into a later call's buffer).
  void reset_ring();

  int fd_ = -1;
  io_uring ring_{};
  bool ring_ready_ = false;
  bool has_get_features_ = false;
  bool ioctl_encode_ = false;
  uint64_t features_ = 0;
  int timeout_ms_ = 30'000;
};

}  // namespace pxd::ublk
