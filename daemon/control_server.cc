#include "daemon/control_server.h"

#include <capnp/rpc-twoparty.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>

#include "common/log.h"
#include "daemon/control_impl.h"
#include "daemon/convert.h"
#include "daemon/version.h"

namespace pxd::daemon {

std::optional<gid_t> pxd_group() {
  struct group grp;
  struct group* found = nullptr;
  char buf[4096];
  if (getgrnam_r("pxd", &grp, buf, sizeof(buf), &found) == 0 && found) return found->gr_gid;
  return std::nullopt;
}

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
  *who = "pid " + std::to_string(cred.pid) + " uid " + std::to_string(cred.uid);
  if (cred.uid == 0 || cred.uid == ::geteuid()) return true;
  std::optional<gid_t> group = pxd_group();
  if (!group) return false;
  if (cred.gid == *group) return true;
  // Supplementary groups of the connecting process.
  std::ifstream status("/proc/" + std::to_string(cred.pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream groups(line.substr(7));
    unsigned long g;
    while (groups >> g) {
      if (g == *group) return true;
    }
  }
  return false;
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
  if (path.empty() || path[0] != '/')
    return invalid_argument("control socket '" + path + "' must be an absolute path");
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return invalid_argument("control socket path '" + path + "' is longer than " +
                            std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  std::optional<gid_t> group = pxd_group();
  std::string dir = path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    // A directory pxd makes gets the socket's access rule.
    if (::mkdir(dir.c_str(), group ? 0750 : 0700) != 0 && errno != EEXIST)
      return errno_status(errno, "create " + dir);
    if (group && ::chown(dir.c_str(), 0, *group) != 0 && ::geteuid() == 0)
      return errno_status(errno, "chown " + dir);
  }
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return failed_precondition(path + " exists and is not a socket");
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    if (live) return busy("another process is serving the control socket " + path);
    ::unlink(path.c_str());  // left by a pxd that died
  }
  try {
    auto addr = impl_->io.provider->getNetwork()
                    .parseAddress(kj::str("unix:", path.c_str()))
                    .wait(impl_->io.waitScope);
    impl_->listener = addr->listen();
  } catch (const kj::Exception& e) {
    return io_error("listen on " + path + ": " + e.getDescription().cStr());
  }
  impl_->path = path;
  if (::chmod(path.c_str(), group ? 0660 : 0600) != 0) return errno_status(errno, "chmod " + path);
  if (group && ::chown(path.c_str(), 0, *group) != 0 && ::geteuid() == 0)
    return errno_status(errno, "chown " + path);
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
