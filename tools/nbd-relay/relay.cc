#include "tools/nbd-relay/relay.h"

#include <endian.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/log.h"
#include "nbd/protocol.h"

namespace pxd::relay {
namespace {

using namespace pxd::nbd::proto;

constexpr uint32_t kMaxPayload = 32u << 20;
constexpr uint32_t kMaxOptionData = 4096;

Status sys_error(const char* what) {
  return errno_status(errno, what);
}

// Reads exactly `n` bytes. Sets *eof on a clean end of stream before the first byte.
Status read_full(int fd, void* buf, size_t n, bool* eof = nullptr) {
  auto* p = static_cast<char*>(buf);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::read(fd, p + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return sys_error("read");
    if (r == 0) {
      if (eof && done == 0) *eof = true;
      return io_error("connection closed");
    }
    done += static_cast<size_t>(r);
  }
  return Status::ok();
}

Status write_full(int fd, const void* buf, size_t n) {
  auto* p = static_cast<const char*>(buf);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::send(fd, p + done, n - done, MSG_NOSIGNAL);
    if (r < 0 && errno == ENOTSOCK) r = ::write(fd, p + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return sys_error("write");
    done += static_cast<size_t>(r);
  }
  return Status::ok();
}

Status write_full(int fd, const std::string& bytes) {
  return write_full(fd, bytes.data(), bytes.size());
}

// The text of an option error reply that came without a message.
const char* reply_name(uint32_t type) {
  switch (type) {
    case kRepErrUnsup:
      return "unsupported";
    case kRepErrPolicy:
      return "denied by policy";
    case kRepErrInvalid:
      return "invalid";
    case kRepErrPlatform:
      return "platform error";
    case kRepErrUnknown:
      return "unknown export";
    case kRepErrShutdown:
      return "server shutting down";
    default:
      return "error";
  }
}

Status send_option(int fd, uint32_t option, const std::string& data) {
  Writer w;
  w.u64(kOptionMagic).u32(option).u32(static_cast<uint32_t>(data.size())).bytes(data);
  return write_full(fd, w.str());
}

Status send_option_reply(int fd, uint32_t option, uint32_t type, const std::string& data = {}) {
  Writer w;
  w.u64(kOptionReplyMagic)
      .u32(option)
      .u32(type)
      .u32(static_cast<uint32_t>(data.size()))
      .bytes(data);
  return write_full(fd, w.str());
}

bool is_mutation(uint16_t type) {
  return type == kCmdWrite || type == kCmdWriteZeroes || type == kCmdTrim;
}

}  // namespace

Result<int> Relay::connect_upstream(ExportInfo* info) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  Status s;
  if (options_.socket_path.size() >= sizeof(addr.sun_path)) {
    s = invalid_argument("socket path too long: " + options_.socket_path);
  } else {
    std::memcpy(addr.sun_path, options_.socket_path.data(), options_.socket_path.size());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      s = errno_status(errno, "connect " + options_.socket_path);
    else
      s = handshake_upstream(fd, info);
  }
  if (!s.is_ok()) {
    ::close(fd);
    return s;
  }
  return fd;
}

Status Relay::handshake_upstream(int fd, ExportInfo* info) {
  char greeting[18];
  PXD_RETURN_IF_ERROR(read_full(fd, greeting, sizeof(greeting)));
  Reader g(std::string_view(greeting, sizeof(greeting)));
  if (g.u64() != kInitMagic || g.u64() != kOptionMagic || !(g.u16() & kFlagFixedNewstyle))
    return invalid_argument("upstream is not a fixed-newstyle NBD server");
  uint32_t client_flags = htobe32(kClientFixedNewstyle | kClientNoZeroes);
  PXD_RETURN_IF_ERROR(write_full(fd, &client_flags, 4));

  Writer go;
  go.u32(static_cast<uint32_t>(options_.export_name.size())).bytes(options_.export_name);
  go.u16(1).u16(kInfoBlockSize);
  PXD_RETURN_IF_ERROR(send_option(fd, kOptGo, go.str()));
  ExportInfo got;
  bool have_export = false;
  for (;;) {
    char head[20];
    PXD_RETURN_IF_ERROR(read_full(fd, head, sizeof(head)));
    Reader h(std::string_view(head, sizeof(head)));
    uint64_t magic = h.u64();
    uint32_t option = h.u32(), type = h.u32(), length = h.u32();
    if (magic != kOptionReplyMagic || option != kOptGo || length > kMaxOptionData)
      return invalid_argument("bad option reply from upstream");
    std::string body(length, '\0');
    PXD_RETURN_IF_ERROR(read_full(fd, body.data(), length));
    if (type == kRepAck) break;
    if (type & kRepErrorBit)
      return failed_precondition("export '" + options_.export_name + "' refused: " +
                                 (body.empty() ? std::string(reply_name(type)) : body));
    if (type != kRepInfo || length < 2) continue;
    Reader b(body);
    uint16_t info_type = b.u16();
    if (info_type == kInfoExport && length >= 12) {
      got.size = b.u64();
      got.flags = b.u16();
      have_export = true;
    } else if (info_type == kInfoBlockSize && length >= 14) {
      got.min_block = b.u32();
      got.preferred_block = b.u32();
      got.max_block = b.u32();
    }
  }
  if (!have_export) return invalid_argument("upstream sent no export information");
  *info = got;
  return Status::ok();
}

Status Relay::serve_handshake() {
  const int in = options_.client_in, out = options_.client_out;
  Writer hello;
  hello.u64(kInitMagic).u64(kOptionMagic).u16(kFlagFixedNewstyle | kFlagNoZeroes);
  PXD_RETURN_IF_ERROR(write_full(out, hello.str()));
  uint32_t client_flags_be = 0;
  PXD_RETURN_IF_ERROR(read_full(in, &client_flags_be, 4));
  const uint32_t client_flags = be32toh(client_flags_be);
  if (!(client_flags & kClientFixedNewstyle))
    return invalid_argument("client does not speak fixed newstyle");
  // Flags without structured replies: the relay passes simple replies through.
  const uint16_t flags = info_.flags & ~(kTransCanMultiConn | kTransSendDf);
  for (;;) {
    char head[16];
    PXD_RETURN_IF_ERROR(read_full(in, head, sizeof(head)));
    Reader h(std::string_view(head, sizeof(head)));
    uint64_t magic = h.u64();
    uint32_t option = h.u32(), length = h.u32();
    if (magic != kOptionMagic) return invalid_argument("bad option magic from client");
    if (length > kMaxOptionData) return invalid_argument("option data too large");
    std::string body(length, '\0');
    PXD_RETURN_IF_ERROR(read_full(in, body.data(), length));
    switch (option) {
      case kOptExportName: {
        Writer w;
        w.u64(info_.size).u16(flags);
        if (!(client_flags & kClientNoZeroes)) w.bytes(std::string(124, '\0'));
        return write_full(out, w.str());
      }
      case kOptGo:
      case kOptInfo: {
        Writer e;
        e.u16(kInfoExport).u64(info_.size).u16(flags);
        PXD_RETURN_IF_ERROR(send_option_reply(out, option, kRepInfo, e.str()));
        if (info_.max_block != 0) {
          Writer b;
          b.u16(kInfoBlockSize)
              .u32(info_.min_block)
              .u32(info_.preferred_block)
              .u32(info_.max_block);
          PXD_RETURN_IF_ERROR(send_option_reply(out, option, kRepInfo, b.str()));
        }
        PXD_RETURN_IF_ERROR(send_option_reply(out, option, kRepAck));
        if (option == kOptGo) return Status::ok();
        break;
      }
      case kOptList: {
        Writer w;
        w.u32(static_cast<uint32_t>(options_.export_name.size())).bytes(options_.export_name);
        PXD_RETURN_IF_ERROR(send_option_reply(out, option, kRepServer, w.str()));
        PXD_RETURN_IF_ERROR(send_option_reply(out, option, kRepAck));
        break;
      }
      case kOptAbort:
        (void)send_option_reply(out, option, kRepAck);
        return failed_precondition("client aborted the handshake");
      default:
        PXD_RETURN_IF_ERROR(send_option_reply(out, option, kRepErrUnsup));
    }
  }
}

Status Relay::send_upstream(uint64_t relay_cookie, const Request& req) {
  Writer w;
  w.u32(kRequestMagic)
      .u16(req.flags)
      .u16(req.type)
      .u64(relay_cookie)
      .u64(req.offset)
      .u32(req.length);
  PXD_RETURN_IF_ERROR(write_full(upstream_, w.str()));
  if (req.type == kCmdWrite)
    PXD_RETURN_IF_ERROR(write_full(upstream_, req.data.data(), req.length));
  return Status::ok();
}

void Relay::submit(Request req) {
  uint64_t cookie;
  bool broken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cookie = next_cookie_++;
    broken = broken_;
    inflight_.emplace(cookie, req);
  }
  if (broken) return;  // the reconnect sends it
  if (!send_upstream(cookie, req).is_ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    broken_ = true;
    ::shutdown(upstream_, SHUT_RDWR);  // the reply thread sees it and reconnects
  }
}

Status Relay::reply_to_client(uint64_t cookie, uint32_t error, const char* data, uint32_t length) {
  Writer w;
  w.u32(kSimpleReplyMagic).u32(error).u64(cookie);
  std::lock_guard<std::mutex> lock(client_mu_);
  PXD_RETURN_IF_ERROR(write_full(options_.client_out, w.str()));
  if (length > 0) PXD_RETURN_IF_ERROR(write_full(options_.client_out, data, length));
  return Status::ok();
}

Status Relay::handle_reply(int fd) {
  char head[16];
  PXD_RETURN_IF_ERROR(read_full(fd, head, sizeof(head)));
  Reader h(std::string_view(head, sizeof(head)));
  const uint32_t magic = h.u32(), error = h.u32();
  const uint64_t cookie = h.u64();
  if (magic != kSimpleReplyMagic) return invalid_argument("bad reply magic from upstream");
  Request req;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = inflight_.find(cookie);
    if (it == inflight_.end()) return invalid_argument("reply to an unknown request");
    req = std::move(it->second);
    inflight_.erase(it);
  }
  if (error == kEshutdown) {
    // The server is going away (pxd stopping): the request did not run. Keep it for the
    // next connection, and treat this one as broken.
    std::lock_guard<std::mutex> lock(mu_);
    inflight_.emplace(cookie, std::move(req));
    return io_error("server is shutting down");
  }
  std::vector<char> payload;
  if (req.type == kCmdRead && error == 0) {
    payload.resize(req.length);
    PXD_RETURN_IF_ERROR(read_full(fd, payload.data(), req.length));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (error == 0 && is_mutation(req.type) && !(req.flags & kCmdFlagFua)) {
      uint64_t bytes = req.type == kCmdWrite ? req.length : 0;
      unflushed_bytes_ += bytes + sizeof(Unflushed);
      unflushed_.push_back({++acks_, req});
    } else if (error == 0 && req.type == kCmdFlush) {
      while (!unflushed_.empty() && unflushed_.front().ack <= req.acked_before) {
        unflushed_bytes_ -= unflushed_.front().request.data.size() + sizeof(Unflushed);
        unflushed_.pop_front();
      }
    }
    if (req.internal && req.type == kCmdFlush) relay_flush_pending_ = false;
    cv_.notify_all();
  }
  if (req.internal) {
    if (error != 0) PXD_LOG(kWarn) << "relay flush failed upstream: error " << error;
    return Status::ok();
  }
  Status s =
      reply_to_client(req.cookie, error, payload.data(), static_cast<uint32_t>(payload.size()));
  if (!s.is_ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    client_done_ = true;
    cv_.notify_all();
  }
  return Status::ok();
}

Status Relay::reconnect() {
  if (upstream_ >= 0) {
    ::close(upstream_);
    upstream_ = -1;
  }
  const auto started = std::chrono::steady_clock::now();
  auto last_log = started - std::chrono::hours(1);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (client_done_) return io_error("client gone");
    }
    ExportInfo info;
    auto fd = connect_upstream(&info);
    if (fd.has_value() && connection_ > 0 && info.size < info_.size) {
      ::close(fd.value());
      return failed_precondition("export '" + options_.export_name +
                                 "' came back smaller than before: not the same volume");
    }
    if (fd.has_value()) {
      if (connection_ == 0) info_ = info;
      upstream_ = fd.value();
      break;
    }
    auto now = std::chrono::steady_clock::now();
    if (options_.give_up_seconds != 0 &&
        now - started > std::chrono::seconds(options_.give_up_seconds))
      return io_error("pxd did not come back within " + std::to_string(options_.give_up_seconds) +
                      " s: " + fd.error().message());
    if (now - last_log > std::chrono::seconds(60)) {
      PXD_LOG(kWarn) << "waiting for pxd to serve '" << options_.export_name
                     << "' again: " << fd.error().message();
      last_log = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.retry_ms));
  }
  // Replay what the old server may have lost, and wait for it: a flush re-sent below
  // must find these completed.
  std::vector<Request> replays;
  std::vector<std::pair<uint64_t, Request>> resend;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Unflushed& u : unflushed_) replays.push_back(u.request);
    resend.assign(inflight_.begin(), inflight_.end());
  }
  for (size_t i = 0; i < replays.size(); ++i)
    PXD_RETURN_IF_ERROR(send_upstream(UINT64_MAX - i, replays[i]));
  for (size_t i = 0; i < replays.size(); ++i) {
    char head[16];
    PXD_RETURN_IF_ERROR(read_full(upstream_, head, sizeof(head)));
    Reader h(std::string_view(head, sizeof(head)));
    h.u32();
    if (uint32_t error = h.u32(); error != 0)
      return io_error("replaying an unflushed write failed upstream (error " +
                      std::to_string(error) + "): data may be lost");
  }
  for (const auto& [cookie, req] : resend) PXD_RETURN_IF_ERROR(send_upstream(cookie, req));
  std::lock_guard<std::mutex> lock(mu_);
  broken_ = false;
  ++connection_;
  if (!replays.empty() || !resend.empty())
    PXD_LOG(kInfo) << "reconnected '" << options_.export_name << "': replayed " << replays.size()
                   << ", re-sent " << resend.size();
  return Status::ok();
}

void Relay::fail_all(const Status& why) {
  std::map<uint64_t, Request> failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fatal_ = why;
    client_done_ = true;
    failed.swap(inflight_);
    cv_.notify_all();
  }
  for (const auto& [cookie, req] : failed)
    if (!req.internal) (void)reply_to_client(req.cookie, kEio, nullptr, 0);
  ::shutdown(options_.client_in, SHUT_RDWR);
}

void Relay::read_replies() {
  for (;;) {
    Status s = handle_reply(upstream_);
    if (s.is_ok()) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (client_done_ && inflight_.empty()) return;
      broken_ = true;
    }
    PXD_LOG(kWarn) << "lost pxd for '" << options_.export_name << "': " << s.message();
    std::lock_guard<std::mutex> send_lock(send_mu_);
    Status r = reconnect();
    if (!r.is_ok()) {
      fail_all(r);
      return;
    }
  }
}

Status Relay::forward_requests() {
  const int in = options_.client_in;
  for (;;) {
    char head[28];
    bool eof = false;
    Status s = read_full(in, head, sizeof(head), &eof);
    if (!s.is_ok()) return eof ? Status::ok() : s;
    Reader h(std::string_view(head, sizeof(head)));
    Request req;
    const uint32_t magic = h.u32();
    req.flags = h.u16();
    req.type = h.u16();
    req.cookie = h.u64();
    req.offset = h.u64();
    req.length = h.u32();
    if (magic != kRequestMagic) return invalid_argument("bad request magic from client");
    if (req.type == kCmdDisc) return Status::ok();
    if (req.type == kCmdWrite) {
      if (req.length > kMaxPayload) return invalid_argument("write larger than 32 MiB");
      req.data.resize(req.length);
      PXD_RETURN_IF_ERROR(read_full(in, req.data.data(), req.length));
    } else if (req.type == kCmdRead && req.length > kMaxPayload) {
      PXD_RETURN_IF_ERROR(reply_to_client(req.cookie, kEoverflow, nullptr, 0));
      continue;
    }
    bool flush_now = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Bound the copies kept for replay: stop reading until a flush has covered them.
      cv_.wait(lock,
               [&] { return unflushed_bytes_ <= 4 * options_.unflushed_limit || client_done_; });
      if (client_done_) return fatal_.is_ok() ? Status::ok() : fatal_;
      if (req.type == kCmdFlush) req.acked_before = acks_;
      if (unflushed_bytes_ > options_.unflushed_limit && !relay_flush_pending_) {
        relay_flush_pending_ = true;
        flush_now = true;
      }
    }
    std::lock_guard<std::mutex> send_lock(send_mu_);
    submit(std::move(req));
    if (flush_now) {
      Request flush;
      flush.type = kCmdFlush;
      flush.internal = true;
      {
        std::lock_guard<std::mutex> lock(mu_);
        flush.acked_before = acks_;
      }
      submit(std::move(flush));
    }
  }
}

Status Relay::run() {
  {
    std::lock_guard<std::mutex> send_lock(send_mu_);
    broken_ = true;
    PXD_RETURN_IF_ERROR(reconnect());
  }
  PXD_RETURN_IF_ERROR(serve_handshake());
  std::thread replies([this] { read_replies(); });
  Status s = forward_requests();
  // Let what is in flight finish, make it durable, then leave.
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return inflight_.empty() || !fatal_.is_ok(); });
  }
  if (fatal_.is_ok()) {
    std::lock_guard<std::mutex> send_lock(send_mu_);
    Request flush;
    flush.type = kCmdFlush;
    flush.internal = true;
    flush.acked_before = acks_;
    submit(std::move(flush));
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return inflight_.empty() || !fatal_.is_ok(); });
    client_done_ = true;
  }
  {
    std::lock_guard<std::mutex> send_lock(send_mu_);
    Request disc;
    disc.type = kCmdDisc;
    (void)send_upstream(0, disc);
    ::shutdown(upstream_, SHUT_RDWR);
  }
  replies.join();
  if (upstream_ >= 0) ::close(upstream_);
  if (!fatal_.is_ok()) return fatal_;
  return s;
}

}  // namespace pxd::relay
