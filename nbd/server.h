// nbd/server.h: pxd's NBD server, serving volumes and snapshots to NBD clients.
//
// The server speaks the fixed-newstyle NBD protocol (doc/nbd.md says exactly which
// options, commands and flags) on a unix socket and, if configured, on TCP. An export is
// a volume (read-write) or a snapshot (read-only), named as in the pool; the server asks
// its ExportProvider to open one per connection, so it knows nothing of pools.
//
// Threads:
//  * start() and stop() run on the caller's thread (the daemon's main thread).
//  * One acceptor thread waits on the listening sockets, checks each unix peer's
//    credentials (root, pxd's own user, or group `pxd`), and starts a connection thread.
//  * One thread per connection does that connection's handshake (bounded by
//    handshake_timeout_ms) and then owns one IoRing on which it both reads the socket
//    and submits the export's I/O (Volume::submit), so a slow or hostile client stalls
//    only its own thread. Requests are pipelined: up to max_requests_per_connection run
//    through the engine at once. ExportProvider calls are made from connection threads,
//    possibly several at once.
//  * connections() may be called from any thread.
//
// Lifetime: stop() (or the destructor) closes the listeners, stops reading new requests
// on every connection, lets the requests already in flight complete and their replies go
// out (bounded by drain_timeout_ms for a client that does not read them), closes the
// connections and joins every thread. A request the engine is still running is always
// completed before its buffer is freed. The ExportProvider must outlive the Server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/volume.h"

namespace pxd::nbd {

// What the server serves. The daemon implements it over its pool.
class ExportProvider {
 public:
  virtual ~ExportProvider() = default;
  // Opens export `name`: a volume read-write, a snapshot read-only (Volume::read_only()).
  // kNotFound if there is no such export; other errors are reported to the client as a
  // server error with the message.
  virtual Result<std::shared_ptr<Volume>> open_export(const std::string& name) = 0;
  // The names NBD_OPT_LIST reports.
  virtual std::vector<std::string> list_exports() = 0;
};

struct ServerOptions {
  // Unix socket path; "" means no unix socket. The daemon's default is /run/pxd/nbd.sock.
  // Its directory is created 0750 root:pxd (0700 without a pxd group) if missing; the
  // socket is 0660 root:pxd (0600). A stale socket left by a dead process is replaced; a
  // live one is refused (kBusy).
  std::string unix_path;
  // TCP listener: "" = none (the default); "PORT" = 127.0.0.1:PORT; "ADDR:PORT" (IPv4,
  // or [IPv6]:PORT) otherwise. Port 0 picks a free port (see tcp_port()). TCP clients are
  // not authenticated: only configure an address that trusted clients alone can reach.
  std::string tcp_listen;
  // Connections beyond this are closed at once.
  uint32_t max_connections = 256;
  // The whole handshake (greeting to the end of option haggling) must finish in this.
  uint32_t handshake_timeout_ms = 10'000;
  // At stop(), how long replies of in-flight requests may take to reach a client.
  uint32_t drain_timeout_ms = 5'000;
  // Largest READ or WRITE payload (advertised as the maximum block size). TRIM,
  // WRITE_ZEROES and BLOCK_STATUS may cover any length up to 4 GiB - 1.
  uint32_t max_payload_bytes = 32u << 20;
  // Requests of one connection running at once; more are read only as these finish.
  uint32_t max_requests_per_connection = 128;
  // Payload bytes of one connection's requests held at once (a single request larger than
  // this still runs, alone).
  uint64_t max_buffered_bytes_per_connection = 64u << 20;
};

class Server {
 public:
  // Listens on the configured sockets and starts the acceptor thread. Fails (and holds no
  // socket) if neither socket is configured or one cannot be bound.
  static Result<std::unique_ptr<Server>> start(const ServerOptions& options,
                                               ExportProvider& provider);
  // Calls stop().
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Closes the listeners (removing the unix socket file) and every connection after its
  // in-flight requests complete; waits for all threads. Idempotent.
  void stop();

  // Connections currently open (in handshake or transmission).
  size_t connections() const;
  // The unix socket path, or "".
  const std::string& unix_path() const;
  // The bound TCP port, or 0 without a TCP listener.
  uint16_t tcp_port() const;

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxd::nbd
