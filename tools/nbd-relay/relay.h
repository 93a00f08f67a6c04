// tools/nbd-relay/relay.h: an NBD relay that outlives pxd restarts.
//
// On a host without ublk, an attached volume is pxd's NBD export -> nbdfuse -> a file ->
// a loop device. nbdfuse runs the relay as its NBD server (`nbdfuse --command`), talking
// NBD over stdin/stdout; the relay forwards every request to pxd's NBD socket. When pxd
// goes away (SIGKILL, crash, upgrade), the relay keeps the client side open, reconnects
// when pxd is back, and re-sends what was in flight, so the filesystem on the loop device
// sees slow I/O, never an error. This is the NBD fallback's equivalent of ublk user
// recovery. Design and reasons: doc/attach.md.
//
// Durability across a pxd crash: pxd may lose a write it acknowledged but that no flush
// covered yet (its volume has a volatile write cache). The relay keeps a copy of every
// such write until a flush that covers it succeeds, and replays them on reconnect before
// anything else, so a flush the client sees succeed after a crash really covers every
// write acknowledged before it. The copies are bounded: past `unflushed_limit` bytes the
// relay flushes on its own, and past four times that it stops reading new requests until
// a flush completes.
//
// Both connections use simple replies (no structured replies), so requests and replies
// pass through byte for byte; the relay only parses their headers.
//
// Threads: the caller's thread reads client requests and sends them upstream; a second
// thread reads upstream replies, answers the client, and reconnects. State shared between
// them is under Relay::mu_; upstream writes are under send_mu_ (taken before mu_).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace pxd::relay {

struct Options {
  std::string socket_path;  // pxd's NBD unix socket
  std::string export_name;
  int client_in = 0;  // the client's connection (nbdfuse gives a socket as stdin/stdout)
  int client_out = 1;
  uint64_t unflushed_limit = 64ULL << 20;
  uint32_t retry_ms = 200;           // between reconnect attempts
  uint32_t give_up_seconds = 0;      // 0: wait for pxd forever (like ublk recovery)
};

// What the server told us in the handshake.
struct ExportInfo {
  uint64_t size = 0;
  uint16_t flags = 0;
  uint32_t min_block = 0, preferred_block = 0, max_block = 0;  // 0: not sent
};

class Relay {
 public:
  explicit Relay(Options options) : options_(std::move(options)) {}

  // Connects upstream, then serves the client until it disconnects. Returns ok when the
  // client left cleanly, else what went wrong.
  Status run();

 private:
  struct Request {
    uint16_t flags = 0;
    uint16_t type = 0;
    uint64_t cookie = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
    std::vector<char> data;    // WRITE payload
    uint64_t acked_before = 0;  // FLUSH: writes acknowledged up to this count are covered
    bool internal = false;      // the relay's own flush or replay: no client reply
  };
  // A WRITE, WRITE_ZEROES or TRIM acknowledged by pxd and not yet covered by a flush.
  struct Unflushed {
    uint64_t ack = 0;  // acknowledgement count when it was acknowledged
    Request request;
  };

  Result<int> connect_upstream(ExportInfo* info);
  Status handshake_upstream(int fd, ExportInfo* info);
  // Reconnects until it succeeds (or gives up), then replays unflushed writes and
  // re-sends requests in flight. REQUIRES: send_mu_ held.
  Status reconnect();
  Status serve_handshake();
  Status forward_requests();
  void read_replies();
  // Reads one reply from `fd` and acts on it. An error means the connection is broken.
  Status handle_reply(int fd);
  // Registers `req` and sends it upstream (unless the connection is broken: it is then
  // sent by the reconnect). REQUIRES: send_mu_ held.
  void submit(Request req);
  // REQUIRES: send_mu_ held.
  Status send_upstream(uint64_t relay_cookie, const Request& req);
  Status reply_to_client(uint64_t cookie, uint32_t error, const char* data, uint32_t length);
  void fail_all(const Status& why);

  const Options options_;
  ExportInfo info_;

  std::mutex client_mu_;  // writes to the client
  std::mutex send_mu_;
  int upstream_ = -1;         // GUARDED_BY(send_mu_) for writes; the reply thread reads it
  uint64_t connection_ = 0;   // incremented per successful connection, GUARDED_BY(mu_)

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Request> inflight_;      // by relay cookie, GUARDED_BY(mu_)
  uint64_t next_cookie_ = 1;                  // GUARDED_BY(mu_)
  std::deque<Unflushed> unflushed_;           // in ack order, GUARDED_BY(mu_)
  uint64_t unflushed_bytes_ = 0;              // GUARDED_BY(mu_)
  uint64_t acks_ = 0;                         // GUARDED_BY(mu_)
  bool relay_flush_pending_ = false;          // GUARDED_BY(mu_)
  bool broken_ = false;                       // upstream failed, GUARDED_BY(mu_)
  bool client_done_ = false;                  // GUARDED_BY(mu_)
  Status fatal_;                              // GUARDED_BY(mu_)
};

}  // namespace pxd::relay
