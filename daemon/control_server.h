// daemon/control_server.h: the control API served on a unix socket.
//
// Threads: the ControlServer lives on pxd's main thread, which runs the kj event loop
// (sockets, RPC, signals, timers). Node operations may block (they commit and sync
// metadata), so each call is handed to the ControlWorker thread through kj::Executor and
// its result comes back to the main loop as a promise. That executor is the bridge
// between the two threads; nothing else crosses.
//
// Every connection's peer credentials are checked when it is accepted; a peer that is
// not root, pxd's own user, or in group `pxd` gets permissionDenied on every call.
#pragma once

#include <kj/async-io.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "common/status.h"
#include "daemon/node.h"

namespace pxd::daemon {

class ControlWorker {
 public:
  ControlWorker();
  ~ControlWorker();
  const kj::Executor& executor() const { return *executor_; }

 private:
  std::thread thread_;
  kj::Own<const kj::Executor> executor_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_;
};

class ControlServer {
 public:
  ControlServer(Node& node, ControlWorker& worker, kj::AsyncIoContext& io);
  ~ControlServer();

  // Prepares the socket's directory, refuses a socket another process serves, listens,
  // and sets the socket's owner and mode.
  Status listen(const std::string& path);
  // Connects to the socket and completes a hello(): the socket answers.
  kj::Promise<void> self_check();
  // Stops accepting connections; calls arriving from now on get `unavailable`.
  void stop_accepting();
  // Resolves once no call is running, or after `timeout`.
  kj::Promise<bool> drain(kj::Duration timeout);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxd::daemon
