// pxctl volume snapshot create | list | delete.
#include "tools/pxctl/args.h"
#include "tools/pxctl/commands.h"

namespace pxd::pxctl {

namespace {

void add_create(CLI::App& snapshot, Action* action) {
  struct Options {
    std::string volume, name;
    std::vector<std::string> labels;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = snapshot.add_subcommand("create", "Take a snapshot of a volume");
  cmd->add_option("volume", o->volume, "Volume to snapshot")->required();
  cmd->add_option("-n,--name", o->name, "Snapshot name")->required();
  add_label_option(*cmd, o->labels, "Labels of the snapshot k=v,k2=v2 (repeatable)");
  cmd->callback([o, action] {
    auto labels = parse_labels(o->labels);
    if (labels.has_error()) throw CLI::ValidationError("--label", labels.error().message());
    *action = [o, labels = std::move(labels).value()](Session& s) {
      auto request = s.client().control().createSnapshotRequest();
      request.setVolume(o->volume);
      request.setName(o->name);
      fill_labels(request.initLabels(static_cast<unsigned>(labels.size())), labels);
      auto response = s.client().call(request);
      auto snap = response.getSnapshot();
      if (s.json()) return s.print_json(volume_json(snap));
      s.print("Snapshot created: " + std::string(snap.getName().cStr()) + " (id " +
              std::to_string(snap.getId()) + ") of " + o->volume + "\n");
    };
  });
}

void add_list(CLI::App& snapshot, Action* action) {
  auto volume = std::make_shared<std::string>();
  CLI::App* cmd = snapshot.add_subcommand("list", "List snapshots, of one volume or all");
  cmd->alias("ls");
  cmd->add_option("volume", *volume, "Only this volume's snapshots");
  cmd->callback([volume, action] {
    *action = [volume](Session& s) {
      auto request = s.client().control().listSnapshotsRequest();
      request.setVolume(*volume);
      auto response = s.client().call(request);
      if (s.json()) {
        Json out = Json::array();
        for (auto snap : response.getSnapshots()) out.push_back(volume_json(snap));
        return s.print_json(out);
      }
      s.print(snapshot_table(readers<proto::Volume>(response.getSnapshots())));
    };
  });
}

void add_delete(CLI::App& snapshot, Action* action) {
  auto name = std::make_shared<std::string>();
  CLI::App* cmd = snapshot.add_subcommand("delete", "Delete a snapshot");
  cmd->alias("rm");
  cmd->add_option("name", *name, "Snapshot name")->required();
  cmd->callback([name, action] {
    *action = [name](Session& s) {
      auto request = s.client().control().deleteSnapshotRequest();
      request.setName(*name);
      s.client().call(request);
      if (s.json()) return s.print_json(Json{{"name", *name}, {"deleted", true}});
      s.print("Snapshot deleted: " + *name + "\n");
    };
  });
}

}  // namespace

void add_snapshot_commands(CLI::App& volume, Action* action) {
  CLI::App* snapshot = volume.add_subcommand("snapshot", "Manage snapshots of volumes");
  snapshot->alias("snap");
  snapshot->require_subcommand(1);
  add_create(*snapshot, action);
  add_list(*snapshot, action);
  add_delete(*snapshot, action);
}

}  // namespace pxd::pxctl
