#include "daemon/control_server.h"

#include <capnp/rpc-twoparty.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>

#include "common/log.h"
#include "common/peer_credentials.h"
#include "common/unix_socket.h"
#include "daemon/control_impl.h"
#include "daemon/convert.h"
#include "daemon/version.h"

namespace pxd::daemon {

ControlWorker::ControlWorker() {
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  thread_ = std::thread([&] {
    kj::EventLoop loop;
    kj::WaitScope wait_scope(loop);
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard<std::mutex> lock(mu);
      executor_ = kj::getCurrentThreadExecutor().addRef();
      stop_ = kj::mv(paf.fulfiller);
      ready = true;
    }
    cv.notify_one();
    paf.promise.wait(wait_scope);
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return ready; });
}

ControlWorker::~ControlWorker() {
  stop_->fulfill();
  thread_.join();
}

namespace {

// Whether the peer on `stream` may use the API, and a description for the log.
bool peer_allowed(kj::AsyncIoStream& stream, std::string* who) {
  struct ucred cred {};
  uint len = sizeof(cred);
  try {
    stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &len);
  } catch (const kj::Exception&) {
    *who = "unknown peer";
    return false;
  }
  *who = describe_peer(cred);
  return pxd::peer_allowed(cred);
}

struct Connection {
  Connection(kj::Own<kj::AsyncIoStream>&& s, capnp::Capability::Client bootstrap,
             capnp::ReaderOptions options)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, options),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

struct LogErrors : kj::TaskSet::ErrorHandler {
  void taskFailed(kj::Exception&& e) override {
    PXD_LOG(kDebug) << "control connection ended: " << e.getDescription().cStr();
  }
};

capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 8 << 20;
  options.nestingLimit = 32;
  return options;
}

}  // namespace

struct ControlServer::Impl final : CallGate {
  Impl(Node& n, ControlWorker& w, kj::AsyncIoContext& i)
      : node(n), worker(w), io(i), tasks(errors) {}

  bool accepting() const override { return !stopping; }
  void begin_call() override { ++inflight; }
  void end_call() override { --inflight; }

  kj::Promise<void> accept_loop() {
    return listener->accept().then([this](kj::Own<kj::AsyncIoStream>&& stream) {
      std::string who;
      bool allowed = peer_allowed(*stream, &who);
      if (!allowed) PXD_LOG(kWarn) << "refusing control connection from " << who;
      capnp::Capability::Client bootstrap =
          kj::heap<ControlImpl>(node, worker.executor(), *this, allowed);
      auto conn = kj::heap<Connection>(kj::mv(stream), kj::mv(bootstrap), reader_options());
      auto done = conn->network.onDisconnect();
      tasks.add(done.attach(kj::mv(conn)));
      return accept_loop();
    });
  }

  Node& node;
  ControlWorker& worker;
  kj::AsyncIoContext& io;
  LogErrors errors;
  kj::TaskSet tasks;
  kj::Own<kj::ConnectionReceiver> listener;
  kj::Promise<void> accepting_loop = nullptr;
  std::string path;
  bool stopping = false;
  uint64_t inflight = 0;
};

ControlServer::ControlServer(Node& node, ControlWorker& worker, kj::AsyncIoContext& io)
    : impl_(std::make_unique<Impl>(node, worker, io)) {}

ControlServer::~ControlServer() {
  impl_->accepting_loop = nullptr;
  impl_->listener = nullptr;
  if (!impl_->path.empty()) ::unlink(impl_->path.c_str());
}

Status ControlServer::listen(const std::string& path) {
  PXD_RETURN_IF_ERROR(prepare_socket_path(path, "control socket"));
  try {
    auto addr = impl_->io.provider->getNetwork()
                    .parseAddress(kj::str("unix:", path.c_str()))
                    .wait(impl_->io.waitScope);
    impl_->listener = addr->listen();
  } catch (const kj::Exception& e) {
    return io_error("listen on " + path + ": " + e.getDescription().cStr());
  }
  impl_->path = path;
  PXD_RETURN_IF_ERROR(restrict_socket(path));
  impl_->accepting_loop = impl_->accept_loop().eagerlyEvaluate([](kj::Exception&& e) {
    PXD_LOG(kError) << "control socket stopped accepting: " << e.getDescription().cStr();
  });
  return Status::ok();
}

kj::Promise<void> ControlServer::self_check() {
  return impl_->io.provider->getNetwork()
      .parseAddress(kj::str("unix:", impl_->path.c_str()))
      .then([](kj::Own<kj::NetworkAddress> addr) { return addr->connect().attach(kj::mv(addr)); })
      .then([](kj::Own<kj::AsyncIoStream> stream) {
        auto client = kj::heap<capnp::TwoPartyClient>(*stream);
        auto control = client->bootstrap().castAs<proto::Control>();
        auto req = control.helloRequest();
        req.setClientApiVersion(proto::API_VERSION);
        req.setClientVersion(kVersion);
        return req.send()
            .then([](auto response) {
              if (response.getStatus().getCode() != proto::Status::Code::OK)
                KJ_FAIL_REQUIRE("self-check hello refused", response.getStatus().getMessage());
            })
            .attach(kj::mv(control), kj::mv(client), kj::mv(stream));
      });
}

void ControlServer::stop_accepting() {
  impl_->stopping = true;
  impl_->accepting_loop = nullptr;
  impl_->listener = nullptr;
  if (!impl_->path.empty()) ::unlink(impl_->path.c_str());
  impl_->path.clear();
}

kj::Promise<bool> ControlServer::drain(kj::Duration timeout) {
  if (impl_->inflight == 0) return true;
  if (timeout <= 0 * kj::MILLISECONDS) return false;
  auto step = 10 * kj::MILLISECONDS;
  return impl_->io.provider->getTimer().afterDelay(step).then(
      [this, timeout, step]() { return drain(timeout - step); });
}

}  // namespace pxd::daemon
