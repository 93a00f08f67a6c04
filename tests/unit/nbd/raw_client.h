// tests/unit/nbd/raw_client.h: an NBD client on a raw socket, for the bad-client tests.
//
// It sends exactly the bytes a test scripts (valid or not) and reads what the server
// answers, every read bounded by a timeout so a test never hangs.
#pragma once

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "nbd/protocol.h"

namespace pxd::testing {

namespace wire = pxd::nbd::proto;

class RawClient {
 public:
  explicit RawClient(const std::string& socket_path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path.c_str());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawClient() { close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // Exactly `n` bytes, or "" if the connection closed or `timeout` passed first.
  std::string recv(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::string out(n, '\0');
    size_t done = 0;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (done < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      ssize_t r = ::recv(fd_, out.data() + done, n - done, 0);
      if (r <= 0) return "";
      done += static_cast<size_t>(r);
    }
    return out;
  }

  // Whether the server closed the connection (EOF or reset) within `timeout`; bytes it
  // sends before closing are skipped.
  bool closed_by_server(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
      if (r <= 0) return true;
    }
  }

  // Reads the greeting and sends the client flags: ready for options.
  bool greet(uint32_t client_flags = wire::kClientFixedNewstyle | wire::kClientNoZeroes) {
    std::string g = recv(18);
    if (g.size() != 18) return false;
    wire::Reader r(g);
    if (r.u64() != wire::kInitMagic || r.u64() != wire::kOptionMagic) return false;
    handshake_flags = r.u16();
    return send(wire::Writer().u32(client_flags).str());
  }

  bool option(uint32_t opt, const std::string& data) {
    return send(wire::Writer()
                    .u64(wire::kOptionMagic)
                    .u32(opt)
                    .u32(static_cast<uint32_t>(data.size()))
                    .bytes(data)
                    .str());
  }

  struct OptionReply {
    bool ok = false;  // a well-formed reply arrived
    uint32_t option = 0, type = 0;
    std::string data;
  };
  OptionReply option_reply() {
    OptionReply out;
    std::string h = recv(20);
    if (h.size() != 20) return out;
    wire::Reader r(h);
    if (r.u64() != wire::kOptionReplyMagic) return out;
    out.option = r.u32();
    out.type = r.u32();
    uint32_t len = r.u32();
    out.data = recv(len);
    out.ok = out.data.size() == len;
    return out;
  }

  // NBD_OPT_GO data for `name` with no information requests.
  static std::string go_data(const std::string& name) {
    return wire::Writer().u32(static_cast<uint32_t>(name.size())).bytes(name).u16(0).str();
  }

  // Greets, optionally negotiates structured replies, and enters `name` with GO.
  bool enter(const std::string& name, bool structured = false) {
    if (!greet()) return false;
    if (structured) {
      if (!option(wire::kOptStructuredReply, "")) return false;
      if (option_reply().type != wire::kRepAck) return false;
    }
    if (!option(wire::kOptGo, go_data(name))) return false;
    for (;;) {
      OptionReply r = option_reply();
      if (!r.ok || (r.type & wire::kRepErrorBit)) return false;
      if (r.type == wire::kRepAck) return true;
    }
  }

  bool request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length,
               const std::string& payload = {}) {
    return send(wire::Writer()
                    .u32(wire::kRequestMagic)
                    .u16(flags)
                    .u16(type)
                    .u64(cookie)
                    .u64(offset)
                    .u32(length)
                    .bytes(payload)
                    .str());
  }

  struct SimpleReply {
    bool ok = false;
    uint32_t error = 0;
    uint64_t cookie = 0;
    std::string data;
  };
  // A simple reply, with `read_length` bytes of data if it reports success.
  SimpleReply simple_reply(uint32_t read_length = 0) {
    SimpleReply out;
    std::string h = recv(16);
    if (h.size() != 16) return out;
    wire::Reader r(h);
    if (r.u32() != wire::kSimpleReplyMagic) return out;
    out.error = r.u32();
    out.cookie = r.u64();
    if (out.error == 0 && read_length) {
      out.data = recv(read_length);
      if (out.data.size() != read_length) return out;
    }
    out.ok = true;
    return out;
  }

  uint16_t handshake_flags = 0;

 private:
  int fd_ = -1;
  bool connected_ = false;
};

}  // namespace pxd::testing
