// tools/docker-plugin/control_service.h: the VolumeService over pxd's control API.
//
// One Cap'n Proto connection to the control socket, made (with hello()) on first use and
// again after pxd closed it; every call is bounded by a timeout. Failures become
// Statuses: pxd's own status codes and messages, or "cannot reach pxd's control API at
// PATH: ..." when the connection fails.
//
// Thread safety: the thread whose kj event loop `io` belongs to.
#pragma once

#include <kj/async-io.h>

#include <string>

#include "tools/docker-plugin/volume_service.h"

namespace pxd::docker {

class ControlService final : public VolumeService {
 public:
  ControlService(kj::AsyncIoProvider& io, std::string socket_path, kj::Duration call_timeout);
  ~ControlService() override;

  kj::Promise<Result<VolumeInfo>> inspect(std::string name) override;
  kj::Promise<Result<std::vector<VolumeInfo>>> list() override;
  kj::Promise<Result<VolumeInfo>> create(VolumeSpec spec) override;
  kj::Promise<Result<VolumeInfo>> clone(std::string source, std::string name,
                                        Labels labels) override;
  kj::Promise<Result<VolumeInfo>> resize(std::string name, uint64_t size_bytes) override;
  kj::Promise<Status> remove(std::string name) override;
  kj::Promise<Result<std::pair<VolumeInfo, bool>>> mount(std::string name,
                                                         std::string path) override;
  kj::Promise<Result<VolumeInfo>> unmount(std::string name, std::string path) override;

  struct Connection;

 private:
  // The connected Control capability (connecting first if needed), with a reference that
  // keeps its connection alive for the call.
  kj::Promise<kj::Own<Connection>> connection();
  // Sends what `build` fills in and hands the response to `read` (which returns Result<T>).
  template <class T, class Request, class Read>
  kj::Promise<Result<T>> call(Request&& request, Read&& read);
  Status unreachable(const kj::Exception& e);

  kj::AsyncIoProvider& io_;
  const std::string socket_path_;
  const kj::Duration call_timeout_;
  kj::Maybe<kj::Own<Connection>> connection_;
};

}  // namespace pxd::docker
