// tools/docker-plugin/plugin.h: pxd's Docker volume plugin, served on its own thread.
//
// pxd runs the plugin (doc/docker.md says why in-process rather than a companion
// process): a thread with its own kj event loop serves Docker's plugin protocol (HTTP/1.1
// and JSON, kj-http) on a unix socket, and talks to pxd only as a client of the control
// API (through the VolumeService it is given). It never links the engine.
//
// Lifecycle, from pxd's main thread, whose kj event loop must keep running while it waits
// (the plugin's calls are served by that loop's control server):
//   start(): loads the mount IDs, reconciles them with pxd, listens (socket 0600, root
//            only; connections from other users are closed), then resolves;
//   stop():  stops accepting, removes the socket, lets calls in flight finish (bounded),
//            and ends the thread.
// The two threads meet only through kj's cross-thread promises and the plugin thread's
// kj::Executor.
#pragma once

#include <kj/async-io.h>

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "tools/docker-plugin/volume_service.h"

namespace pxd::docker {

struct PluginOptions {
  std::string socket_path;  // where Docker looks: /run/docker/plugins/pxd.sock
  std::string mount_root;   // volumes mount at <mount_root>/<name>
  std::string ids_path;     // the mount-ID file (mount_ids.h)
  // Makes the VolumeService, on the plugin's thread.
  std::function<kj::Own<VolumeService>(kj::AsyncIoProvider&)> make_service;
};

// The VolumeService factory for pxd: its control API at `control_socket`.
std::function<kj::Own<VolumeService>(kj::AsyncIoProvider&)> control_api_service(
    std::string control_socket);

class DockerPlugin {
 public:
  explicit DockerPlugin(PluginOptions options);
  // Stops (without waiting for calls in flight) if still running, and joins the thread.
  ~DockerPlugin();
  DockerPlugin(const DockerPlugin&) = delete;
  DockerPlugin& operator=(const DockerPlugin&) = delete;

  // Resolves on the caller's loop: ok once the socket accepts, or why it cannot (the
  // thread has then ended). Call once.
  kj::Promise<Status> start();
  // Resolves on the caller's loop once the thread's work is done. Calls in flight get at
  // most `timeout` to finish.
  kj::Promise<void> stop(kj::Duration timeout);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxd::docker
