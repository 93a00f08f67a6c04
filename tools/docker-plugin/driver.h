// tools/docker-plugin/driver.h: the volume plugin's endpoints, over a VolumeService.
//
// Driver answers one parsed endpoint call at a time with an HTTP status and a JSON body
// (protocol.h). Volumes mount for Docker at <mount root>/<name>; the plugin holds one pxd
// mount per volume while any Docker caller does (MountIds counts them by request ID), so
// the first Mount attaches and mounts, and the last Unmount unmounts and detaches.
// Calls for one volume run one after another; calls for different volumes interleave.
//
// Every call is answered, and once started runs to its end even if Docker hangs up, so
// a mount is never made without being counted (nor counted without being made).
//
// Thread safety: the plugin's event-loop thread only.
#pragma once

#include <kj/async.h>
#include <kj/function.h>

#include <deque>
#include <map>
#include <string>

#include "tools/docker-plugin/mount_ids.h"
#include "tools/docker-plugin/protocol.h"
#include "tools/docker-plugin/volume_service.h"

namespace pxd::docker {

struct Reply {
  unsigned status = 200;  // 200, or 400 (bad body), 404 (no such endpoint), 500 (failed)
  std::string body;
};

class Driver {
 public:
  Driver(VolumeService& service, MountIds& ids, std::string mount_root);
  ~Driver();

  kj::Promise<Reply> handle(Endpoint endpoint, std::string body);

  // At start, before serving: forgets the IDs of volumes that are no longer mounted for
  // Docker (a crash between pxd's unmount and the save, or a Mount that never answered)
  // and unmounts volumes mounted for Docker that no ID holds (the reverse). Problems are
  // logged; serving goes on.
  kj::Promise<void> reconcile();

  std::string mount_path(const std::string& name) const { return mount_root_ + "/" + name; }
  size_t in_flight() const { return in_flight_; }

 private:
  struct Lane {
    bool busy = false;
    std::deque<kj::Own<kj::PromiseFulfiller<void>>> waiting;
  };

  kj::Promise<Reply> dispatch(Endpoint endpoint, Request request);
  // Runs `work` once no earlier call for `volume` is running.
  kj::Promise<Reply> serialized(const std::string& volume, kj::Function<kj::Promise<Reply>()> work);
  void release(const std::string& volume);

  kj::Promise<Reply> create(Request request);
  kj::Promise<Reply> create_plain(CreateOptions options);
  kj::Promise<Reply> create_clone(CreateOptions options);
  kj::Promise<Reply> remove(Request request);
  kj::Promise<Reply> mount(Request request);
  kj::Promise<Reply> unmount(Request request);
  kj::Promise<Reply> path(Request request);
  kj::Promise<Reply> get(Request request);
  kj::Promise<Reply> list();
  kj::Promise<void> reconcile_unmount(std::vector<std::string> names, size_t next);

  VolumeService& service_;
  MountIds& ids_;
  const std::string mount_root_;
  std::map<std::string, Lane> lanes_;
  size_t in_flight_ = 0;
  kj::Own<kj::TaskSet::ErrorHandler> errors_;
  kj::TaskSet tasks_;  // keeps started calls running when Docker hangs up
};

}  // namespace pxd::docker
