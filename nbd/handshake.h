// nbd/handshake.h: the server side of the fixed-newstyle handshake (option haggling).
//
// Runs on a connection's thread before it has a ring, with plain blocking socket calls
// bounded by one deadline for the whole handshake: a client that stalls, sends garbage
// or lies about lengths costs its own thread at most until then. Option data is capped
// (kMaxOptionBytes); an option longer than that is answered NBD_REP_ERR_TOO_BIG and the
// connection closed.
//
// Thread safety: negotiate() may run on many threads at once (one per connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "engine/volume.h"
#include "nbd/server.h"

namespace pxd::nbd {

// The largest option a client may send (the longest valid one is a few strings of at most
// 4 KiB each).
inline constexpr uint32_t kMaxOptionBytes = 64 * 1024;
// The largest name (export, metadata context query) the protocol allows.
inline constexpr uint32_t kMaxStringBytes = 4096;
// The id of base:allocation when a client selects it.
inline constexpr uint32_t kAllocationContextId = 1;

// What the client chose, ready for the transmission phase.
struct Session {
  std::string export_name;
  std::shared_ptr<Volume> volume;
  uint16_t transmission_flags = 0;
  bool structured_replies = false;
  bool allocation_context = false;  // base:allocation selected (id kAllocationContextId)
};

struct HandshakeLimits {
  std::chrono::steady_clock::time_point deadline;
  uint32_t max_payload_bytes = 0;
};

// Serves option haggling on `fd` (a connected, blocking stream socket). Returns the
// session once the client enters transmission (NBD_OPT_GO or NBD_OPT_EXPORT_NAME);
// otherwise the reason to close the connection (the client aborted or went away, broke
// the protocol, or ran out of time).
Result<Session> negotiate(int fd, ExportProvider& provider, const HandshakeLimits& limits);

// The minimum, preferred and maximum block sizes advertised for `volume`.
struct BlockSizes {
  uint32_t minimum, preferred, maximum;
};
BlockSizes block_sizes(const Volume& volume, uint32_t max_payload_bytes);

// The transmission flags for `volume`.
uint16_t transmission_flags(const Volume& volume, bool structured_replies);

}  // namespace pxd::nbd
