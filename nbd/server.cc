#include "nbd/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "common/peer_credentials.h"
#include "common/unix_socket.h"
#include "nbd/handshake.h"
#include "nbd/transmission.h"

namespace pxd::nbd {
namespace {

// Splits "PORT", "ADDR:PORT" or "[ADDR]:PORT" and binds a listening TCP socket there.
Result<int> listen_tcp(const std::string& spec, uint16_t* bound_port) {
  std::string host = "127.0.0.1", port = spec;
  auto colon = spec.rfind(':');
  if (colon != std::string::npos) {
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
    return invalid_argument("NBD listen address '" + spec + "' is not PORT or ADDR:PORT");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || !found)
    return invalid_argument("NBD listen address '" + spec + "': " + ::gai_strerror(rc));
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(found);
    return errno_status(errno, "socket");
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
    int err = errno;
    ::close(fd);
    ::freeaddrinfo(found);
    return errno_status(err, "listen on " + spec);
  }
  ::freeaddrinfo(found);
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *bound_port = ntohs(addr.ss_family == AF_INET6
                          ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                          : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return fd;
}

Result<int> listen_unix(const std::string& path) {
  PXD_RETURN_IF_ERROR(prepare_socket_path(path, "NBD socket"));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_status(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 128) != 0) {
    int err = errno;
    ::close(fd);
    return errno_status(err, "listen on " + path);
  }
  Status restricted = restrict_socket(path);
  if (!restricted.is_ok()) {
    ::close(fd);
    ::unlink(path.c_str());
    return restricted;
  }
  return fd;
}

}  // namespace

class Server::Impl {
 public:
  Impl(const ServerOptions& options, ExportProvider& provider)
      : options_(options), provider_(provider) {}
  ~Impl() { stop(); }

  Status start();
  void stop();
  size_t connections() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_;
  }
  const std::string& unix_path() const { return unix_path_; }
  uint16_t tcp_port() const { return tcp_port_; }

 private:
  struct Connection {
    int fd = -1;  // GUARDED_BY(mu_) once the thread runs: closed under it
    std::string peer;
    std::thread thread;
    IoRing* ring = nullptr;             // GUARDED_BY(mu_): set during transmission
    Transmission* transmission = nullptr;  // GUARDED_BY(mu_)
    bool finished = false;              // GUARDED_BY(mu_)
  };

  void accept_loop();
  void accept_one(int listen_fd, bool is_unix);
  void serve(Connection* c);
  void reap();
  void wake() {
    uint64_t one = 1;
    while (::write(wake_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
  }

  const ServerOptions options_;
  ExportProvider& provider_;
  int unix_fd_ = -1, tcp_fd_ = -1, wake_fd_ = -1;
  std::string unix_path_;
  uint16_t tcp_port_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;  // only start()/stop() callers' thread

  mutable std::mutex mu_;
  std::list<Connection> connections_;  // GUARDED_BY(mu_)
  size_t live_ = 0;                    // GUARDED_BY(mu_)
};

Status Server::Impl::start() {
  if (options_.unix_path.empty() && options_.tcp_listen.empty())
    return invalid_argument("the NBD server needs a unix socket path or a TCP address");
  if (options_.max_payload_bytes < 4096 || options_.max_requests_per_connection == 0 ||
      options_.max_connections == 0)
    return invalid_argument("NBD server limits must be positive (payload at least 4 KiB)");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return errno_status(errno, "eventfd");
  if (!options_.tcp_listen.empty()) {
    PXD_TRY(tcp_fd_, listen_tcp(options_.tcp_listen, &tcp_port_));
  }
  if (!options_.unix_path.empty()) {
    PXD_TRY(unix_fd_, listen_unix(options_.unix_path));
    unix_path_ = options_.unix_path;
  }
  acceptor_ = std::thread([this] { accept_loop(); });
  PXD_LOG(kInfo) << "nbd: serving on "
                 << (unix_path_.empty() ? std::string() : unix_path_ + " ")
                 << (tcp_fd_ >= 0 ? "tcp port " + std::to_string(tcp_port_) : std::string());
  return Status::ok();
}

void Server::Impl::stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_ = true;
  if (acceptor_.joinable()) {
    wake();
    acceptor_.join();
  }
  if (unix_fd_ >= 0) {
    ::close(unix_fd_);
    ::unlink(unix_path_.c_str());
  }
  if (tcp_fd_ >= 0) ::close(tcp_fd_);
  unix_fd_ = tcp_fd_ = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Connection& c : connections_) {
      if (c.finished) continue;
      if (c.transmission) {
        Transmission* t = c.transmission;
        c.ring->post([t] { t->stop(); });
      } else if (c.fd >= 0) {
        ::shutdown(c.fd, SHUT_RDWR);  // ends a handshake at once
      }
    }
  }
  for (Connection& c : connections_) {
    if (c.thread.joinable()) c.thread.join();
  }
  connections_.clear();
  if (wake_fd_ >= 0) ::close(wake_fd_);
  wake_fd_ = -1;
}

void Server::Impl::accept_loop() {
  while (!stopping_) {
    pollfd fds[3];
    int n = 0;
    fds[n++] = {wake_fd_, POLLIN, 0};
    if (unix_fd_ >= 0) fds[n++] = {unix_fd_, POLLIN, 0};
    if (tcp_fd_ >= 0) fds[n++] = {tcp_fd_, POLLIN, 0};
    int rc = ::poll(fds, n, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      PXD_LOG(kError) << "nbd: poll: " << std::strerror(errno);
      ::usleep(100'000);
      continue;
    }
    if (fds[0].revents) {
      uint64_t value;
      while (::read(wake_fd_, &value, sizeof(value)) > 0) {
      }
      reap();
    }
    if (stopping_) break;
    for (int i = 1; i < n; ++i) {
      if (fds[i].revents) accept_one(fds[i].fd, fds[i].fd == unix_fd_);
    }
  }
}

void Server::Impl::accept_one(int listen_fd, bool is_unix) {
  int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      PXD_LOG(kWarn) << "nbd: accept: " << std::strerror(errno);
      ::usleep(100'000);  // let connections end before trying again
    }
    return;
  }
  std::string peer = "tcp client";
  if (is_unix) {
    auto cred = peer_credentials(fd);
    if (!cred.has_value() || !peer_allowed(cred.value())) {
      PXD_LOG(kWarn) << "nbd: refusing connection from "
                     << (cred.has_value() ? describe_peer(cred.value()) : "unknown peer");
      ::close(fd);
      return;
    }
    peer = describe_peer(cred.value());
  } else {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
        ::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof(host), port,
                      sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
      peer = std::string(host) + ":" + port;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (live_ >= options_.max_connections) {
    PXD_LOG(kWarn) << "nbd: refusing " << peer << ": already " << live_ << " connections";
    ::close(fd);
    return;
  }
  Connection& c = connections_.emplace_back();
  c.fd = fd;
  c.peer = peer;
  ++live_;
  c.thread = std::thread([this, &c] { serve(&c); });
}

void Server::Impl::reap() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->finished) {
      it->thread.join();  // has returned from serve(); only its last instructions remain
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::Impl::serve(Connection* c) {
  HandshakeLimits limits;
  limits.deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.handshake_timeout_ms);
  limits.max_payload_bytes = options_.max_payload_bytes;
  auto session = negotiate(c->fd, provider_, limits);
  std::string ended;
  if (!session.has_value()) {
    ended = session.error().message();
  } else {
    const std::string name = session.value().export_name;
    auto ring = IoRing::create(256);
    if (!ring.has_value()) {
      ended = "cannot create a ring: " + ring.error().message();
    } else {
      PXD_LOG(kInfo) << "nbd: " << c->peer << " opened export '" << name << "'";
      Transmission transmission(c->fd, std::move(session).value(), options_, *ring.value());
      {
        std::lock_guard<std::mutex> lock(mu_);
        c->ring = ring.value().get();
        c->transmission = &transmission;
      }
      if (stopping_) transmission.stop();
      transmission.run();
      {
        std::lock_guard<std::mutex> lock(mu_);
        c->ring = nullptr;
        c->transmission = nullptr;
      }
      PXD_LOG(kInfo) << "nbd: " << c->peer << " closed export '" << name
                     << "': " << transmission.end_reason();
    }
  }
  if (!ended.empty()) PXD_LOG(kDebug) << "nbd: " << c->peer << ": " << ended;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ::close(c->fd);
    c->fd = -1;
    c->finished = true;
    --live_;
  }
  wake();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { stop(); }

Result<std::unique_ptr<Server>> Server::start(const ServerOptions& options,
                                              ExportProvider& provider) {
  auto impl = std::make_unique<Impl>(options, provider);
  PXD_RETURN_IF_ERROR(impl->start());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::stop() { impl_->stop(); }
size_t Server::connections() const { return impl_->connections(); }
const std::string& Server::unix_path() const { return impl_->unix_path(); }
uint16_t Server::tcp_port() const { return impl_->tcp_port(); }

}  // namespace pxd::nbd
