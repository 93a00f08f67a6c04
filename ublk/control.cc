#include "ublk/control.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ublk/device.h"

namespace pxd::ublk {

namespace {

// The legacy opcode of an ioctl-encoded command is its number field.
constexpr uint32_t legacy_of(uint32_t ioctl_op) { return _IOC_NR(ioctl_op); }

ublksrv_ctrl_cmd command_for(uint32_t dev_id) {
  ublksrv_ctrl_cmd cmd;
  std::memset(&cmd, 0, sizeof(cmd));
  cmd.dev_id = dev_id;
  cmd.queue_id = static_cast<uint16_t>(-1);
  return cmd;
}

}  // namespace

Result<std::unique_ptr<Control>> Control::open() {
  std::unique_ptr<Control> control(new Control());
  control->fd_ = ::open(kControlPath, O_RDWR | O_CLOEXEC);
  if (control->fd_ < 0) {
    int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO) {
      return unsupported(std::string(kControlPath) + " is missing: the ublk_drv kernel module is not loaded");
    }
    return errno_status(err, std::string("open ") + kControlPath);
  }
  int rc = io_uring_queue_init(4, &control->ring_, IORING_SETUP_SQE128);
  if (rc < 0) return errno_status(-rc, "io_uring_queue_init (ublk control)");
  control->ring_ready_ = true;

  // GET_FEATURES exists only ioctl-encoded (6.5+). Older drivers answer -EOPNOTSUPP or
  // -EINVAL: then every command goes with its legacy opcode.
  uint64_t features = 0;
  ublksrv_ctrl_cmd cmd = command_for(0);
  cmd.addr = reinterpret_cast<uintptr_t>(&features);
  cmd.len = UBLK_FEATURES_LEN;
  rc = control->run_encoded(UBLK_U_CMD_GET_FEATURES, cmd);
  if (rc == 0) {
    control->has_get_features_ = true;
    control->features_ = features;
    control->ioctl_encode_ = (features & UBLK_F_CMD_IOCTL_ENCODE) != 0;
  }
  return control;
}

Control::~Control() {
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (fd_ >= 0) ::close(fd_);
}

void Control::reset_ring() {
  io_uring_queue_exit(&ring_);
  ring_ready_ = io_uring_queue_init(4, &ring_, IORING_SETUP_SQE128) == 0;
}

int Control::run(uint32_t legacy_op, uint32_t ioctl_op, const ublksrv_ctrl_cmd& cmd) {
  return run_encoded(ioctl_encode_ ? ioctl_op : legacy_op, cmd);
}

int Control::run_encoded(uint32_t op, const ublksrv_ctrl_cmd& cmd) {
  if (!ring_ready_) return -EBADF;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return -EBUSY;
  // A 128-byte SQE: the command header goes in its second half (sqe->cmd).
  std::memset(sqe, 0, 2 * sizeof(io_uring_sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fd_;
  sqe->cmd_op = op;
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
  io_uring_sqe_set_data64(sqe, op);

  __kernel_timespec ts{};
  ts.tv_sec = timeout_ms_ / 1000;
  ts.tv_nsec = static_cast<long long>(timeout_ms_ % 1000) * 1000000;
  int rc = io_uring_submit(&ring_);
  if (rc < 0) return rc;
  io_uring_cqe* cqe = nullptr;
  for (;;) {
    rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
    if (rc == -EINTR) continue;
    break;
  }
  if (rc == -ETIME) {
    reset_ring();
    return -ETIMEDOUT;
  }
  if (rc < 0) return rc;
  int res = cqe->res;
  io_uring_cqe_seen(&ring_, cqe);
  return res;
}

int Control::add_dev(ublksrv_ctrl_dev_info* info) {
  ublksrv_ctrl_cmd cmd = command_for(info->dev_id);
  cmd.addr = reinterpret_cast<uintptr_t>(info);
  cmd.len = sizeof(*info);
  return run(legacy_of(UBLK_U_CMD_ADD_DEV), UBLK_U_CMD_ADD_DEV, cmd);
}

int Control::set_params(uint32_t dev_id, ublk_params* params) {
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  cmd.addr = reinterpret_cast<uintptr_t>(params);
  cmd.len = sizeof(*params);
  return run(legacy_of(UBLK_U_CMD_SET_PARAMS), UBLK_U_CMD_SET_PARAMS, cmd);
}

int Control::get_params(uint32_t dev_id, ublk_params* params) {
  std::memset(params, 0, sizeof(*params));
  params->len = sizeof(*params);
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  cmd.addr = reinterpret_cast<uintptr_t>(params);
  cmd.len = sizeof(*params);
  return run(legacy_of(UBLK_U_CMD_GET_PARAMS), UBLK_U_CMD_GET_PARAMS, cmd);
}

int Control::start_dev(uint32_t dev_id, pid_t server_pid) {
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  cmd.data[0] = static_cast<uint64_t>(server_pid);
  return run(legacy_of(UBLK_U_CMD_START_DEV), UBLK_U_CMD_START_DEV, cmd);
}

int Control::stop_dev(uint32_t dev_id) {
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  return run(legacy_of(UBLK_U_CMD_STOP_DEV), UBLK_U_CMD_STOP_DEV, cmd);
}

int Control::del_dev(uint32_t dev_id) {
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  return run(legacy_of(UBLK_U_CMD_DEL_DEV), UBLK_U_CMD_DEL_DEV, cmd);
}

int Control::get_dev_info(uint32_t dev_id, ublksrv_ctrl_dev_info* info) {
  std::memset(info, 0, sizeof(*info));
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  cmd.addr = reinterpret_cast<uintptr_t>(info);
  cmd.len = sizeof(*info);
  return run(legacy_of(UBLK_U_CMD_GET_DEV_INFO), UBLK_U_CMD_GET_DEV_INFO, cmd);
}

int Control::start_user_recovery(uint32_t dev_id) {
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  return run(legacy_of(UBLK_U_CMD_START_USER_RECOVERY), UBLK_U_CMD_START_USER_RECOVERY, cmd);
}

int Control::end_user_recovery(uint32_t dev_id, pid_t server_pid) {
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  cmd.data[0] = static_cast<uint64_t>(server_pid);
  return run(legacy_of(UBLK_U_CMD_END_USER_RECOVERY), UBLK_U_CMD_END_USER_RECOVERY, cmd);
}

int Control::update_size(uint32_t dev_id, uint64_t sectors) {
  if (!(features_ & UBLK_F_UPDATE_SIZE)) return -EOPNOTSUPP;
  ublksrv_ctrl_cmd cmd = command_for(dev_id);
  cmd.data[0] = sectors;
  return run_encoded(UBLK_U_CMD_UPDATE_SIZE, cmd);
}

}  // namespace pxd::ublk
