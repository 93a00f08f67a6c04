#include "nbd/transmission.h"

#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.h"
#include "nbd/protocol.h"

namespace pxd::nbd {
namespace {

constexpr size_t kRxBytes = 256 * 1024;
// A write payload at least this long is received straight into its buffer.
constexpr uint32_t kDirectReceiveBytes = 32 * 1024;
constexpr size_t kMaxIovecs = 96;
// Write-zeroes with NO_HOLE writes real zeros in pieces of this size.
constexpr uint32_t kZeroPieceBytes = 4u << 20;
// At most this many descriptors answer one BLOCK_STATUS (the protocol allows fewer than
// the range needs).
constexpr size_t kMaxDescriptors = 16384;
// Buffers up to 1 MiB are kept for reuse, by power-of-two size class from 4 KiB.
constexpr uint32_t kMinBufferClass = 12, kMaxBufferClass = 20;

const std::byte* zero_buffer() {
  static const std::byte* zeros = [] {
    void* p = nullptr;
    if (posix_memalign(&p, kIoBufferAlignment, kZeroPieceBytes) != 0) std::abort();
    std::memset(p, 0, kZeroPieceBytes);
    return static_cast<const std::byte*>(p);
  }();
  return zeros;
}

// The protocol's error for an engine errno.
uint32_t wire_error(int result) {
  switch (-result) {
    case EPERM:
    case EROFS:
      return proto::kEperm;
    case EINVAL:
      return proto::kEinval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return proto::kEnospc;
    case ENOMEM:
      return proto::kEnomem;
    case EOVERFLOW:
      return proto::kEoverflow;
    case ESHUTDOWN:
      return proto::kEshutdown;
    default:
      return proto::kEio;
  }
}

const char* command_name(uint16_t type) {
  switch (type) {
    case proto::kCmdRead:
      return "READ";
    case proto::kCmdWrite:
      return "WRITE";
    case proto::kCmdFlush:
      return "FLUSH";
    case proto::kCmdTrim:
      return "TRIM";
    case proto::kCmdWriteZeroes:
      return "WRITE_ZEROES";
    case proto::kCmdBlockStatus:
      return "BLOCK_STATUS";
    default:
      return "command";
  }
}

bool is_mutation(uint16_t type) {
  return type == proto::kCmdWrite || type == proto::kCmdTrim || type == proto::kCmdWriteZeroes;
}

}  // namespace

struct Transmission::Request {
  IoRequest io;
  Transmission* owner = nullptr;
  // From the request header.
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  uint16_t type = 0;
  uint16_t flags = 0;
  // The payload: write data received, or read data to send (kIoBufferAlignment-aligned).
  std::byte* buffer = nullptr;
  uint32_t buffer_size = 0;
  uint32_t received = 0;        // WRITE: payload bytes received so far
  uint64_t zeroed = 0;          // WRITE_ZEROES with NO_HOLE: bytes submitted so far
  bool flush_after = false;     // TRIM or WRITE_ZEROES with FUA: flush once done
  bool in_engine = false;
  // The reply: head, then extra, then data.
  std::byte head[32];
  uint32_t head_size = 0;
  std::vector<std::byte> extra;
  const std::byte* data = nullptr;
  uint32_t data_size = 0;
  Request* next = nullptr;

  size_t reply_size() const { return head_size + extra.size() + data_size; }
};

// A socket operation's (or a cancellation's) completion.
class Transmission::SocketOp final : public IoCompletion {
 public:
  enum class Kind { kRecv, kSend, kCancel };
  SocketOp(Transmission* t, Kind kind) : t_(t), kind_(kind) {}
  void on_complete(int result) override {
    switch (kind_) {
      case Kind::kRecv:
        t_->on_recv(result);
        break;
      case Kind::kSend:
        t_->on_send(result);
        break;
      case Kind::kCancel:
        --t_->cancels_in_flight_;
        t_->pump();
        delete this;
        break;
    }
  }

 private:
  Transmission* t_;
  Kind kind_;
};

Transmission::Transmission(int fd, Session session, const ServerOptions& options, IoRing& ring)
    : fd_(fd), session_(std::move(session)), options_(options), ring_(ring) {
  void* p = nullptr;
  if (posix_memalign(&p, kIoBufferAlignment, kRxBytes) != 0) std::abort();
  rx_ = static_cast<std::byte*>(p);
  recv_op_ = std::make_unique<SocketOp>(this, SocketOp::Kind::kRecv);
  send_op_ = std::make_unique<SocketOp>(this, SocketOp::Kind::kSend);
  spare_buffers_.resize(kMaxBufferClass - kMinBufferClass + 1);
  iov_.reserve(kMaxIovecs);
}

Transmission::~Transmission() {
  // run() returned: nothing of ours is in flight.
  std::free(rx_);
  if (receiving_) release(receiving_);
  for (Request* r : spare_requests_) delete r;
  for (auto& list : spare_buffers_)
    for (std::byte* b : list) std::free(b);
}

void Transmission::run() {
  pump();
  while (!finished()) {
    int timeout = -1;
    if (stopping_ && !broken_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          drain_deadline_ - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        break_connection("replies not taken within the drain timeout at shutdown");
        continue;
      }
      timeout = static_cast<int>(left.count()) + 1;
    }
    int rc = ring_.run_once(true, timeout);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      PXD_LOG(kError) << "nbd: ring of export '" << session_.export_name
                      << "' failed: " << std::strerror(-rc);
      break_connection("ring failure");
    }
  }
}

void Transmission::stop() {
  if (stopping_) return;
  stopping_ = true;
  drain_deadline_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.drain_timeout_ms);
  stop_reading("server stopping");
  pump();
}

bool Transmission::finished() const {
  return reading_done_ && !recv_posted_ && !send_posted_ && requests_ == 0 &&
         cancels_in_flight_ == 0;
}

void Transmission::pump() {
  process_input();
  post_recv();
  post_send();
}

// ---- Reading ----

bool Transmission::may_start_request() const {
  if (requests_ == 0) return true;
  return requests_ < options_.max_requests_per_connection &&
         buffered_ < options_.max_buffered_bytes_per_connection;
}

void Transmission::process_input() {
  for (;;) {
    if (receiving_) {
      Request* r = receiving_;
      size_t n = std::min<size_t>(rx_end_ - rx_start_, r->length - r->received);
      std::memcpy(r->buffer + r->received, rx_ + rx_start_, n);
      rx_start_ += n;
      r->received += static_cast<uint32_t>(n);
      if (r->received < r->length) return;
      receiving_ = nullptr;
      execute(r);
      continue;
    }
    if (reading_done_ || rx_end_ - rx_start_ < proto::kRequestHeaderBytes) return;
    if (!may_start_request()) return;
    const std::byte* header = rx_ + rx_start_;
    rx_start_ += proto::kRequestHeaderBytes;
    start_request(header);
  }
}

void Transmission::start_request(const std::byte* h) {
  if (proto::get32(h) != proto::kRequestMagic) {
    break_connection("bad request magic");
    return;
  }
  Request* r;
  if (spare_requests_.empty()) {
    r = new Request();
  } else {
    r = spare_requests_.back();
    spare_requests_.pop_back();
  }
  r->owner = this;
  r->flags = proto::get16(h + 4);
  r->type = proto::get16(h + 6);
  r->cookie = proto::get64(h + 8);
  r->offset = proto::get64(h + 16);
  r->length = proto::get32(h + 24);
  r->buffer = nullptr;
  r->buffer_size = 0;
  r->received = 0;
  r->zeroed = 0;
  r->flush_after = false;
  r->in_engine = false;
  r->head_size = 0;
  r->extra.clear();
  r->data = nullptr;
  r->data_size = 0;
  r->next = nullptr;
  ++requests_;

  if (r->type == proto::kCmdDisc) {
    release(r);
    stop_reading("client disconnected (NBD_CMD_DISC)");
    return;
  }
  if (r->type == proto::kCmdWrite) {
    if (r->length > options_.max_payload_bytes) {
      // The payload cannot be skipped cheaply: answer, then end the connection.
      reply_error(r, proto::kEinval,
                  "write of " + std::to_string(r->length) + " bytes is over the maximum of " +
                      std::to_string(options_.max_payload_bytes));
      stop_reading("write payload over the limit");
      return;
    }
    if (r->length > 0) {
      r->buffer = get_buffer(r->length);
      r->buffer_size = r->length;
      buffered_ += r->length;
      receiving_ = r;
      return;  // process_input() collects the payload, then executes
    }
  }
  execute(r);
}

void Transmission::post_recv() {
  if (recv_posted_ || reading_done_ || broken_) return;
  std::byte* target;
  size_t length;
  if (receiving_ && receiving_->length - receiving_->received >= kDirectReceiveBytes &&
      rx_start_ == rx_end_) {
    target = receiving_->buffer + receiving_->received;
    length = receiving_->length - receiving_->received;
    recv_direct_ = true;
  } else {
    if (!receiving_ &&
        (rx_end_ - rx_start_ >= proto::kRequestHeaderBytes || !may_start_request()))
      return;  // enough to parse already, or holding back until requests finish
    if (rx_start_ > 0) {
      std::memmove(rx_, rx_ + rx_start_, rx_end_ - rx_start_);
      rx_end_ -= rx_start_;
      rx_start_ = 0;
    }
    target = rx_ + rx_end_;
    length = kRxBytes - rx_end_;
  }
  io_uring_sqe* sqe = ring_.get_sqe(recv_op_.get());
  io_uring_prep_recv(sqe, fd_, target, length, 0);
  io_uring_sqe_set_data(sqe, recv_op_.get());
  recv_posted_ = true;
}

void Transmission::on_recv(int result) {
  recv_posted_ = false;
  const bool direct = recv_direct_;
  recv_direct_ = false;
  if (reading_done_) {
    drop_receiving();
  } else if (result <= 0) {
    stop_reading(result == 0 ? std::string("client closed the connection")
                             : std::string("receive failed: ") + std::strerror(-result));
  } else if (direct) {
    Request* r = receiving_;
    r->received += static_cast<uint32_t>(result);
    if (r->received == r->length) {
      receiving_ = nullptr;
      execute(r);
    }
  } else {
    rx_end_ += static_cast<size_t>(result);
  }
  pump();
}

void Transmission::stop_reading(const std::string& reason) {
  if (end_reason_.empty()) end_reason_ = reason;
  reading_done_ = true;
  rx_start_ = rx_end_ = 0;
  if (recv_posted_) cancel(*recv_op_);
  drop_receiving();  // never submitted: only the socket may hold its buffer
}

void Transmission::cancel(SocketOp& op) {
  auto* c = new SocketOp(this, SocketOp::Kind::kCancel);
  io_uring_sqe* sqe = ring_.get_sqe(c);
  io_uring_prep_cancel(sqe, &op, 0);
  io_uring_sqe_set_data(sqe, c);
  ++cancels_in_flight_;
}

// ---- Requests ----

uint32_t Transmission::validate(const Request* r, std::string* message) const {
  const Volume& v = *session_.volume;
  uint16_t allowed = proto::kCmdFlagFua;  // FUA is valid on every command once advertised
  switch (r->type) {
    case proto::kCmdRead:
      if (session_.structured_replies) allowed |= proto::kCmdFlagDf;
      break;
    case proto::kCmdWrite:
    case proto::kCmdFlush:
    case proto::kCmdTrim:
      break;
    case proto::kCmdWriteZeroes:
      allowed |= proto::kCmdFlagNoHole;
      break;
    case proto::kCmdBlockStatus:
      allowed |= proto::kCmdFlagReqOne;
      if (!session_.allocation_context) {
        *message = "BLOCK_STATUS needs the base:allocation context negotiated";
        return proto::kEinval;
      }
      break;
    default:
      *message = "unknown command " + std::to_string(r->type);
      return proto::kEinval;
  }
  if (r->flags & ~allowed) {
    *message = "flags " + std::to_string(r->flags) + " not valid for " + command_name(r->type);
    return proto::kEinval;
  }
  if (r->type == proto::kCmdFlush) {
    if (r->offset != 0 || r->length != 0) {
      *message = "FLUSH must have offset and length zero";
      return proto::kEinval;
    }
    return 0;
  }
  if (is_mutation(r->type) && v.read_only()) {
    *message = "the export is read-only";
    return proto::kEperm;
  }
  if (r->length == 0) {
    *message = std::string(command_name(r->type)) + " of length zero";
    return proto::kEinval;
  }
  if (r->type == proto::kCmdRead && r->length > options_.max_payload_bytes) {
    *message = "read of " + std::to_string(r->length) + " bytes is over the maximum of " +
               std::to_string(options_.max_payload_bytes);
    return proto::kEinval;
  }
  const uint64_t size = v.size_bytes();
  if (r->offset > size || r->length > size - r->offset) {
    *message = "range beyond the end of the export (" + std::to_string(size) + " bytes)";
    // The protocol asks for ENOSPC on writes past the end.
    return r->type == proto::kCmdWrite || r->type == proto::kCmdWriteZeroes ? proto::kEnospc
                                                                            : proto::kEinval;
  }
  const uint32_t bs = v.block_size();
  if (r->type != proto::kCmdBlockStatus && (r->offset % bs != 0 || r->length % bs != 0)) {
    *message = "offset and length must be multiples of the block size " + std::to_string(bs);
    return proto::kEinval;
  }
  return 0;
}

void Transmission::execute(Request* r) {
  std::string message;
  if (uint32_t error = validate(r, &message)) {
    reply_error(r, error, message);
    return;
  }
  const bool fua = r->flags & proto::kCmdFlagFua;
  switch (r->type) {
    case proto::kCmdRead:
      r->buffer = get_buffer(r->length);
      r->buffer_size = r->length;
      buffered_ += r->length;
      submit(r, IoOp::kRead, r->offset, r->length, r->buffer, 0);
      break;
    case proto::kCmdWrite:
      submit(r, IoOp::kWrite, r->offset, r->length, r->buffer, fua ? uint32_t{kIoFua} : 0u);
      break;
    case proto::kCmdFlush:
      submit(r, IoOp::kFlush, 0, 0, nullptr, 0);
      break;
    case proto::kCmdTrim:
      r->flush_after = fua;
      submit(r, IoOp::kDiscard, r->offset, r->length, nullptr, 0);
      break;
    case proto::kCmdWriteZeroes:
      if (r->flags & proto::kCmdFlagNoHole) {
        // The range must stay allocated: write real zeros rather than punch a hole.
        submit_zero_piece(r);
      } else {
        r->flush_after = fua;
        submit(r, IoOp::kWriteZeroes, r->offset, r->length, nullptr, 0);
      }
      break;
    case proto::kCmdBlockStatus:
      block_status(r);
      break;
  }
}

void Transmission::submit(Request* r, IoOp op, uint64_t offset, uint64_t length,
                          std::byte* buffer, uint32_t flags) {
  r->io = IoRequest{};
  r->io.op = op;
  r->io.flags = flags;
  r->io.offset = offset;
  r->io.length = length;
  r->io.buffer = buffer;
  r->io.done = &Transmission::on_io_done;
  r->io.user = r;
  r->in_engine = true;
  session_.volume->submit(ring_, &r->io);
}

void Transmission::submit_zero_piece(Request* r) {
  const uint64_t piece = std::min<uint64_t>(r->length - r->zeroed, kZeroPieceBytes);
  const uint64_t at = r->offset + r->zeroed;
  r->zeroed += piece;
  // The engine only reads a write's buffer, so every piece shares one zero buffer.
  submit(r, IoOp::kWrite, at, piece, const_cast<std::byte*>(zero_buffer()),
         (r->flags & proto::kCmdFlagFua) ? uint32_t{kIoFua} : 0u);
}

void Transmission::on_io_done(IoRequest* io, int result) {
  auto* r = static_cast<Request*>(io->user);
  r->owner->io_done(r, result);
}

void Transmission::io_done(Request* r, int result) {
  r->in_engine = false;
  if (result < 0) {
    reply_error(r, wire_error(result), std::string(command_name(r->type)) + " failed: " +
                                           std::strerror(-result));
  } else if (r->type == proto::kCmdWriteZeroes && (r->flags & proto::kCmdFlagNoHole) &&
             r->zeroed < r->length) {
    submit_zero_piece(r);
  } else if (r->flush_after) {
    r->flush_after = false;
    submit(r, IoOp::kFlush, 0, 0, nullptr, 0);
  } else {
    reply_ok(r);
  }
  pump();
}

void Transmission::block_status(Request* r) {
  std::vector<VolumeExtent> extents;
  session_.volume->map_extents(r->offset, r->length, extents);
  const size_t limit = (r->flags & proto::kCmdFlagReqOne) ? 1 : kMaxDescriptors;
  const size_t count = std::min(extents.size(), limit);
  if (count == 0) {
    reply_error(r, proto::kEinval, "no extents in range");
    return;
  }
  r->extra.resize(count * 8);
  for (size_t i = 0; i < count; ++i) {
    const VolumeExtent& e = extents[i];
    proto::put32(&r->extra[i * 8], static_cast<uint32_t>(e.length));
    proto::put32(&r->extra[i * 8 + 4],
                 e.allocated ? 0 : (proto::kStateHole | proto::kStateZero));
  }
  std::byte* h = r->head;
  proto::put32(h, proto::kStructuredReplyMagic);
  proto::put16(h + 4, proto::kReplyFlagDone);
  proto::put16(h + 6, proto::kReplyTypeBlockStatus);
  proto::put64(h + 8, r->cookie);
  proto::put32(h + 16, static_cast<uint32_t>(4 + r->extra.size()));
  proto::put32(h + 20, kAllocationContextId);
  r->head_size = 24;
  queue_reply(r);
}

// ---- Replies ----

void Transmission::reply_ok(Request* r) {
  std::byte* h = r->head;
  if (r->type == proto::kCmdRead && session_.structured_replies) {
    proto::put32(h, proto::kStructuredReplyMagic);
    proto::put16(h + 4, proto::kReplyFlagDone);
    proto::put16(h + 6, proto::kReplyTypeOffsetData);
    proto::put64(h + 8, r->cookie);
    proto::put32(h + 16, 8 + r->length);
    proto::put64(h + 20, r->offset);
    r->head_size = 28;
  } else {
    proto::put32(h, proto::kSimpleReplyMagic);
    proto::put32(h + 4, 0);
    proto::put64(h + 8, r->cookie);
    r->head_size = 16;
  }
  if (r->type == proto::kCmdRead) {
    r->data = r->buffer;
    r->data_size = r->length;
  }
  queue_reply(r);
}

void Transmission::reply_error(Request* r, uint32_t error, const std::string& message) {
  PXD_LOG(kDebug) << "nbd: export '" << session_.export_name << "': " << command_name(r->type)
                  << " offset " << r->offset << " length " << r->length << ": " << message;
  std::byte* h = r->head;
  r->data = nullptr;
  r->data_size = 0;
  if (session_.structured_replies) {
    const size_t n = std::min<size_t>(message.size(), kMaxStringBytes);
    proto::put32(h, proto::kStructuredReplyMagic);
    proto::put16(h + 4, proto::kReplyFlagDone);
    proto::put16(h + 6, proto::kReplyTypeError);
    proto::put64(h + 8, r->cookie);
    proto::put32(h + 16, static_cast<uint32_t>(6 + n));
    proto::put32(h + 20, error);
    proto::put16(h + 24, static_cast<uint16_t>(n));
    r->head_size = 26;
    r->extra.assign(reinterpret_cast<const std::byte*>(message.data()),
                    reinterpret_cast<const std::byte*>(message.data()) + n);
  } else {
    proto::put32(h, proto::kSimpleReplyMagic);
    proto::put32(h + 4, error);
    proto::put64(h + 8, r->cookie);
    r->head_size = 16;
  }
  queue_reply(r);
}

void Transmission::queue_reply(Request* r) {
  if (broken_) {
    release(r);
    return;
  }
  r->next = nullptr;
  if (tx_tail_) {
    tx_tail_->next = r;
  } else {
    tx_head_ = r;
  }
  tx_tail_ = r;
}

void Transmission::post_send() {
  if (send_posted_ || broken_ || !tx_head_) return;
  iov_.clear();
  size_t skip = tx_done_;
  for (Request* r = tx_head_; r && iov_.size() + 3 <= kMaxIovecs; r = r->next) {
    auto add = [&](const void* p, size_t n) {
      if (n <= skip) {
        skip -= n;
        return;
      }
      iov_.push_back({const_cast<std::byte*>(static_cast<const std::byte*>(p)) + skip, n - skip});
      skip = 0;
    };
    add(r->head, r->head_size);
    if (!r->extra.empty()) add(r->extra.data(), r->extra.size());
    if (r->data_size) add(r->data, r->data_size);
  }
  msg_ = msghdr{};
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = iov_.size();
  io_uring_sqe* sqe = ring_.get_sqe(send_op_.get());
  io_uring_prep_sendmsg(sqe, fd_, &msg_, MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, send_op_.get());
  send_posted_ = true;
}

void Transmission::on_send(int result) {
  send_posted_ = false;
  if (result <= 0 && !broken_) {
    break_connection(result == 0 ? std::string("send made no progress")
                                 : std::string("send failed: ") + std::strerror(-result));
  }
  if (result > 0) {
    size_t sent = static_cast<size_t>(result) + tx_done_;
    while (tx_head_ && sent >= tx_head_->reply_size()) {
      Request* r = tx_head_;
      sent -= r->reply_size();
      tx_head_ = r->next;
      if (!tx_head_) tx_tail_ = nullptr;
      release(r);
    }
    tx_done_ = tx_head_ ? sent : 0;
  }
  if (broken_) drop_replies();
  pump();
}

void Transmission::release(Request* r) {
  if (r->buffer) {
    put_buffer(r->buffer, r->buffer_size);
    buffered_ -= r->buffer_size;
    r->buffer = nullptr;
  }
  r->extra.clear();
  --requests_;
  spare_requests_.push_back(r);
}

void Transmission::break_connection(const std::string& reason) {
  if (broken_) return;
  if (end_reason_.empty()) end_reason_ = reason;
  broken_ = true;
  reading_done_ = true;
  rx_start_ = rx_end_ = 0;
  ::shutdown(fd_, SHUT_RDWR);
  if (recv_posted_) cancel(*recv_op_);
  drop_receiving();
  if (send_posted_) {
    cancel(*send_op_);  // on_send drops the queue once the kernel is done with it
  } else {
    drop_replies();
  }
}

void Transmission::drop_receiving() {
  // A payload the socket may still be receiving into is released when that receive ends.
  if (!receiving_ || recv_posted_) return;
  Request* r = receiving_;
  receiving_ = nullptr;
  release(r);
}

void Transmission::drop_replies() {
  while (tx_head_) {
    Request* r = tx_head_;
    tx_head_ = r->next;
    release(r);
  }
  tx_tail_ = nullptr;
  tx_done_ = 0;
}

// ---- Buffers ----

std::byte* Transmission::get_buffer(uint32_t size) {
  const uint32_t cls = std::max<uint32_t>(kMinBufferClass, std::bit_width(size - 1));
  if (cls <= kMaxBufferClass) {
    auto& list = spare_buffers_[cls - kMinBufferClass];
    if (!list.empty()) {
      std::byte* b = list.back();
      list.pop_back();
      return b;
    }
    size = 1u << cls;
  }
  void* p = nullptr;
  if (posix_memalign(&p, kIoBufferAlignment, size) != 0) std::abort();
  return static_cast<std::byte*>(p);
}

void Transmission::put_buffer(std::byte* buffer, uint32_t size) {
  const uint32_t cls = std::max<uint32_t>(kMinBufferClass, std::bit_width(size - 1));
  if (cls <= kMaxBufferClass) {
    spare_buffers_[cls - kMinBufferClass].push_back(buffer);
    return;
  }
  std::free(buffer);
}

}  // namespace pxd::nbd
