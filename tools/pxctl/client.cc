#include "tools/pxctl/client.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pxd::pxctl {

const char* const kClientVersion = PXCTL_VERSION;

namespace {

// The same limits pxd puts on what it reads (doc/control-api.md).
capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 8 << 20;
  options.nestingLimit = 32;
  return options;
}

CommandError unreachable(const std::string& path, const std::string& reason) {
  return CommandError(kExitUnreachable, "cannot reach pxd at " + path + ": " + reason);
}

// Connects a blocking unix stream socket, waiting at most `timeout` if pxd's listen queue
// is full (SO_SNDTIMEO bounds connect() on unix sockets). Doing this by hand rather than
// through kj's network gives the exact errno for the message.
int connect_unix(const std::string& path, std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  if (path.empty()) throw CommandError(kExitUsage, "the socket path is empty");
  if (path.size() >= sizeof(addr.sun_path)) {
    throw CommandError(kExitUsage, "socket path '" + path + "' is longer than " +
                                       std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw CommandError(kExitFailed, std::string("socket(): ") + std::strerror(errno));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return fd;
  int err = errno;
  ::close(fd);
  switch (err) {
    case ENOENT:
    case ECONNREFUSED:
      throw unreachable(path, std::string(std::strerror(err)) + " (is pxd running?)");
    case EACCES:
    case EPERM:
      throw CommandError(kExitPermission, "permission denied connecting to " + path +
                                              ": the control API is for root and members "
                                              "of group pxd");
    case EAGAIN:
    case EINPROGRESS:
    case ETIMEDOUT:
      throw unreachable(
          path, "timed out connecting after " + std::to_string(timeout.count() / 1000) + " s");
    default:
      throw unreachable(path, std::strerror(err));
  }
}

}  // namespace

// Members are destroyed in reverse order: the capability before the RPC system before the
// network before the stream before the event loop.
struct Client::Impl {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  proto::Control::Client control = nullptr;
};

Client::Client(std::string socket_path, std::chrono::milliseconds timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout) {}

Client::~Client() = default;

std::unique_ptr<Client> Client::connect(const std::string& socket_path,
                                        std::chrono::milliseconds timeout) {
  int fd = connect_unix(socket_path, timeout);
  std::unique_ptr<Client> client(new Client(socket_path, timeout));
  client->impl_ = std::make_unique<Impl>();
  Impl& impl = *client->impl_;
  impl.stream =
      impl.io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  impl.network = kj::heap<capnp::TwoPartyVatNetwork>(
      *impl.stream, capnp::rpc::twoparty::Side::CLIENT, reader_options());
  impl.rpc = kj::heap(capnp::makeRpcClient(*impl.network));
  capnp::MallocMessageBuilder vat_message(8);
  auto server_id = vat_message.getRoot<capnp::rpc::twoparty::VatId>();
  server_id.setSide(capnp::rpc::twoparty::Side::SERVER);
  impl.control = impl.rpc->bootstrap(server_id).castAs<proto::Control>();
  client->hello();
  return client;
}

proto::Control::Client& Client::control() {
  return impl_->control;
}

kj::Timer& Client::timer() {
  return impl_->io.provider->getTimer();
}

kj::WaitScope& Client::wait_scope() {
  return impl_->io.waitScope;
}

void Client::hello() {
  auto request = control().helloRequest();
  request.setClientApiVersion(proto::API_VERSION);
  request.setClientVersion(kClientVersion);
  auto response = call(request);
  server_api_version_ = response.getApiVersion();
  server_version_ = response.getVersion().cStr();
  if (server_api_version_ < kRequiredApiVersion) {
    throw CommandError(kExitFailed,
                       "pxd " + server_version_ + " at " + socket_path_ + " speaks control API " +
                           std::to_string(server_api_version_) + "; this pxctl needs " +
                           std::to_string(kRequiredApiVersion) + " or later");
  }
}

CommandError Client::translate(const kj::Exception& e, bool timed_out) const {
  if (timed_out) {
    return unreachable(socket_path_, "timed out after " + std::to_string(timeout_.count() / 1000) +
                                         " s waiting for an answer");
  }
  std::string description = e.getDescription().cStr();
  switch (e.getType()) {
    case kj::Exception::Type::DISCONNECTED:
      return unreachable(socket_path_,
                         "the connection closed before pxd answered (" + description + ")");
    case kj::Exception::Type::UNIMPLEMENTED:
      return CommandError(kExitFailed, "pxd " + server_version_ + " at " + socket_path_ +
                                           " does not implement this request; upgrade pxd");
    case kj::Exception::Type::OVERLOADED:
      return unreachable(socket_path_, "pxd is overloaded (" + description + ")");
    case kj::Exception::Type::FAILED:
    default:
      return CommandError(kExitFailed, "pxd failed the request: " + description);
  }
}

}  // namespace pxd::pxctl
