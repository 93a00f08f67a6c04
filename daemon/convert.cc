#include "daemon/convert.h"

namespace pxd::daemon {

proto::Status::Code to_proto_code(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return proto::Status::Code::OK;
    case StatusCode::kInvalidArgument:
      return proto::Status::Code::INVALID_ARGUMENT;
    case StatusCode::kNotFound:
      return proto::Status::Code::NOT_FOUND;
    case StatusCode::kAlreadyExists:
      return proto::Status::Code::ALREADY_EXISTS;
    case StatusCode::kFailedPrecondition:
      return proto::Status::Code::FAILED_PRECONDITION;
    case StatusCode::kNoSpace:
      return proto::Status::Code::NO_SPACE;
    case StatusCode::kIoError:
      return proto::Status::Code::IO_ERROR;
    case StatusCode::kCorruption:
      return proto::Status::Code::CORRUPTION;
    case StatusCode::kUnsupported:
      return proto::Status::Code::UNSUPPORTED;
    case StatusCode::kBusy:
      return proto::Status::Code::BUSY;
    case StatusCode::kInternal:
      return proto::Status::Code::INTERNAL;
  }
  return proto::Status::Code::INTERNAL;
}

void set_status(proto::Status::Builder out, const Status& status) {
  out.setCode(to_proto_code(status.code()));
  out.setMessage(status.message());
}

Result<Labels> labels_from(capnp::List<proto::Label>::Reader list) {
  if (list.size() > kMaxLabels)
    return invalid_argument(std::to_string(list.size()) + " labels given; at most " +
                            std::to_string(kMaxLabels) + " are allowed");
  Labels out;
  for (auto label : list) {
    std::string key = label.getKey();
    std::string value = label.getValue();
    if (key.empty()) return invalid_argument("a label has an empty key");
    if (key.size() > kMaxLabelBytes || value.size() > kMaxLabelBytes)
      return invalid_argument("label '" + key.substr(0, 32) + "' is longer than " +
                              std::to_string(kMaxLabelBytes) + " bytes");
    for (unsigned char c : key + value) {
      if (c < 0x20 || c == 0x7f)
        return invalid_argument("a label contains a control character");  // not echoed: escapes
    }
    if (key.find('=') != std::string::npos || key.find(',') != std::string::npos)
      return invalid_argument("label key '" + key + "' contains '=' or ','");
    if (!out.emplace(key, value).second)
      return invalid_argument("label '" + key + "' is given twice");
  }
  return out;
}

void set_labels(capnp::List<proto::Label>::Builder out, const Labels& labels) {
  unsigned i = 0;
  for (const auto& [k, v] : labels) {
    out[i].setKey(k);
    out[i].setValue(v);
    ++i;
  }
}

Result<CreateRequest> create_request_from(proto::VolumeSpec::Reader spec) {
  CreateRequest r;
  r.name = spec.getName();
  r.size_bytes = spec.getSizeBytes();
  r.block_size = spec.getBlockSize() == 0 ? 4096 : spec.getBlockSize();
  r.fs = spec.getFs().size() == 0 ? "ext4" : std::string(spec.getFs());
  PXD_TRY(r.labels, labels_from(spec.getLabels()));
  r.replicas = spec.getReplicas() == 0 ? 1 : spec.getReplicas();
  return r;
}

void set_volume(proto::Volume::Builder out, const VolumeView& v) {
  const ObjectInfo& i = v.info;
  out.setId(i.id);
  out.setName(i.name);
  out.setIsSnapshot(i.is_snapshot);
  out.setSizeBytes(i.size_bytes);
  out.setBlockSize(i.block_size);
  out.setFs(v.fs);
  init_labels([&](unsigned n) { return out.initLabels(n); }, i.labels);
  out.setParent(v.parent);
  auto snaps = out.initSnapshots(static_cast<unsigned>(i.snapshots.size()));
  for (unsigned k = 0; k < i.snapshots.size(); ++k) snaps.set(k, i.snapshots[k]);
  out.setExclusiveBytes(i.exclusive_bytes);
  out.setSharedBytes(i.shared_bytes);
  out.setDevicePath(v.device_path);
  out.setState(v.state);
  out.setCreatedUnix(i.created_unix);
  out.setReplicas(v.replicas);
  out.setPool(v.pool);
  auto mounts = out.initMounts(static_cast<unsigned>(v.mounts.size()));
  for (unsigned k = 0; k < v.mounts.size(); ++k) mounts.set(k, v.mounts[k]);
  out.setFrontend(v.frontend);
  out.setAttachError(v.attach_error);
  out.setDeviceSizeBytes(v.device_size_bytes);
}

void set_pool(proto::Pool::Builder out, const PoolUsage& u) {
  out.setName("default");
  out.setUuid(u.uuid);
  out.setChunkSize(u.chunk_size);
  out.setCapacityBytes(u.capacity_bytes);
  out.setUsedBytes(u.used_bytes);
  out.setFreeBytes(u.free_bytes);
  out.setReclaimingBytes(u.reclaiming_bytes);
  out.setMetadataBytes(u.metadata_bytes);
  auto devs = out.initDevices(static_cast<unsigned>(u.devices.size()));
  for (unsigned k = 0; k < u.devices.size(); ++k) devs.set(k, u.devices[k]);
  out.setVolumes(u.volumes);
  out.setSnapshots(u.snapshots);
}

}  // namespace pxd::daemon
