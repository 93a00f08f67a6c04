// common/peer_credentials.h: who may use pxd's unix sockets (control API, NBD).
//
// The rule: root, pxd's own effective user, or a process whose primary or supplementary
// group is `pxd` (when that group exists). Peers are identified with SO_PEERCRED; their
// supplementary groups come from /proc/PID/status. The socket files themselves are
// 0660 root:pxd (0600 without the group) in a directory 0750 (0700): see unix_socket.h.
//
// Thread safety: stateless functions, callable from any thread.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <optional>
#include <string>

#include "common/status.h"

namespace pxd {

// The group whose members may use pxd's sockets, if it exists.
std::optional<gid_t> pxd_group();

// The credentials of the process at the other end of a connected unix socket.
Result<ucred> peer_credentials(int fd);

// Whether `cred` may use pxd's sockets (see above).
bool peer_allowed(const ucred& cred);

// "pid 12 uid 1000", for logs.
std::string describe_peer(const ucred& cred);

}  // namespace pxd
