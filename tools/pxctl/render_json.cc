#include "tools/pxctl/render.h"

namespace pxd::pxctl {

namespace {

// Text fields are null when empty where the API uses "" for "none".
Json text_or_null(capnp::Text::Reader text) {
  if (text.size() == 0) return nullptr;
  return std::string(text.cStr());
}

Json text_list(capnp::List<capnp::Text>::Reader list) {
  Json out = Json::array();
  for (auto item : list) out.push_back(std::string(item.cStr()));
  return out;
}

}  // namespace

Json labels_json(capnp::List<proto::Label>::Reader labels) {
  Json out = Json::object();
  for (auto label : labels) out[std::string(label.getKey().cStr())] = label.getValue().cStr();
  return out;
}

Json volume_json(proto::Volume::Reader v) {
  Json out = Json::object();
  out["id"] = v.getId();
  out["name"] = v.getName().cStr();
  out["is_snapshot"] = v.getIsSnapshot();
  out["size"] = v.getSizeBytes();
  out["block_size"] = v.getBlockSize();
  out["fs"] = v.getFs().cStr();
  out["labels"] = labels_json(v.getLabels());
  out["parent"] = text_or_null(v.getParent());
  out["snapshots"] = text_list(v.getSnapshots());
  out["exclusive_bytes"] = v.getExclusiveBytes();
  out["shared_bytes"] = v.getSharedBytes();
  out["device_path"] = text_or_null(v.getDevicePath());
  out["state"] = v.getState().cStr();
  out["mounts"] = text_list(v.getMounts());
  out["frontend"] = text_or_null(v.getFrontend());
  out["attach_error"] = text_or_null(v.getAttachError());
  out["device_size"] = v.getDeviceSizeBytes() ? Json(v.getDeviceSizeBytes()) : Json(nullptr);
  out["replicas"] = v.getReplicas();
  out["pool"] = v.getPool().cStr();
  out["created"] = v.getCreatedUnix();
  return out;
}

Json pool_json(proto::Pool::Reader p) {
  Json out = Json::object();
  out["name"] = p.getName().cStr();
  out["uuid"] = p.getUuid().cStr();
  out["chunk_size"] = p.getChunkSize();
  out["capacity_bytes"] = p.getCapacityBytes();
  out["used_bytes"] = p.getUsedBytes();
  out["free_bytes"] = p.getFreeBytes();
  out["reclaiming_bytes"] = p.getReclaimingBytes();
  out["metadata_bytes"] = p.getMetadataBytes();
  out["devices"] = text_list(p.getDevices());
  out["volumes"] = p.getVolumes();
  out["snapshots"] = p.getSnapshots();
  return out;
}

Json node_json(proto::NodeStatus::Reader n) {
  Json out = Json::object();
  out["node_name"] = n.getNodeName().cStr();
  out["version"] = n.getVersion().cStr();
  out["api_version"] = n.getApiVersion();
  out["labels"] = labels_json(n.getLabels());
  out["uptime_seconds"] = n.getUptimeSeconds();
  out["data_dir"] = n.getDataDir().cStr();
  out["cluster"] = n.getCluster().cStr();
  out["frontend"] = n.getFrontend().cStr();
  out["nbd_socket"] = text_or_null(n.getNbdSocket());
  out["docker_plugin_socket"] = text_or_null(n.getDockerPluginSocket());
  Json pools = Json::array();
  for (auto pool : n.getPools()) pools.push_back(pool_json(pool));
  out["pools"] = std::move(pools);
  out["volumes"] = n.getVolumes();
  out["snapshots"] = n.getSnapshots();
  return out;
}

std::string json_text(const Json& json) {
  return json.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace pxd::pxctl
