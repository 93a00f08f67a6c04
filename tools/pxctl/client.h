// tools/pxctl/client.h: pxctl's connection to pxd's control API (proto/control.capnp).
//
// A Client owns a kj event loop on the thread that made it, one unix-socket connection and
// the Control capability; use it from that thread only, and make one per thread at most
// (kj allows one event loop per thread). connect() says hello() and refuses a server whose
// API is older than this client needs. Every wait is bounded by the timeout given to
// connect(). Every failure is a CommandError carrying pxctl's exit code: unreachable
// (no socket, refused, disconnected, timed out) is kExitUnreachable with the message
// "cannot reach pxd at PATH: REASON".
#pragma once

#include <capnp/capability.h>
#include <kj/async-io.h>
#include <kj/exception.h>
#include <kj/timer.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "proto/control.capnp.h"
#include "tools/pxctl/errors.h"

namespace pxd::pxctl {

inline constexpr const char* kDefaultSocket = "/run/pxd/pxd.sock";

// This pxctl's version (the project's) and the oldest control API it can speak.
extern const char* const kClientVersion;
inline constexpr uint32_t kRequiredApiVersion = 1;

class Client {
 public:
  static std::unique_ptr<Client> connect(const std::string& socket_path,
                                         std::chrono::milliseconds timeout);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  proto::Control::Client& control();
  const std::string& server_version() const { return server_version_; }
  uint32_t server_api_version() const { return server_api_version_; }

  // Sends `request` and waits for the answer. Throws CommandError when pxd cannot be
  // reached or answers with a status other than ok.
  template <class Params, class Results>
  capnp::Response<Results> call(capnp::Request<Params, Results>& request);

 private:
  struct Impl;
  Client(std::string socket_path, std::chrono::milliseconds timeout);

  // Waits for `promise` at most timeout_; translates kj exceptions into CommandErrors.
  template <class T>
  T wait(kj::Promise<T>&& promise);
  kj::Timer& timer();
  kj::WaitScope& wait_scope();
  CommandError translate(const kj::Exception& e, bool timed_out) const;
  void hello();

  std::string socket_path_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;
  std::string server_version_;
  uint32_t server_api_version_ = 0;
};

template <class T>
T Client::wait(kj::Promise<T>&& promise) {
  bool timed_out = false;
  auto deadline = timer().afterDelay(timeout_.count() * kj::MILLISECONDS).then([&timed_out]() -> T {
    timed_out = true;
    kj::throwFatalException(kj::Exception(kj::Exception::Type::OVERLOADED, __FILE__, __LINE__,
                                          kj::heapString("timed out")));
  });
  try {
    return promise.exclusiveJoin(kj::mv(deadline)).wait(wait_scope());
  } catch (const kj::Exception& e) {
    throw translate(e, timed_out);
  }
}

template <class Params, class Results>
capnp::Response<Results> Client::call(capnp::Request<Params, Results>& request) {
  capnp::Response<Results> response = wait(kj::Promise<capnp::Response<Results>>(request.send()));
  if (!response.hasStatus()) throw CommandError(kExitFailed, "pxd answered without a status");
  if (response.getStatus().getCode() != proto::Status::Code::OK)
    throw status_error(response.getStatus());
  return response;
}

}  // namespace pxd::pxctl
