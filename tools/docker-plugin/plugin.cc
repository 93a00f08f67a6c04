#include "tools/docker-plugin/plugin.h"

#include <kj/compat/http.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <optional>
#include <thread>

#include "common/log.h"
#include "common/peer_credentials.h"
#include "common/unix_socket.h"
#include "tools/docker-plugin/control_service.h"
#include "tools/docker-plugin/driver.h"
#include "tools/docker-plugin/mount_ids.h"

namespace pxd::docker {
namespace {

// Control calls are bounded; a first mount may make a filesystem, hence the margin.
constexpr auto kControlCallTimeout = 5 * 60 * kj::SECONDS;

const char* status_text(unsigned status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    default:
      return "Internal Server Error";
  }
}

// Creates the missing directories above `path`, root only: /run/docker may not exist yet
// when pxd starts before Docker.
Status make_parent_dirs(const std::string& path) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return errno_status(errno, "create " + dir);
  }
  return Status::ok();
}

// Reads a whole request body, or stops past `limit` bytes (then nullopt).
kj::Promise<std::optional<std::string>> read_bounded(kj::AsyncInputStream& in, size_t limit,
                                                     kj::Own<std::string> sofar) {
  size_t have = sofar->size();
  sofar->resize(have + 4096);
  return in.tryRead(sofar->data() + have, 1, 4096)
      .then([&in, limit, have,
             sofar = kj::mv(sofar)](size_t n) mutable -> kj::Promise<std::optional<std::string>> {
        sofar->resize(have + n);
        if (sofar->size() > limit) return std::optional<std::string>();
        if (n == 0) return std::optional<std::string>(kj::mv(*sofar));
        return read_bounded(in, limit, kj::mv(sofar));
      });
}

class PluginHttp final : public kj::HttpService, public kj::HttpServerErrorHandler {
 public:
  PluginHttp(Driver& driver, const kj::HttpHeaderTable& table) : driver_(driver), table_(table) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders&,
                            kj::AsyncInputStream& body, Response& response) override {
    // `url` dies with the first read of the body.
    std::string path(url.cStr());
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    auto endpoint = endpoint_from_path(path);
    if (method != kj::HttpMethod::POST)
      return send(response, {405, error_body("Docker's plugin API takes POST requests only")});
    if (!endpoint) {
      return send(response, {404, error_body("unknown endpoint " + path + "; this plugin serves " +
                                             endpoint_list())});
    }
    KJ_IF_MAYBE (length, body.tryGetLength()) {
      if (*length > kMaxBodyBytes) return send(response, too_large());
    }
    return read_bounded(body, kMaxBodyBytes, kj::heap<std::string>())
        .then([this, &response, e = *endpoint](std::optional<std::string> text) {
          if (!text) return send(response, too_large());
          return driver_.handle(e, kj::mv(*text)).then([this, &response](Reply reply) {
            return send(response, reply);
          });
        });
  }

  // Malformed HTTP: the protocol's error reply rather than kj's text page.
  kj::Promise<void> handleClientProtocolError(kj::HttpHeaders::ProtocolError error,
                                              Response& response) override {
    return send(response,
                {error.statusCode,
                 error_body(std::string("malformed HTTP request: ") + error.description.cStr())},
                error.statusMessage);
  }

  kj::Promise<void> handleApplicationError(kj::Exception exception,
                                           kj::Maybe<Response&> response) override {
    if (exception.getType() == kj::Exception::Type::DISCONNECTED) return kj::READY_NOW;
    PXD_LOG(kWarn) << "docker plugin: " << exception.getDescription().cStr();
    KJ_IF_MAYBE (r, response) {
      return send(*r, {500, error_body(std::string("pxd's Docker plugin failed: ") +
                                       exception.getDescription().cStr())});
    }
    return kj::READY_NOW;
  }

 private:
  static Reply too_large() {
    return {413,
            error_body("request body is larger than " + std::to_string(kMaxBodyBytes) + " bytes")};
  }

  kj::Promise<void> send(Response& response, const Reply& reply, kj::StringPtr text = nullptr) {
    kj::HttpHeaders headers(table_);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, kContentType);
    auto body = kj::heap<std::string>(reply.body);
    if (text == nullptr) text = status_text(reply.status);
    auto stream = response.send(reply.status, text, headers, body->size());
    auto written = stream->write(body->data(), body->size());
    return written.attach(kj::mv(stream), kj::mv(body));
  }

  Driver& driver_;
  const kj::HttpHeaderTable& table_;
};

struct LogConnectionErrors : kj::TaskSet::ErrorHandler {
  void taskFailed(kj::Exception&& e) override {
    PXD_LOG(kDebug) << "docker plugin connection ended: " << e.getDescription().cStr();
  }
};

}  // namespace

// What serves on the plugin's thread; made and destroyed there.
struct Serving {
  Serving(kj::AsyncIoContext& io, Driver& driver)
      : io(io), driver(driver), http(driver, table), tasks(errors) {
    kj::HttpServerSettings settings;
    settings.errorHandler = http;
    server = kj::heap<kj::HttpServer>(io.provider->getTimer(), table, http, settings);
  }

  Status listen(const std::string& socket_path) {
    PXD_RETURN_IF_ERROR(make_parent_dirs(socket_path));
    PXD_RETURN_IF_ERROR(prepare_socket_path(socket_path, "Docker plugin socket"));
    try {
      auto addr = io.provider->getNetwork()
                      .parseAddress(kj::str("unix:", socket_path.c_str()))
                      .wait(io.waitScope);
      listener = addr->listen();
    } catch (const kj::Exception& e) {
      return io_error("listen on " + socket_path + ": " + e.getDescription().cStr());
    }
    path = socket_path;
    // Root only: the plugin mounts and deletes volumes for whoever asks.
    if (::chmod(path.c_str(), 0600) != 0) return errno_status(errno, "chmod " + path);
    accepting = accept_loop().eagerlyEvaluate([](kj::Exception&& e) {
      PXD_LOG(kError) << "docker plugin socket stopped accepting: " << e.getDescription().cStr();
    });
    return Status::ok();
  }

  kj::Promise<void> accept_loop() {
    return listener->accept().then([this](kj::Own<kj::AsyncIoStream>&& stream) {
      struct ucred cred {};
      uint len = sizeof(cred);
      bool known = true;
      try {
        stream->getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &len);
      } catch (const kj::Exception&) {
        known = false;
      }
      if (known && (cred.uid == 0 || cred.uid == ::geteuid())) {
        tasks.add(server->listenHttp(kj::mv(stream)));
      } else {
        PXD_LOG(kWarn) << "docker plugin: refusing a connection from "
                       << (known ? describe_peer(cred) : "an unknown peer")
                       << ": the plugin socket is for root";
      }
      return accept_loop();
    });
  }

  // Stops accepting, then waits (bounded) for requests and the calls they started.
  kj::Promise<void> shutdown(kj::Duration timeout) {
    accepting = nullptr;
    listener = nullptr;
    if (!path.empty()) ::unlink(path.c_str());
    path.clear();
    auto& timer = io.provider->getTimer();
    auto deadline = timer.now() + timeout;
    return server->drain()
        .exclusiveJoin(timer.atTime(deadline))
        .then([this, &timer, deadline] { return wait_idle(timer, deadline); })
        .then([this] { exit->fulfill(); });
  }

  kj::Promise<void> wait_idle(kj::Timer& timer, kj::TimePoint deadline) {
    if (driver.in_flight() == 0) return kj::READY_NOW;
    if (timer.now() >= deadline) {
      PXD_LOG(kWarn) << "docker plugin: stopping with " << driver.in_flight()
                     << " call(s) still running";
      return kj::READY_NOW;
    }
    return timer.afterDelay(10 * kj::MILLISECONDS).then([this, &timer, deadline] {
      return wait_idle(timer, deadline);
    });
  }

  ~Serving() {
    if (!path.empty()) ::unlink(path.c_str());
  }

  kj::AsyncIoContext& io;
  Driver& driver;
  kj::HttpHeaderTable table;
  PluginHttp http;
  kj::Own<kj::HttpServer> server;
  LogConnectionErrors errors;
  kj::TaskSet tasks;
  kj::Own<kj::ConnectionReceiver> listener;
  kj::Promise<void> accepting = nullptr;
  std::string path;
  kj::Own<kj::PromiseFulfiller<void>> exit;
};

struct DockerPlugin::Impl {
  explicit Impl(PluginOptions o) : options(std::move(o)) {}

  // The plugin thread's body.
  void run() {
    try {
      kj::AsyncIoContext io = kj::setupAsyncIo();
      {
        std::lock_guard<std::mutex> lock(mu);
        executor = kj::getCurrentThreadExecutor().addRef();
      }
      kj::Own<VolumeService> service = options.make_service(*io.provider);
      auto ids = MountIds::load(options.ids_path, current_boot_id());
      if (ids.has_error()) return started_with(ids.error());
      if (ids.value().dropped_old_boot())
        PXD_LOG(kInfo) << "docker plugin: forgot the mounts of containers of an earlier boot";
      if (::mkdir(options.mount_root.c_str(), 0700) != 0 && errno != EEXIST)
        return started_with(errno_status(errno, "create " + options.mount_root));
      Driver driver(*service, ids.value(), options.mount_root);
      driver.reconcile().wait(io.waitScope);
      Serving here(io, driver);
      Status listening = here.listen(options.socket_path);
      if (!listening.is_ok()) return started_with(listening);
      auto paf = kj::newPromiseAndFulfiller<void>();
      here.exit = kj::mv(paf.fulfiller);
      serving = &here;
      PXD_LOG(kInfo) << "docker plugin: serving on " << options.socket_path
                     << ", volumes mount under " << options.mount_root;
      started_with(Status::ok());
      paf.promise.wait(io.waitScope);
      serving = nullptr;
    } catch (const kj::Exception& e) {
      serving = nullptr;
      if (started->isWaiting())
        started_with(internal_error(std::string("docker plugin: ") + e.getDescription().cStr()));
      else
        PXD_LOG(kError) << "docker plugin stopped: " << e.getDescription().cStr();
    }
  }

  // Hands start()'s result to the thread that called it.
  void started_with(const Status& status) {
    start_status = status;
    started->fulfill();
  }

  kj::Own<const kj::Executor> the_executor() {
    std::lock_guard<std::mutex> lock(mu);
    return executor ? executor->addRef() : kj::Own<const kj::Executor>();
  }

  PluginOptions options;
  std::thread thread;
  std::mutex mu;
  // start()'s answer: written by the thread before it fulfills `started`.
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> started;
  Status start_status;
  kj::Own<const kj::Executor> executor;  // GUARDED_BY(mu)
  Serving* serving = nullptr;            // used on the plugin thread only
};

DockerPlugin::DockerPlugin(PluginOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

DockerPlugin::~DockerPlugin() {
  if (!impl_->thread.joinable()) return;
  if (auto executor = impl_->the_executor()) {
    try {
      executor->executeSync([impl = impl_.get()] {
        if (impl->serving && impl->serving->exit->isWaiting()) impl->serving->exit->fulfill();
      });
    } catch (const kj::Exception&) {
      // The thread's loop has ended already.
    }
  }
  impl_->thread.join();
}

kj::Promise<Status> DockerPlugin::start() {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  impl_->started = kj::mv(paf.fulfiller);
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
  return paf.promise.then(
      [impl = impl_.get()] { return impl->start_status; },
      [](kj::Exception&& e) {
        return internal_error(std::string("docker plugin: ") + e.getDescription().cStr());
      });
}

kj::Promise<void> DockerPlugin::stop(kj::Duration timeout) {
  auto executor = impl_->the_executor();
  kj::Promise<void> done = kj::READY_NOW;
  if (executor) {
    try {
      done = executor
                 ->executeAsync([impl = impl_.get(), timeout]() -> kj::Promise<void> {
                   if (!impl->serving) return kj::READY_NOW;
                   return impl->serving->shutdown(timeout);
                 })
                 .catch_([](kj::Exception&&) {});
    } catch (const kj::Exception&) {
      // The thread's loop has ended already (start failed).
    }
  }
  return done.then([impl = impl_.get()] {
    if (impl->thread.joinable()) impl->thread.join();
  });
}

std::function<kj::Own<VolumeService>(kj::AsyncIoProvider&)> control_api_service(
    std::string control_socket) {
  return [control_socket](kj::AsyncIoProvider& io) -> kj::Own<VolumeService> {
    return kj::heap<ControlService>(io, control_socket, kControlCallTimeout);
  };
}

}  // namespace pxd::docker
