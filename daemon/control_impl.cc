#include "daemon/control_impl.h"

#include "daemon/version.h"

namespace pxd::daemon {
namespace {

template <class Results>
void answer(Results results, const Status& status) {
  set_status(results.initStatus(), status);
}

template <class ListBuilder>
void fill_volumes(ListBuilder list, const std::vector<VolumeView>& views) {
  for (unsigned i = 0; i < views.size(); ++i) set_volume(list[i], views[i]);
}

}  // namespace

kj::Promise<void> ControlImpl::hello(HelloContext context) {
  if (refuse(context)) return kj::READY_NOW;
  auto results = context.getResults();
  answer(results, Status::ok());
  results.setApiVersion(proto::API_VERSION);
  results.setVersion(kVersion);
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::status(StatusContext context) {
  return call(
      context, [node = &node_]() -> Result<NodeView> { return node->status(); },
      [](auto results, NodeView& n) {
        auto out = results.initNode();
        out.setNodeName(n.node_name);
        out.setVersion(kVersion);
        out.setApiVersion(proto::API_VERSION);
        init_labels([&](unsigned k) { return out.initLabels(k); }, n.labels);
        out.setUptimeSeconds(n.uptime_seconds);
        out.setDataDir(n.data_dir);
        out.setCluster("none (single node)");
        out.setFrontend(n.frontend);
        out.setNbdSocket(n.nbd_socket);
        out.setDockerPluginSocket(n.docker_plugin_socket);
        auto pools = out.initPools(static_cast<unsigned>(n.pools.size()));
        for (unsigned i = 0; i < n.pools.size(); ++i) set_pool(pools[i], n.pools[i]);
        out.setVolumes(n.volumes);
        out.setSnapshots(n.snapshots);
      });
}

kj::Promise<void> ControlImpl::listPools(ListPoolsContext context) {
  return call(
      context, [node = &node_]() -> Result<NodeView> { return node->status(); },
      [](auto results, NodeView& n) {
        auto pools = results.initPools(static_cast<unsigned>(n.pools.size()));
        for (unsigned i = 0; i < n.pools.size(); ++i) set_pool(pools[i], n.pools[i]);
      });
}

kj::Promise<void> ControlImpl::createVolume(CreateVolumeContext context) {
  auto request = create_request_from(context.getParams().getSpec());
  if (rejected(context, request)) return kj::READY_NOW;
  return call(
      context, [node = &node_, r = std::move(request).value()] { return node->create_volume(r); },
      [](auto results, VolumeView& v) { set_volume(results.initVolume(), v); });
}

kj::Promise<void> ControlImpl::listVolumes(ListVolumesContext context) {
  auto params = context.getParams();
  auto selector = labels_from(params.getSelector());
  if (rejected(context, selector)) return kj::READY_NOW;
  return call(
      context,
      [node = &node_, s = std::move(selector).value(), all = params.getIncludeSnapshots()] {
        return node->list(s, all);
      },
      [](auto results, std::vector<VolumeView>& views) {
        fill_volumes(results.initVolumes(static_cast<unsigned>(views.size())), views);
      });
}

kj::Promise<void> ControlImpl::inspectVolume(InspectVolumeContext context) {
  return call(
      context,
      [node = &node_, name = std::string(context.getParams().getName())] {
        return node->inspect(name);
      },
      [](auto results, VolumeView& v) { set_volume(results.initVolume(), v); });
}

kj::Promise<void> ControlImpl::updateVolume(UpdateVolumeContext context) {
  auto params = context.getParams();
  auto labels = labels_from(params.getLabels());
  if (rejected(context, labels)) return kj::READY_NOW;
  std::vector<std::string> remove;
  for (auto key : params.getRemoveLabels()) {
    if (key.size() == 0 || key.size() > kMaxLabelBytes) {
      answer(context.getResults(), invalid_argument("a label key to remove is empty or too long"));
      return kj::READY_NOW;
    }
    remove.emplace_back(key);
  }
  if (remove.size() > kMaxLabels) {
    answer(context.getResults(), invalid_argument("too many labels to remove"));
    return kj::READY_NOW;
  }
  const bool merge = params.getMergeLabels();
  const bool touch_labels = merge || params.getSetLabels();
  return call(
      context,
      [node = &node_, name = std::string(params.getName()), size = params.getSizeBytes(),
       touch_labels, merge, l = std::move(labels).value(), remove = std::move(remove)] {
        return node->update(name, size, touch_labels ? &l : nullptr, merge, remove);
      },
      [](auto results, VolumeView& v) { set_volume(results.initVolume(), v); });
}

kj::Promise<void> ControlImpl::deleteVolume(DeleteVolumeContext context) {
  auto params = context.getParams();
  return call(
      context,
      [node = &node_, name = std::string(params.getName()),
       force = params.getForce()]() -> Result<bool> {
        PXD_RETURN_IF_ERROR(node->delete_volume(name, force));
        return true;
      },
      [](auto, bool) {});
}

kj::Promise<void> ControlImpl::createSnapshot(CreateSnapshotContext context) {
  auto params = context.getParams();
  auto labels = labels_from(params.getLabels());
  if (rejected(context, labels)) return kj::READY_NOW;
  return call(
      context,
      [node = &node_, vol = std::string(params.getVolume()), name = std::string(params.getName()),
       l = std::move(labels).value()] { return node->create_snapshot(vol, name, l); },
      [](auto results, VolumeView& v) { set_volume(results.initSnapshot(), v); });
}

kj::Promise<void> ControlImpl::listSnapshots(ListSnapshotsContext context) {
  return call(
      context,
      [node = &node_, vol = std::string(context.getParams().getVolume())] {
        return node->list_snapshots(vol);
      },
      [](auto results, std::vector<VolumeView>& views) {
        fill_volumes(results.initSnapshots(static_cast<unsigned>(views.size())), views);
      });
}

kj::Promise<void> ControlImpl::deleteSnapshot(DeleteSnapshotContext context) {
  return call(
      context,
      [node = &node_, name = std::string(context.getParams().getName())]() -> Result<bool> {
        PXD_RETURN_IF_ERROR(node->delete_snapshot(name));
        return true;
      },
      [](auto, bool) {});
}

kj::Promise<void> ControlImpl::clone(CloneContext context) {
  auto params = context.getParams();
  auto labels = labels_from(params.getLabels());
  if (rejected(context, labels)) return kj::READY_NOW;
  return call(
      context,
      [node = &node_, src = std::string(params.getSource()), name = std::string(params.getName()),
       l = std::move(labels).value()] { return node->clone(src, name, l); },
      [](auto results, VolumeView& v) { set_volume(results.initVolume(), v); });
}

kj::Promise<void> ControlImpl::restore(RestoreContext context) {
  auto params = context.getParams();
  return call(
      context,
      [node = &node_, vol = std::string(params.getVolume()),
       snap = std::string(params.getSnapshot())] { return node->restore(vol, snap); },
      [](auto results, VolumeView& v) { set_volume(results.initVolume(), v); });
}

kj::Promise<void> ControlImpl::attach(AttachContext context) {
  auto params = context.getParams();
  return call(
      context, [node = &node_, name = std::string(params.getName())] { return node->attach(name); },
      [](auto results, VolumeView& v) { set_volume(results.initVolume(), v); });
}

kj::Promise<void> ControlImpl::detach(DetachContext context) {
  auto params = context.getParams();
  return call(
      context,
      [node = &node_, name = std::string(params.getName()), force = params.getForce()] {
        return node->detach(name, force);
      },
      [](auto results, VolumeView& v) { set_volume(results.initVolume(), v); });
}

kj::Promise<void> ControlImpl::mount(MountContext context) {
  auto params = context.getParams();
  return call(
      context,
      [node = &node_, name = std::string(params.getName()),
       path = std::string(params.getPath())] { return node->mount(name, path); },
      [](auto results, std::pair<VolumeView, bool>& r) {
        set_volume(results.initVolume(), r.first);
        results.setMadeFs(r.second);
      });
}

kj::Promise<void> ControlImpl::unmount(UnmountContext context) {
  auto params = context.getParams();
  return call(
      context,
      [node = &node_, name = std::string(params.getName()),
       path = std::string(params.getPath())] { return node->unmount(name, path); },
      [](auto results, VolumeView& v) { set_volume(results.initVolume(), v); });
}

}  // namespace pxd::daemon
