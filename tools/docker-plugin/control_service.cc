#include "tools/docker-plugin/control_service.h"

#include <capnp/rpc-twoparty.h>

#include "common/log.h"
#include "proto/control.capnp.h"
#include "tools/pxctl/args.h"

namespace pxd::docker {

using proto::Control;

struct ControlService::Connection : public kj::Refcounted {
  explicit Connection(kj::Own<kj::AsyncIoStream> s)
      : stream(kj::mv(s)), client(*stream), control(client.bootstrap().castAs<Control>()) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient client;
  Control::Client control;
  bool broken = false;
};

namespace {

Status from_proto(proto::Status::Reader s) {
  std::string message = s.getMessage().cStr();
  auto code = static_cast<uint16_t>(s.getCode());
  if (message.empty()) message = "pxd answered status code " + std::to_string(code);
  if (code <= static_cast<uint16_t>(StatusCode::kInternal))
    return Status(static_cast<StatusCode>(code), message);
  // permissionDenied, unavailable, and codes of newer servers.
  return Status(s.getCode() == proto::Status::Code::PERMISSION_DENIED
                    ? StatusCode::kFailedPrecondition
                    : StatusCode::kBusy,
                message);
}

VolumeInfo from_proto(proto::Volume::Reader v) {
  VolumeInfo out;
  out.id = v.getId();
  out.name = v.getName().cStr();
  out.is_snapshot = v.getIsSnapshot();
  out.size_bytes = v.getSizeBytes();
  out.block_size = v.getBlockSize();
  out.fs = v.getFs().cStr();
  out.labels = pxctl::labels_from(v.getLabels());
  out.parent = v.getParent().cStr();
  out.state = v.getState().cStr();
  out.device_path = v.getDevicePath().cStr();
  for (auto m : v.getMounts()) out.mounts.emplace_back(m.cStr());
  out.replicas = v.getReplicas();
  out.created_unix = v.getCreatedUnix();
  return out;
}

}  // namespace

ControlService::ControlService(kj::AsyncIoProvider& io, std::string socket_path,
                               kj::Duration call_timeout)
    : io_(io), socket_path_(std::move(socket_path)), call_timeout_(call_timeout) {}

ControlService::~ControlService() = default;

Status ControlService::unreachable(const kj::Exception& e) {
  return io_error("cannot reach pxd's control API at " + socket_path_ + ": " +
                  e.getDescription().cStr());
}

kj::Promise<kj::Own<ControlService::Connection>> ControlService::connection() {
  KJ_IF_MAYBE (c, connection_) {
    if (!(*c)->broken) return kj::addRef(**c);
  }
  return io_.getNetwork()
      .parseAddress(kj::str("unix:", socket_path_.c_str()))
      .then([](kj::Own<kj::NetworkAddress> addr) { return addr->connect().attach(kj::mv(addr)); })
      .then([this](kj::Own<kj::AsyncIoStream> stream) {
        auto conn = kj::refcounted<Connection>(kj::mv(stream));
        auto hello = conn->control.helloRequest();
        hello.setClientApiVersion(proto::API_VERSION);
        hello.setClientVersion("pxd docker plugin");
        return hello.send().then([this, conn = kj::mv(conn)](auto response) mutable {
          if (response.getStatus().getCode() != proto::Status::Code::OK)
            KJ_FAIL_REQUIRE("hello refused", response.getStatus().getMessage());
          connection_ = kj::addRef(*conn);
          return kj::mv(conn);
        });
      });
}

template <class T, class Request, class Read>
kj::Promise<Result<T>> ControlService::call(Request&& make_request, Read&& read) {
  auto work = connection().then([make_request = kj::fwd<Request>(make_request),
                                 read = kj::fwd<Read>(read)](kj::Own<Connection> conn) mutable {
    auto request = make_request(conn->control);
    Connection* raw = conn.get();
    return request.send()
        .then([read = kj::mv(read)](auto response) mutable -> Result<T> {
          if (response.getStatus().getCode() != proto::Status::Code::OK)
            return from_proto(response.getStatus());
          return read(response);
        })
        .catch_([raw](kj::Exception&& e) -> Result<T> {
          // The next call connects afresh.
          raw->broken = true;
          kj::throwFatalException(kj::mv(e));
        })
        .attach(kj::mv(conn));
  });
  auto deadline = io_.getTimer().afterDelay(call_timeout_).then([]() -> Result<T> {
    return io_error("pxd's control API did not answer in time");
  });
  return work.exclusiveJoin(kj::mv(deadline)).catch_([this](kj::Exception&& e) -> Result<T> {
    return unreachable(e);
  });
}

kj::Promise<Result<VolumeInfo>> ControlService::inspect(std::string name) {
  return call<VolumeInfo>(
      [name](Control::Client& c) {
        auto r = c.inspectVolumeRequest();
        r.setName(name);
        return r;
      },
      [](auto& response) -> Result<VolumeInfo> { return from_proto(response.getVolume()); });
}

kj::Promise<Result<std::vector<VolumeInfo>>> ControlService::list() {
  return call<std::vector<VolumeInfo>>(
      [](Control::Client& c) {
        auto r = c.listVolumesRequest();
        r.setIncludeSnapshots(false);
        return r;
      },
      [](auto& response) -> Result<std::vector<VolumeInfo>> {
        std::vector<VolumeInfo> out;
        for (auto v : response.getVolumes()) out.push_back(from_proto(v));
        return out;
      });
}

kj::Promise<Result<VolumeInfo>> ControlService::create(VolumeSpec spec) {
  return call<VolumeInfo>(
      [spec = std::move(spec)](Control::Client& c) {
        auto r = c.createVolumeRequest();
        auto s = r.initSpec();
        s.setName(spec.name);
        s.setSizeBytes(spec.size_bytes);
        s.setBlockSize(spec.block_size);
        s.setFs(spec.fs);
        pxctl::fill_labels(s.initLabels(static_cast<unsigned>(spec.labels.size())), spec.labels);
        s.setReplicas(spec.replicas);
        return r;
      },
      [](auto& response) -> Result<VolumeInfo> { return from_proto(response.getVolume()); });
}

kj::Promise<Result<VolumeInfo>> ControlService::clone(std::string source, std::string name,
                                                      Labels labels) {
  return call<VolumeInfo>(
      [source, name, labels](Control::Client& c) {
        auto r = c.cloneRequest();
        r.setSource(source);
        r.setName(name);
        pxctl::fill_labels(r.initLabels(static_cast<unsigned>(labels.size())), labels);
        return r;
      },
      [](auto& response) -> Result<VolumeInfo> { return from_proto(response.getVolume()); });
}

kj::Promise<Result<VolumeInfo>> ControlService::resize(std::string name, uint64_t size_bytes) {
  return call<VolumeInfo>(
      [name, size_bytes](Control::Client& c) {
        auto r = c.updateVolumeRequest();
        r.setName(name);
        r.setSizeBytes(size_bytes);
        return r;
      },
      [](auto& response) -> Result<VolumeInfo> { return from_proto(response.getVolume()); });
}

kj::Promise<Status> ControlService::remove(std::string name) {
  return call<bool>(
             [name](Control::Client& c) {
               auto r = c.deleteVolumeRequest();
               r.setName(name);
               r.setForce(false);
               return r;
             },
             [](auto&) -> Result<bool> { return true; })
      .then([](Result<bool> r) { return r.has_error() ? r.error() : Status::ok(); });
}

kj::Promise<Result<std::pair<VolumeInfo, bool>>> ControlService::mount(std::string name,
                                                                       std::string path) {
  return call<std::pair<VolumeInfo, bool>>(
      [name, path](Control::Client& c) {
        auto r = c.mountRequest();
        r.setName(name);
        r.setPath(path);
        return r;
      },
      [](auto& response) -> Result<std::pair<VolumeInfo, bool>> {
        return std::make_pair(from_proto(response.getVolume()), response.getMadeFs());
      });
}

kj::Promise<Result<VolumeInfo>> ControlService::unmount(std::string name, std::string path) {
  return call<VolumeInfo>(
      [name, path](Control::Client& c) {
        auto r = c.unmountRequest();
        r.setName(name);
        r.setPath(path);
        return r;
      },
      [](auto& response) -> Result<VolumeInfo> { return from_proto(response.getVolume()); });
}

}  // namespace pxd::docker
