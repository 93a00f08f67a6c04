#include "nbd/handshake.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "nbd/protocol.h"

namespace pxd::nbd {
namespace {

using Clock = std::chrono::steady_clock;

// Blocking socket I/O bounded by the handshake's deadline.
class Channel {
 public:
  Channel(int fd, Clock::time_point deadline) : fd_(fd), deadline_(deadline) {}

  Status read(void* buf, size_t n) {
    auto* p = static_cast<char*>(buf);
    while (n > 0) {
      PXD_RETURN_IF_ERROR(wait(POLLIN));
      ssize_t r = ::recv(fd_, p, n, MSG_DONTWAIT);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r < 0) return errno_status(errno, "handshake read");
      if (r == 0) return io_error("the client closed the connection during the handshake");
      p += r;
      n -= static_cast<size_t>(r);
    }
    return Status::ok();
  }

  Status write(const std::string& data) {
    const char* p = data.data();
    size_t n = data.size();
    while (n > 0) {
      PXD_RETURN_IF_ERROR(wait(POLLOUT));
      ssize_t r = ::send(fd_, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r < 0) return errno_status(errno, "handshake write");
      p += r;
      n -= static_cast<size_t>(r);
    }
    return Status::ok();
  }

 private:
  Status wait(short events) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
      if (left.count() <= 0) return failed_precondition("the handshake timed out");
      pollfd pfd{fd_, events, 0};
      int r = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
      if (r < 0 && errno != EINTR) return errno_status(errno, "poll");
      if (r > 0) return Status::ok();  // readable, writable, or an error the call will see
    }
  }

  int fd_;
  Clock::time_point deadline_;
};

// One option reply. `data` is the reply's payload.
std::string option_reply(uint32_t option, uint32_t type, const std::string& data = {}) {
  proto::Writer w;
  w.u64(proto::kOptionReplyMagic).u32(option).u32(type).u32(static_cast<uint32_t>(data.size()));
  w.bytes(data);
  return w.str();
}

class Negotiation {
 public:
  Negotiation(int fd, ExportProvider& provider, const HandshakeLimits& limits)
      : io_(fd, limits.deadline), provider_(provider), limits_(limits) {}

  Result<Session> run();

 private:
  // Sends an error reply with a message for a human.
  Status refuse(uint32_t option, uint32_t type, const std::string& message) {
    return io_.write(option_reply(option, type, message));
  }
  Status ack(uint32_t option) { return io_.write(option_reply(option, proto::kRepAck)); }

  Status list(uint32_t option, const std::string& data);
  // NBD_OPT_INFO and NBD_OPT_GO. Sets *entered when GO succeeds.
  Status info_or_go(uint32_t option, const std::string& data, bool* entered);
  Status meta_context(uint32_t option, const std::string& data);
  // NBD_OPT_EXPORT_NAME: no error reply is possible; a failure closes the connection.
  Status export_name(const std::string& name);

  // Fills the session for transmission on export `name`. The metadata context chosen
  // applies only if it was chosen for this export.
  void enter(const std::string& name, std::shared_ptr<Volume> volume, uint16_t flags) {
    session_.export_name = name;
    session_.volume = std::move(volume);
    session_.transmission_flags = flags;
    session_.structured_replies = structured_;
    session_.allocation_context = meta_allocation_ && meta_export_ == name;
  }

  // Opens `name`, answering the option with an error reply if that fails.
  Result<std::shared_ptr<Volume>> open_or_refuse(uint32_t option, const std::string& name,
                                                 bool* refused);

  Channel io_;
  ExportProvider& provider_;
  const HandshakeLimits limits_;
  bool no_zeroes_ = false;
  bool structured_ = false;
  // The last NBD_OPT_SET_META_CONTEXT: for which export, and whether it chose
  // base:allocation. It applies only if the client then enters that same export.
  std::string meta_export_;
  bool meta_allocation_ = false;
  Session session_;
};

Result<Session> Negotiation::run() {
  proto::Writer greeting;
  greeting.u64(proto::kInitMagic)
      .u64(proto::kOptionMagic)
      .u16(proto::kFlagFixedNewstyle | proto::kFlagNoZeroes);
  PXD_RETURN_IF_ERROR(io_.write(greeting.str()));
  std::byte flags_buf[4];
  PXD_RETURN_IF_ERROR(io_.read(flags_buf, sizeof(flags_buf)));
  const uint32_t client_flags = proto::get32(flags_buf);
  if (client_flags & ~(proto::kClientFixedNewstyle | proto::kClientNoZeroes))
    return invalid_argument("the client set unknown handshake flags " +
                            std::to_string(client_flags));
  no_zeroes_ = client_flags & proto::kClientNoZeroes;

  for (;;) {
    std::byte header[16];
    PXD_RETURN_IF_ERROR(io_.read(header, sizeof(header)));
    if (proto::get64(header) != proto::kOptionMagic)
      return invalid_argument("the client sent an option without the IHAVEOPT magic");
    const uint32_t option = proto::get32(header + 8);
    const uint32_t length = proto::get32(header + 12);
    if (length > kMaxOptionBytes) {
      // Skipping gigabytes of option data is not worth the time: say why and close.
      if (option != proto::kOptExportName) {
        Status ignored = refuse(option, proto::kRepErrTooBig,
                                "option data of " + std::to_string(length) +
                                    " bytes is over the limit of " +
                                    std::to_string(kMaxOptionBytes));
        (void)ignored;
      }
      return invalid_argument("the client sent option " + std::to_string(option) + " with " +
                              std::to_string(length) + " bytes of data");
    }
    std::string data(length, '\0');
    PXD_RETURN_IF_ERROR(io_.read(data.data(), length));

    switch (option) {
      case proto::kOptExportName:
        PXD_RETURN_IF_ERROR(export_name(data));
        return std::move(session_);
      case proto::kOptAbort: {
        Status ignored = ack(option);  // the client may already be gone
        (void)ignored;
        return failed_precondition("the client aborted the handshake");
      }
      case proto::kOptList:
        PXD_RETURN_IF_ERROR(list(option, data));
        break;
      case proto::kOptInfo:
      case proto::kOptGo: {
        bool entered = false;
        PXD_RETURN_IF_ERROR(info_or_go(option, data, &entered));
        if (entered) return std::move(session_);
        break;
      }
      case proto::kOptStructuredReply:
        if (length != 0) {
          PXD_RETURN_IF_ERROR(refuse(option, proto::kRepErrInvalid,
                                     "NBD_OPT_STRUCTURED_REPLY takes no data"));
          break;
        }
        structured_ = true;
        PXD_RETURN_IF_ERROR(ack(option));
        break;
      case proto::kOptListMetaContext:
      case proto::kOptSetMetaContext:
        PXD_RETURN_IF_ERROR(meta_context(option, data));
        break;
      case proto::kOptStartTls:
        PXD_RETURN_IF_ERROR(refuse(option, proto::kRepErrUnsup, "TLS is not supported"));
        break;
      default:
        PXD_RETURN_IF_ERROR(refuse(option, proto::kRepErrUnsup,
                                   "option " + std::to_string(option) + " is not supported"));
        break;
    }
  }
}

Status Negotiation::list(uint32_t option, const std::string& data) {
  if (!data.empty()) return refuse(option, proto::kRepErrInvalid, "NBD_OPT_LIST takes no data");
  std::vector<std::string> names = provider_.list_exports();
  std::sort(names.begin(), names.end());
  std::string replies;
  for (const std::string& name : names) {
    proto::Writer w;
    w.u32(static_cast<uint32_t>(name.size())).bytes(name);
    replies += option_reply(option, proto::kRepServer, w.str());
  }
  replies += option_reply(option, proto::kRepAck);
  return io_.write(replies);
}

Result<std::shared_ptr<Volume>> Negotiation::open_or_refuse(uint32_t option,
                                                           const std::string& name,
                                                           bool* refused) {
  auto volume = provider_.open_export(name);
  if (volume.has_value()) return volume;
  const Status& why = volume.error();
  uint32_t type = why.code() == StatusCode::kInvalidArgument ? proto::kRepErrInvalid
                                                            : proto::kRepErrUnknown;
  std::string message = why.message();
  if (message.size() > kMaxStringBytes) message.resize(kMaxStringBytes);
  PXD_RETURN_IF_ERROR(refuse(option, type, message));
  *refused = true;
  return why;
}

Status Negotiation::info_or_go(uint32_t option, const std::string& data, bool* entered) {
  proto::Reader r(data);
  const uint32_t name_length = r.u32();
  std::string name = r.bytes(name_length);
  const uint16_t requests = r.u16();
  std::vector<uint16_t> infos;
  for (uint16_t i = 0; i < requests && r.ok(); ++i) infos.push_back(r.u16());
  if (!r.ok() || r.left() != 0 || name_length > kMaxStringBytes)
    return refuse(option, proto::kRepErrInvalid, "malformed NBD_OPT_INFO/NBD_OPT_GO data");

  bool refused = false;
  auto volume = open_or_refuse(option, name, &refused);
  if (!volume.has_value()) return refused ? Status::ok() : volume.error();
  const Volume& v = *volume.value();
  const uint16_t flags = transmission_flags(v, structured_);
  const BlockSizes sizes = block_sizes(v, limits_.max_payload_bytes);

  std::string replies;
  proto::Writer export_info;
  export_info.u16(proto::kInfoExport).u64(v.size_bytes()).u16(flags);
  replies += option_reply(option, proto::kRepInfo, export_info.str());
  // Sent whether asked or not (the protocol allows it): clients that know block sizes use
  // them, and the others get EINVAL on misaligned requests either way.
  proto::Writer size_info;
  size_info.u16(proto::kInfoBlockSize).u32(sizes.minimum).u32(sizes.preferred).u32(sizes.maximum);
  replies += option_reply(option, proto::kRepInfo, size_info.str());
  if (std::find(infos.begin(), infos.end(), proto::kInfoName) != infos.end()) {
    proto::Writer name_info;
    name_info.u16(proto::kInfoName).bytes(name);
    replies += option_reply(option, proto::kRepInfo, name_info.str());
  }
  replies += option_reply(option, proto::kRepAck);
  PXD_RETURN_IF_ERROR(io_.write(replies));

  if (option == proto::kOptGo) {
    enter(name, std::move(volume).value(), flags);
    *entered = true;
  }
  return Status::ok();
}

Status Negotiation::meta_context(uint32_t option, const std::string& data) {
  const bool set = option == proto::kOptSetMetaContext;
  if (!structured_)
    return refuse(option, proto::kRepErrInvalid,
                  "metadata contexts need NBD_OPT_STRUCTURED_REPLY first");
  proto::Reader r(data);
  const uint32_t name_length = r.u32();
  std::string name = r.bytes(name_length);
  const uint32_t count = r.u32();
  std::vector<std::string> queries;
  bool long_string = name_length > kMaxStringBytes;
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    uint32_t n = r.u32();
    long_string = long_string || n > kMaxStringBytes;
    queries.push_back(r.bytes(n));
  }
  if (!r.ok() || r.left() != 0 || long_string)
    return refuse(option, proto::kRepErrInvalid, "malformed metadata context option data");

  bool refused = false;
  auto volume = open_or_refuse(option, name, &refused);
  if (!volume.has_value()) return refused ? Status::ok() : volume.error();

  // LIST with no query, or with the namespace alone, lists everything; SET selects
  // exact names only.
  bool allocation = false;
  if (!set && queries.empty()) allocation = true;
  for (const std::string& q : queries) {
    if (q == proto::kContextBaseAllocation || (!set && q == "base:")) allocation = true;
  }
  std::string replies;
  if (allocation) {
    proto::Writer w;
    w.u32(set ? kAllocationContextId : 0).bytes(proto::kContextBaseAllocation);
    replies += option_reply(option, proto::kRepMetaContext, w.str());
  }
  replies += option_reply(option, proto::kRepAck);
  if (set) {
    meta_export_ = name;
    meta_allocation_ = allocation;
  }
  return io_.write(replies);
}

Status Negotiation::export_name(const std::string& name) {
  if (name.size() > kMaxStringBytes) return invalid_argument("export name too long");
  auto volume = provider_.open_export(name);
  if (!volume.has_value())
    return volume.error().with_context("NBD_OPT_EXPORT_NAME '" + name + "'");
  const Volume& v = *volume.value();
  // Options negotiated before stay in effect: once structured replies were acknowledged
  // the client expects them whichever way it enters transmission.
  const uint16_t flags = transmission_flags(v, structured_);
  proto::Writer w;
  w.u64(v.size_bytes()).u16(flags);
  if (!no_zeroes_) w.bytes(std::string(124, '\0'));
  PXD_RETURN_IF_ERROR(io_.write(w.str()));
  enter(name, std::move(volume).value(), flags);
  return Status::ok();
}

}  // namespace

BlockSizes block_sizes(const Volume& volume, uint32_t max_payload_bytes) {
  const uint32_t minimum = volume.block_size();
  const uint32_t preferred = std::max<uint32_t>(minimum, 4096);
  return {minimum, preferred, std::max(max_payload_bytes, preferred)};
}

uint16_t transmission_flags(const Volume& volume, bool structured_replies) {
  uint16_t flags = proto::kTransHasFlags | proto::kTransSendFlush | proto::kTransSendFua |
                   proto::kTransCanMultiConn;
  if (volume.read_only()) {
    flags |= proto::kTransReadOnly;
  } else {
    flags |= proto::kTransSendTrim | proto::kTransSendWriteZeroes;
  }
  if (structured_replies) flags |= proto::kTransSendDf;
  return flags;
}

Result<Session> negotiate(int fd, ExportProvider& provider, const HandshakeLimits& limits) {
  Negotiation negotiation(fd, provider, limits);
  return negotiation.run();
}

}  // namespace pxd::nbd
