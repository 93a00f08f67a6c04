// pxctl host attach|detach|mount|unmount: volumes as block devices and filesystems on
// this host (the control API's attach, detach, mount and unmount).
#include "tools/pxctl/commands.h"

namespace pxd::pxctl {
namespace {

struct HostOptions {
  std::string name, path;
  bool force = false;
};

void add_attach(CLI::App& host, Action* action) {
  auto o = std::make_shared<HostOptions>();
  CLI::App* cmd = host.add_subcommand(
      "attach", "Attach a volume (or, read-only, a snapshot) as /dev/pxd<ID>; prints the path");
  cmd->add_option("name", o->name, "Volume or snapshot name")->required();
  cmd->callback([o, action] {
    *action = [o](Session& s) {
      auto request = s.client().control().attachRequest();
      request.setName(o->name);
      auto response = s.client().call(request);
      auto v = response.getVolume();
      if (s.json()) return s.print_json(volume_json(v));
      s.print(std::string(v.getDevicePath().cStr()) + "\n");
    };
  });
}

void add_detach(CLI::App& host, Action* action) {
  auto o = std::make_shared<HostOptions>();
  CLI::App* cmd = host.add_subcommand("detach", "Remove a volume's /dev/pxd<ID> device");
  cmd->add_option("name", o->name, "Volume or snapshot name")->required();
  cmd->add_flag("-f,--force", o->force, "Detach even while mounted (unmounts lazily)");
  cmd->callback([o, action] {
    *action = [o](Session& s) {
      auto request = s.client().control().detachRequest();
      request.setName(o->name);
      request.setForce(o->force);
      auto response = s.client().call(request);
      if (s.json()) return s.print_json(volume_json(response.getVolume()));
      s.print("Volume detached: " + o->name + "\n");
    };
  });
}

void add_mount(CLI::App& host, Action* action) {
  auto o = std::make_shared<HostOptions>();
  CLI::App* cmd = host.add_subcommand(
      "mount", "Mount a volume at PATH, attaching it and making its filesystem if needed");
  cmd->add_option("name", o->name, "Volume or snapshot name")->required();
  cmd->add_option("path", o->path, "Absolute mount path (created if missing)")->required();
  cmd->callback([o, action] {
    if (o->path.empty() || o->path[0] != '/')
      throw CLI::ValidationError("path", "'" + o->path + "' is not an absolute path");
    *action = [o](Session& s) {
      auto request = s.client().control().mountRequest();
      request.setName(o->name);
      request.setPath(o->path);
      auto response = s.client().call(request);
      auto v = response.getVolume();
      if (s.json()) {
        Json out = volume_json(v);
        out["made_fs"] = response.getMadeFs();
        return s.print_json(out);
      }
      s.print("Volume mounted: " + o->name + " at " + o->path + " (" +
              std::string(v.getDevicePath().cStr()) +
              (response.getMadeFs() ? ", new " + std::string(v.getFs().cStr()) + " filesystem"
                                    : "") +
              ")\n");
    };
  });
}

void add_unmount(CLI::App& host, Action* action) {
  auto o = std::make_shared<HostOptions>();
  CLI::App* cmd = host.add_subcommand("unmount", "Undo one mount of a volume at PATH");
  cmd->alias("umount");
  cmd->add_option("name", o->name, "Volume or snapshot name")->required();
  cmd->add_option("path", o->path, "Mount path")->required();
  cmd->callback([o, action] {
    *action = [o](Session& s) {
      auto request = s.client().control().unmountRequest();
      request.setName(o->name);
      request.setPath(o->path);
      auto response = s.client().call(request);
      auto v = response.getVolume();
      if (s.json()) return s.print_json(volume_json(v));
      s.print("Volume unmounted: " + o->name + " from " + o->path + " (now " +
              std::string(v.getState().cStr()) + ")\n");
    };
  });
}

}  // namespace

void add_host_commands(CLI::App& app, Action* action) {
  CLI::App* host = app.add_subcommand("host", "Volumes as devices and filesystems on this host");
  host->require_subcommand(1);
  add_attach(*host, action);
  add_detach(*host, action);
  add_mount(*host, action);
  add_unmount(*host, action);
}

}  // namespace pxd::pxctl
