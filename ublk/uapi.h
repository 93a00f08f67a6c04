// ublk/uapi.h: the kernel's ublk UAPI, completed with the parts newer than Debian 12's headers.
//
// linux-libc-dev 6.1 ships a linux/ublk_cmd.h that predates the ioctl-encoded commands,
// GET_FEATURES, USER_COPY and UPDATE_SIZE. The definitions below follow the kernel's
// include/uapi/linux/ublk_cmd.h (documented in Documentation/block/ublk.rst); each is
// guarded so that a newer system header wins. Whether the running driver understands one
// is decided at run time from the features it reports (see control.h), never assumed.
//
// Persisted in no file; values are the kernel's ABI: do not change them.
#pragma once

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/ublk_cmd.h>

// ---- ioctl-encoded commands (kernel 6.4+, UBLK_F_CMD_IOCTL_ENCODE) ----------------------
#ifndef UBLK_U_CMD_GET_DEV_INFO
#define UBLK_U_CMD_GET_DEV_INFO _IOR('u', UBLK_CMD_GET_DEV_INFO, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_ADD_DEV _IOWR('u', UBLK_CMD_ADD_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_DEL_DEV _IOWR('u', UBLK_CMD_DEL_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_DEV _IOWR('u', UBLK_CMD_START_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_STOP_DEV _IOWR('u', UBLK_CMD_STOP_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_SET_PARAMS _IOWR('u', UBLK_CMD_SET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_PARAMS _IOR('u', UBLK_CMD_GET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_USER_RECOVERY \
  _IOWR('u', UBLK_CMD_START_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_END_USER_RECOVERY \
  _IOWR('u', UBLK_CMD_END_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_GET_FEATURES
#define UBLK_U_CMD_GET_FEATURES _IOR('u', 0x13, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_UPDATE_SIZE
#define UBLK_U_CMD_UPDATE_SIZE _IOWR('u', 0x15, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_IO_FETCH_REQ
#define UBLK_U_IO_FETCH_REQ _IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd)
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ \
  _IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd)
#endif

#ifndef UBLK_FEATURES_LEN
#define UBLK_FEATURES_LEN 8
#endif

// ---- feature flags -------------------------------------------------------------------
#ifndef UBLK_F_UNPRIVILEGED_DEV
#define UBLK_F_UNPRIVILEGED_DEV (1ULL << 5)
#endif
#ifndef UBLK_F_CMD_IOCTL_ENCODE
#define UBLK_F_CMD_IOCTL_ENCODE (1ULL << 6)
#endif
#ifndef UBLK_F_USER_COPY
#define UBLK_F_USER_COPY (1ULL << 7)
#endif
#ifndef UBLK_F_ZONED
#define UBLK_F_ZONED (1ULL << 8)
#endif
#ifndef UBLK_F_USER_RECOVERY_FAIL_IO
#define UBLK_F_USER_RECOVERY_FAIL_IO (1ULL << 9)
#endif
#ifndef UBLK_F_UPDATE_SIZE
#define UBLK_F_UPDATE_SIZE (1ULL << 10)
#endif

#ifndef UBLK_S_DEV_FAIL_IO
#define UBLK_S_DEV_FAIL_IO 3
#endif

// ---- USER_COPY: the request's data is read and written at these offsets of /dev/ublkcN --
#ifndef UBLK_IO_BUF_BITS
#define UBLK_IO_BUF_OFF 0
#define UBLK_IO_BUF_BITS 25
#define UBLK_TAG_OFF UBLK_IO_BUF_BITS
#define UBLK_TAG_BITS 16
#define UBLK_QID_OFF (UBLK_TAG_OFF + UBLK_TAG_BITS)
#endif

namespace pxd::ublk {

// Where the data of request (queue, tag) lives in /dev/ublkcN under USER_COPY.
inline constexpr uint64_t user_copy_offset(uint16_t queue, uint16_t tag) {
  return UBLKSRV_IO_BUF_OFFSET + (static_cast<uint64_t>(queue) << UBLK_QID_OFF) +
         (static_cast<uint64_t>(tag) << UBLK_TAG_OFF);
}

}  // namespace pxd::ublk
