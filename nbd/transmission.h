// nbd/transmission.h: one NBD connection's transmission phase, on one IoRing.
//
// The connection's thread owns the ring and runs run() until the connection is over. On
// that ring it keeps one socket receive and at most one send in flight, next to the
// export's I/O (Volume::submit): requests are parsed as they arrive and started at once,
// so a client with many requests in flight gets them all running in the engine, up to
// max_requests_per_connection and max_buffered_bytes_per_connection (beyond those the
// server stops reading the socket until requests finish: TCP backpressure, no
// unbounded queue). Replies go out in completion order, gathered into one sendmsg.
//
// A request lives from its header until the last byte of its reply is sent (or the
// connection is found dead). Its buffer is freed only after the engine has completed it:
// whatever happens to the socket, run() returns only when no engine request, socket
// operation or cancellation of this connection is in flight.
//
// How a connection ends: NBD_CMD_DISC, end of stream or stop() stop the reading; requests
// in flight finish and their replies are sent. A protocol violation (bad magic, a
// payload over the limit) or a failed send breaks the connection at once (socket shut
// down, queued replies dropped), and in-flight engine requests are still waited for.
//
// Thread safety: everything runs on the ring's thread; stop() too (the server posts it).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/io_ring.h"
#include "nbd/handshake.h"
#include "nbd/server.h"

namespace pxd::nbd {

class Transmission {
 public:
  // `fd` stays owned by the caller and open until run() returns.
  Transmission(int fd, Session session, const ServerOptions& options, IoRing& ring);
  ~Transmission();
  Transmission(const Transmission&) = delete;
  Transmission& operator=(const Transmission&) = delete;

  // Serves requests until the connection is over (see above).
  void run();
  // Stops reading requests; what is in flight completes and is answered, for at most
  // drain_timeout_ms, after which the connection is broken.
  void stop();

  // How the connection ended, for the log.
  const std::string& end_reason() const { return end_reason_; }

  struct Request;

 private:
  class SocketOp;
  friend class SocketOp;

  // Reading.
  void on_recv(int result);
  void process_input();
  bool may_start_request() const;
  void start_request(const std::byte* header);
  void post_recv();
  void stop_reading(const std::string& reason);

  // Requests.
  void execute(Request* r);
  uint32_t validate(const Request* r, std::string* message) const;
  void submit(Request* r, IoOp op, uint64_t offset, uint64_t length, std::byte* buffer,
              uint32_t flags);
  void submit_zero_piece(Request* r);
  void block_status(Request* r);
  static void on_io_done(IoRequest* io, int result);
  void io_done(Request* r, int result);

  // Replies.
  void reply_ok(Request* r);
  void reply_error(Request* r, uint32_t error, const std::string& message);
  void queue_reply(Request* r);
  void post_send();
  void on_send(int result);
  void release(Request* r);
  void break_connection(const std::string& reason);
  void drop_receiving();
  void drop_replies();

  void pump();
  bool finished() const;
  void cancel(SocketOp& op);

  std::byte* get_buffer(uint32_t size);
  void put_buffer(std::byte* buffer, uint32_t size);

  const int fd_;
  const Session session_;
  const ServerOptions options_;
  IoRing& ring_;
  std::string end_reason_;

  // Staging for the socket's bytes; payloads of large writes bypass it.
  std::byte* rx_ = nullptr;
  size_t rx_start_ = 0, rx_end_ = 0;
  Request* receiving_ = nullptr;  // a WRITE whose payload is still arriving
  std::unique_ptr<SocketOp> recv_op_, send_op_;
  bool recv_posted_ = false, send_posted_ = false;
  bool recv_direct_ = false;  // the posted receive goes straight into receiving_'s payload
  bool reading_done_ = false;
  bool broken_ = false;
  bool stopping_ = false;
  uint32_t cancels_in_flight_ = 0;
  std::chrono::steady_clock::time_point drain_deadline_;

  // Replies waiting to be sent, oldest first; tx_done_ bytes of the first are sent.
  Request* tx_head_ = nullptr;
  Request* tx_tail_ = nullptr;
  size_t tx_done_ = 0;
  std::vector<iovec> iov_;
  msghdr msg_{};

  uint32_t requests_ = 0;   // alive: parsed, not yet released
  uint64_t buffered_ = 0;   // payload bytes of alive requests
  std::vector<Request*> spare_requests_;
  std::vector<std::vector<std::byte*>> spare_buffers_;  // by power-of-two size class
};

}  // namespace pxd::nbd
