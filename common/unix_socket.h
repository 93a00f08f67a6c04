// common/unix_socket.h: the filesystem side of pxd's listening unix sockets.
//
// Both the control API socket and the NBD socket follow one rule: the directory pxd
// creates for a socket is 0750 root:pxd (0700 without a `pxd` group), the socket is 0660
// root:pxd (0600), a socket file left by a dead process is replaced, and one another
// process still serves is refused. Who may connect is decided per connection too
// (peer_credentials.h).
//
// Thread safety: stateless functions.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace pxd {

// Before bind(): checks `path` (absolute, fits sun_path), creates its directory if
// missing, and removes a stale socket. kBusy if a live process answers on it;
// kFailedPrecondition if something other than a socket is there. `what` names the socket
// in messages ("control socket").
Status prepare_socket_path(const std::string& path, std::string_view what);

// After bind(): sets the socket file's mode and group.
Status restrict_socket(const std::string& path);

}  // namespace pxd
