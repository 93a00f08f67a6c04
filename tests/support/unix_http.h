// tests/support/unix_http.h: raw HTTP/1.1 over a unix socket, for tests that must send
// exactly the bytes they choose (truncated bodies, lying lengths, garbage) and see exactly
// what comes back. Every read is bounded (5 s).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <string>

namespace pxd::testing {

struct HttpReply {
  int status = 0;  // 0: closed without a reply; -1: could not connect
  std::string body;
};

// A connected stream socket, or -1.
inline int unix_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// "POST PATH" with a Content-Length that matches `body`.
inline std::string http_post(const std::string& path, const std::string& body,
                             const std::string& content_type = "application/json") {
  return "POST " + path + " HTTP/1.1\r\nHost: plugin\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Sends `raw` (then half-closes if asked) and reads one reply, or the close.
inline HttpReply http_exchange(const std::string& socket, const std::string& raw,
                               bool half_close = false) {
  HttpReply reply;
  int fd = unix_connect(socket);
  if (fd < 0) {
    reply.status = -1;
    return reply;
  }
  size_t sent = 0;
  while (sent < raw.size()) {
    ssize_t n = ::send(fd, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close early on a bad request
    sent += static_cast<size_t>(n);
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string in;
  char buf[4096];
  size_t body_at = std::string::npos, length = 0;
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (body_at == std::string::npos) {
      size_t end = in.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      body_at = end + 4;
      std::string head = in.substr(0, end);
      for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t cl = head.find("content-length:");
      length = cl == std::string::npos ? 0 : std::stoul(head.substr(cl + 15));
    }
    if (in.size() >= body_at + length) break;
  }
  ::close(fd);
  if (in.rfind("HTTP/1.1 ", 0) != 0 || body_at == std::string::npos) return reply;
  reply.status = std::stoi(in.substr(9, 3));
  reply.body = in.substr(body_at, length);
  return reply;
}

}  // namespace pxd::testing
