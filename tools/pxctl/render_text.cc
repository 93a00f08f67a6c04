#include "common/units.h"
#include "tools/pxctl/args.h"
#include "tools/pxctl/output.h"
#include "tools/pxctl/render.h"

namespace pxd::pxctl {

namespace {

using Align = Table::Align;

std::string or_dash(std::string text) {
  return text.empty() ? "-" : text;
}

std::string or_dash(capnp::Text::Reader text) {
  return or_dash(std::string(text.cStr()));
}

std::string joined(capnp::List<capnp::Text>::Reader list, const char* separator) {
  std::string out;
  for (auto item : list) {
    if (!out.empty()) out += separator;
    out += item.cStr();
  }
  return out;
}

}  // namespace

std::string volume_table(const std::vector<proto::Volume::Reader>& volumes) {
  Table table({{"ID", Align::kRight},
               {"NAME"},
               {"SIZE", Align::kRight},
               {"USED", Align::kRight},
               {"FS"},
               {"REPL", Align::kRight},
               {"STATE"},
               {"DEVICE"},
               {"LABELS"}});
  for (auto v : volumes) {
    table.add_row({std::to_string(v.getId()), v.getName().cStr(), format_size(v.getSizeBytes()),
                   format_size(v.getExclusiveBytes() + v.getSharedBytes()), or_dash(v.getFs()),
                   std::to_string(v.getReplicas()), or_dash(v.getState()),
                   or_dash(v.getDevicePath()), or_dash(labels_text(labels_from(v.getLabels())))});
  }
  return table.render();
}

std::string snapshot_table(const std::vector<proto::Volume::Reader>& snapshots) {
  Table table({{"ID", Align::kRight},
               {"NAME"},
               {"VOLUME"},
               {"SIZE", Align::kRight},
               {"EXCLUSIVE", Align::kRight},
               {"SHARED", Align::kRight},
               {"CREATED"}});
  for (auto s : snapshots) {
    table.add_row({std::to_string(s.getId()), s.getName().cStr(), or_dash(s.getParent()),
                   format_size(s.getSizeBytes()), format_size(s.getExclusiveBytes()),
                   format_size(s.getSharedBytes()), format_time(s.getCreatedUnix())});
  }
  return table.render();
}

std::string pool_table(capnp::List<proto::Pool>::Reader pools) {
  Table table({{"NAME"},
               {"UUID"},
               {"CAPACITY", Align::kRight},
               {"USED", Align::kRight},
               {"FREE", Align::kRight},
               {"CHUNK", Align::kRight},
               {"DEVICES"}});
  for (auto p : pools) {
    table.add_row({p.getName().cStr(), or_dash(p.getUuid()), format_size(p.getCapacityBytes()),
                   format_size(p.getUsedBytes()), format_size(p.getFreeBytes()),
                   format_size(p.getChunkSize()), or_dash(joined(p.getDevices(), ","))});
  }
  return table.render();
}

std::string volume_block(proto::Volume::Reader v) {
  std::string parent = v.getParent().cStr();
  std::string type = "volume";
  if (v.getIsSnapshot()) {
    type = "snapshot of " + parent;
  } else if (!parent.empty()) {
    type = "clone of " + parent;
  }
  std::vector<std::pair<std::string, std::string>> rows = {
      {"Name", v.getName().cStr()},
      {"ID", std::to_string(v.getId())},
      {"Type", type},
      {"Size", format_size(v.getSizeBytes())},
      {"Block size", std::to_string(v.getBlockSize())},
      {"Filesystem", or_dash(v.getFs())},
      {"Replicas", std::to_string(v.getReplicas())},
      {"Pool", or_dash(v.getPool())},
      {"State", or_dash(v.getState())},
      {"Device", or_dash(v.getDevicePath()) +
                     (v.getFrontend().size() ? " (" + std::string(v.getFrontend().cStr()) + ")" : "")},
      {"Mounts", v.getMounts().size() ? joined(v.getMounts(), ", ") : "-"},
      {"Labels", or_dash(labels_text(labels_from(v.getLabels())))},
  };
  if (!v.getIsSnapshot()) {
    rows.emplace_back(
        "Snapshots",
        std::to_string(v.getSnapshots().size()) +
            (v.getSnapshots().size() == 0 ? "" : " (" + joined(v.getSnapshots(), ", ") + ")"));
  }
  if (v.getAttachError().size()) rows.emplace_back("Attach error", v.getAttachError().cStr());
  if (uint64_t shown = v.getDeviceSizeBytes(); shown != 0 && shown < v.getSizeBytes())
    rows.emplace_back("Device size", format_size(shown) + " until detached and attached again");
  rows.emplace_back("Exclusive", format_size(v.getExclusiveBytes()));
  rows.emplace_back("Shared", format_size(v.getSharedBytes()));
  rows.emplace_back("Created", format_time(v.getCreatedUnix()));
  return key_value_block(rows);
}

std::string node_block(proto::NodeStatus::Reader n) {
  std::vector<std::pair<std::string, std::string>> rows = {
      {"Node", n.getNodeName().cStr()},
      {"Version", std::string(n.getVersion().cStr()) + " (control API " +
                      std::to_string(n.getApiVersion()) + ")"},
      {"Uptime", format_duration(n.getUptimeSeconds())},
      {"Cluster", or_dash(n.getCluster())},
      {"Frontend", or_dash(n.getFrontend())},
      {"NBD", or_dash(n.getNbdSocket())},
      {"Docker", or_dash(n.getDockerPluginSocket())},
      {"Data dir", or_dash(n.getDataDir())},
      {"Volumes", std::to_string(n.getVolumes()) + " volumes, " + std::to_string(n.getSnapshots()) +
                      " snapshots"},
  };
  if (n.getLabels().size() > 0)
    rows.emplace_back("Labels", labels_text(labels_from(n.getLabels())));
  return key_value_block(rows) + "\n" + pool_table(n.getPools());
}

}  // namespace pxd::pxctl
