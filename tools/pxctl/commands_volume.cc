// pxctl volume create | list | inspect | update | delete | clone | restore.
#include "common/units.h"
#include "tools/pxctl/args.h"
#include "tools/pxctl/commands.h"

namespace pxd::pxctl {

namespace {

// Parses flags a validator already accepted.
Labels checked_labels(const std::vector<std::string>& flags) {
  auto labels = parse_labels(flags);
  if (labels.has_error()) throw CLI::ValidationError("--label", labels.error().message());
  return std::move(labels).value();
}

uint64_t checked_size(const std::string& text) {
  auto size = parse_size_flag(text);
  if (size.has_error()) throw CLI::ValidationError("--size", size.error().message());
  return size.value();
}

std::string size_and_labels(proto::Volume::Reader v) {
  std::string text = format_size(v.getSizeBytes());
  std::string labels = labels_text(labels_from(v.getLabels()));
  if (!labels.empty()) text += ", labels " + labels;
  return text;
}

void add_create(CLI::App& volume, Action* action) {
  struct Options {
    std::string name, size, fs = "ext4";
    uint32_t block_size = 4096, replicas = 1;
    std::vector<std::string> labels;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = volume.add_subcommand("create", "Create a thin-provisioned volume");
  cmd->add_option("name", o->name, "Volume name")->required();
  cmd->add_option("-s,--size", o->size, "Size: GiB as a plain number, or with units (512M, 2T)")
      ->required()
      ->check(size_validator())
      ->type_name("SIZE");
  cmd->add_option("--fs", o->fs, "Filesystem made on first mount")
      ->check(CLI::IsMember({"ext4", "xfs", "none"}))
      ->capture_default_str();
  // Checked as text before conversion, so "abc" gets the same message as "1024".
  cmd->add_option("-b,--block_size,--block-size", o->block_size, "Block size in bytes")
      ->check(CLI::Validator(
          [](std::string& text) {
            return text == "4096" || text == "512"
                       ? std::string()
                       : "block size '" + text + "' must be 4096 or 512";
          },
          "4096|512"))
      ->capture_default_str();
  add_label_option(*cmd, o->labels, "Labels k=v,k2=v2 (repeatable)");
  cmd->add_option("-r,--repl", o->replicas, "Replica count (above 1 needs a cluster)")
      ->check(CLI::Range(1, 3))
      ->capture_default_str();
  cmd->callback([o, action] {
    Labels labels = checked_labels(o->labels);
    uint64_t size = checked_size(o->size);
    *action = [o, labels, size](Session& s) {
      auto request = s.client().control().createVolumeRequest();
      auto spec = request.initSpec();
      spec.setName(o->name);
      spec.setSizeBytes(size);
      spec.setBlockSize(o->block_size);
      spec.setFs(o->fs);
      fill_labels(spec.initLabels(static_cast<unsigned>(labels.size())), labels);
      spec.setReplicas(o->replicas);
      auto response = s.client().call(request);
      auto v = response.getVolume();
      if (s.json()) return s.print_json(volume_json(v));
      s.print("Volume created: " + std::string(v.getName().cStr()) + " (id " +
              std::to_string(v.getId()) + ", " + size_and_labels(v) + ")\n");
    };
  });
}

void add_list(CLI::App& volume, Action* action) {
  struct Options {
    std::vector<std::string> labels;
    bool all = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = volume.add_subcommand("list", "List volumes");
  cmd->alias("ls");
  add_label_option(*cmd, o->labels, "Only volumes with all these labels k=v,k2=v2");
  cmd->add_flag("-a,--all", o->all, "Include snapshots");
  cmd->callback([o, action] {
    Labels selector = checked_labels(o->labels);
    *action = [o, selector](Session& s) {
      auto request = s.client().control().listVolumesRequest();
      fill_labels(request.initSelector(static_cast<unsigned>(selector.size())), selector);
      request.setIncludeSnapshots(o->all);
      auto response = s.client().call(request);
      if (s.json()) {
        Json out = Json::array();
        for (auto v : response.getVolumes()) out.push_back(volume_json(v));
        return s.print_json(out);
      }
      s.print(volume_table(readers<proto::Volume>(response.getVolumes())));
    };
  });
}

void add_inspect(CLI::App& volume, Action* action) {
  auto names = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = volume.add_subcommand("inspect", "Show volumes or snapshots in detail");
  cmd->add_option("name", *names, "Volume or snapshot names")->required();
  cmd->callback([names, action] {
    *action = [names](Session& s) {
      // Every answer first, so a missing name prints nothing but the error.
      std::vector<capnp::Response<proto::Control::InspectVolumeResults>> answers;
      for (const std::string& name : *names) {
        auto request = s.client().control().inspectVolumeRequest();
        request.setName(name);
        answers.push_back(s.client().call(request));
      }
      if (s.json()) {
        if (answers.size() == 1) return s.print_json(volume_json(answers[0].getVolume()));
        Json out = Json::array();
        for (auto& a : answers) out.push_back(volume_json(a.getVolume()));
        return s.print_json(out);
      }
      std::string text;
      for (auto& a : answers) text += (text.empty() ? "" : "\n") + volume_block(a.getVolume());
      s.print(text);
    };
  });
}

void add_update(CLI::App& volume, Action* action) {
  struct Options {
    std::string name, size;
    std::vector<std::string> labels;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = volume.add_subcommand("update", "Grow a volume or change its labels");
  cmd->add_option("name", o->name, "Volume name")->required();
  CLI::Option* size = cmd->add_option("-s,--size", o->size, "New size (GiB, or with units)")
                          ->check(size_validator())
                          ->type_name("SIZE");
  CLI::Option* labels = add_label_option(
      *cmd, o->labels, "Set labels k=v; k= removes a label; others are kept (repeatable)");
  cmd->callback([o, action, size, labels] {
    if (size->count() == 0 && labels->count() == 0)
      throw CLI::ValidationError("nothing to update: give --size, --label or both");
    Labels updates = checked_labels(o->labels);
    uint64_t size_bytes = o->size.empty() ? 0 : checked_size(o->size);
    bool set_labels = labels->count() > 0;
    *action = [o, updates, size_bytes, set_labels](Session& s) {
      auto request = s.client().control().updateVolumeRequest();
      request.setName(o->name);
      request.setSizeBytes(size_bytes);
      if (set_labels) {
        // Portworx's meaning of --label: k=v sets, k= removes, others stay. pxd merges
        // atomically, so concurrent label updates never lose each other's keys.
        Labels set;
        std::vector<std::string> remove;
        for (const auto& [k, v] : updates) {
          if (v.empty()) {
            remove.push_back(k);
          } else {
            set.emplace_back(k, v);
          }
        }
        request.setMergeLabels(true);
        fill_labels(request.initLabels(static_cast<unsigned>(set.size())), set);
        auto keys = request.initRemoveLabels(static_cast<unsigned>(remove.size()));
        for (unsigned i = 0; i < remove.size(); ++i) keys.set(i, remove[i]);
      }
      auto response = s.client().call(request);
      auto v = response.getVolume();
      if (s.json()) return s.print_json(volume_json(v));
      s.print("Volume updated: " + std::string(v.getName().cStr()) + " (" + size_and_labels(v) +
              ")\n");
      if (uint64_t shown = v.getDeviceSizeBytes(); shown != 0 && shown < v.getSizeBytes())
        s.print("Its attached device " + std::string(v.getDevicePath().cStr()) + " still shows " +
                format_size(shown) +
                ": this host cannot grow it while attached; detach and attach the volume "
                "to see the new size\n");
    };
  });
}

void add_delete(CLI::App& volume, Action* action) {
  struct Options {
    std::string name;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = volume.add_subcommand("delete", "Delete a volume");
  cmd->alias("rm");
  cmd->add_option("name", o->name, "Volume name")->required();
  cmd->add_flag("-f,--force", o->force, "Delete even while attached or mounted");
  cmd->callback([o, action] {
    *action = [o](Session& s) {
      auto request = s.client().control().deleteVolumeRequest();
      request.setName(o->name);
      request.setForce(o->force);
      s.client().call(request);
      if (s.json()) return s.print_json(Json{{"name", o->name}, {"deleted", true}});
      s.print("Volume deleted: " + o->name + "\n");
    };
  });
}

void add_clone(CLI::App& volume, Action* action) {
  struct Options {
    std::string name, source;
    std::vector<std::string> labels;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd =
      volume.add_subcommand("clone", "Create a writable volume from a volume or snapshot");
  cmd->add_option("source", o->source, "Volume or snapshot to clone")->required();
  cmd->add_option("-n,--name", o->name, "Name of the new volume")->required();
  add_label_option(*cmd, o->labels, "Labels of the new volume k=v,k2=v2 (repeatable)");
  cmd->callback([o, action] {
    Labels labels = checked_labels(o->labels);
    *action = [o, labels](Session& s) {
      auto request = s.client().control().cloneRequest();
      request.setSource(o->source);
      request.setName(o->name);
      fill_labels(request.initLabels(static_cast<unsigned>(labels.size())), labels);
      auto response = s.client().call(request);
      auto v = response.getVolume();
      if (s.json()) return s.print_json(volume_json(v));
      s.print("Volume cloned: " + std::string(v.getName().cStr()) + " (id " +
              std::to_string(v.getId()) + ") from " + o->source + "\n");
    };
  });
}

void add_restore(CLI::App& volume, Action* action) {
  struct Options {
    std::string volume, snapshot;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = volume.add_subcommand("restore", "Roll a volume back to one of its snapshots");
  cmd->add_option("volume", o->volume, "Volume to restore")->required();
  cmd->add_option("-s,--snapshot", o->snapshot, "Snapshot to restore from")->required();
  cmd->callback([o, action] {
    *action = [o](Session& s) {
      auto request = s.client().control().restoreRequest();
      request.setVolume(o->volume);
      request.setSnapshot(o->snapshot);
      auto response = s.client().call(request);
      if (s.json()) return s.print_json(volume_json(response.getVolume()));
      s.print("Volume restored: " + o->volume + " from snapshot " + o->snapshot + "\n");
    };
  });
}

}  // namespace

void add_volume_commands(CLI::App& app, Action* action) {
  CLI::App* volume = app.add_subcommand("volume", "Manage volumes, snapshots and clones");
  volume->alias("v");
  volume->require_subcommand(1);
  add_create(*volume, action);
  add_list(*volume, action);
  add_inspect(*volume, action);
  add_update(*volume, action);
  add_delete(*volume, action);
  add_snapshot_commands(*volume, action);
  add_transfer_commands(*volume, action);
  add_clone(*volume, action);
  add_restore(*volume, action);
}

}  // namespace pxd::pxctl
