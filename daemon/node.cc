#include "daemon/node.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "common/log.h"
#include "common/units.h"
#include "daemon/nbd_loop_frontend.h"
#include "daemon/systemd_notify.h"
#include "daemon/ublk_frontend.h"

namespace pxd::daemon {
namespace {

constexpr const char* kFsAttr = "fs";
constexpr const char* kReplicasAttr = "replicas";

Status check_fs(const std::string& fs) {
  if (fs == "ext4" || fs == "xfs" || fs == "none") return Status::ok();
  return invalid_argument("filesystem '" + fs + "' is not one of ext4, xfs, none");
}

bool matches(const Labels& labels, const Labels& selector) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace

Result<uint64_t> default_pool_size(const std::string& dir) {
  struct statvfs st;
  if (::statvfs(dir.c_str(), &st) != 0) return errno_status(errno, "statvfs " + dir);
  uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  uint64_t size = std::min<uint64_t>(free_bytes / 10 * 8, kTiB);
  size = align_down(size, kGiB);
  if (size < kGiB)
    return no_space("only " + format_size(free_bytes) + " free under " + dir +
                    "; the default pool needs at least 1.25 GiB free (or give --pool)");
  return size;
}

Node::Node(Config config, std::unique_ptr<Pool> pool, std::unique_ptr<AttachManager> attachments)
    : config_(std::move(config)),
      pool_(std::move(pool)),
      attachments_(std::move(attachments)),
      started_(std::chrono::steady_clock::now()) {}

Node::~Node() {
  // The ublk frontend's devices hold Volumes of the pool and run its I/O on their queue
  // threads: they must be released before the pool closes. (Members would go in this
  // order anyway; this says that it matters.)
  attachments_.reset();
  pool_.reset();
}

Result<std::unique_ptr<Node>> Node::start(const Config& config) {
  if (::mkdir(config.data_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return errno_status(errno, "create data directory " + config.data_dir);
  std::string meta = config.data_dir + "/meta";
  struct stat st;
  std::unique_ptr<Pool> pool;
  if (::stat((meta + "/CURRENT").c_str(), &st) == 0) {
    PXD_TRY(pool, Pool::open(meta));
    if (!config.pools.empty()) {
      std::vector<std::string> have = pool->usage().devices;
      std::vector<std::string> want;
      for (const auto& p : config.pools) want.push_back(p.path);
      if (have != want) {
        std::string h, w;
        for (auto& s : have) h += (h.empty() ? "" : ", ") + s;
        for (auto& s : want) w += (w.empty() ? "" : ", ") + s;
        return failed_precondition("the pool in " + config.data_dir + " has devices [" + h +
                                   "] but the configuration names [" + w + "]");
      }
    }
    PXD_LOG(kInfo) << "opened pool in " << config.data_dir;
  } else {
    PoolOptions options;
    if (config.chunk_size != 0) options.chunk_size = config.chunk_size;
    if (config.pools.empty()) {
      PXD_TRY(uint64_t size, default_pool_size(config.data_dir));
      options.devices.push_back({config.data_dir + "/" + default_pool_file(), size});
    } else {
      for (const auto& p : config.pools) options.devices.push_back({p.path, p.size_bytes, p.thick});
    }
    // Writing a thick pool file takes about a second per GiB: say how far it is, and keep
    // systemd from timing the start out meanwhile.
    options.progress = [](const std::string& path, uint64_t done, uint64_t total) {
      std::string text = "writing thick pool file " + path + ": " + format_size(done) + " of " +
                         format_size(total);
      PXD_LOG(kInfo) << text;
      notify_status(text);
      notify_extend_timeout(60ULL * 1000 * 1000);
    };
    PXD_TRY(pool, Pool::create(meta, options));
    PoolUsage u = pool->usage();
    PXD_LOG(kInfo) << "created pool " << u.uuid << " in " << config.data_dir << ": "
                   << format_size(u.capacity_bytes) << " in " << u.devices.size()
                   << " device(s), chunk " << format_size(u.chunk_size);
  }
  AttachConfig attach_config;
  attach_config.state_path = config.data_dir + "/attachments.json";
  attach_config.device_dir = config.device_dir;
  attach_config.service_unit = own_service_unit();
  NbdLoopConfig nbd_loop;
  nbd_loop.run_dir = std::filesystem::path(config.control_socket).parent_path();
  nbd_loop.nbd_socket = config.nbd_socket;
  nbd_loop.relay_binary = find_relay_binary();
  // ublk first (served by pxd itself, doc/ublk.md), the NBD fallback second.
  std::vector<std::unique_ptr<Frontend>> frontends;
  if (config.attach_frontend != "nbd-loop") {
    UblkConfig ublk;
    Pool* raw_pool = pool.get();  // outlives the frontends: see ~Node()
    ublk.open_volume = [raw_pool](const AttachTarget& t) { return raw_pool->open_volume(t.name); };
    PoolUsage usage = pool->usage();
    ublk.owner = owner_tag(usage.uuid);
    ublk.discard_granularity = usage.chunk_size;
    ublk.copy_mode = config.ublk_copy == "user"     ? ublk::CopyMode::kUserCopy
                     : config.ublk_copy == "kernel" ? ublk::CopyMode::kKernelCopy
                                                    : ublk::CopyMode::kAuto;
    frontends.push_back(std::make_unique<UblkFrontend>(std::move(ublk)));
  }
  if (config.attach_frontend != "ublk")
    frontends.push_back(std::make_unique<NbdLoopFrontend>(nbd_loop));
  PXD_TRY(auto attachments, AttachManager::open(attach_config, std::move(frontends)));
  return std::unique_ptr<Node>(new Node(config, std::move(pool), std::move(attachments)));
}

VolumeView Node::view(const ObjectInfo& info) {
  VolumeView v;
  v.info = info;
  auto fs = info.attributes.find(kFsAttr);
  v.fs = fs == info.attributes.end() ? "ext4" : fs->second;
  auto repl = info.attributes.find(kReplicasAttr);
  // Written by create_volume only; a damaged value reads as the single-node default.
  v.replicas = 1;
  if (repl != info.attributes.end()) {
    unsigned long n = std::strtoul(repl->second.c_str(), nullptr, 10);
    if (n >= 1 && n <= 3) v.replicas = static_cast<uint32_t>(n);
  }
  v.parent = info.is_snapshot ? info.volume : info.origin;
  if (auto att = attachments_->find(info.name)) {
    v.device_path = att->link;
    v.device_size_bytes = att->device_size_bytes;
    v.frontend = att->frontend;
    for (const auto& [path, m] : att->mounts) v.mounts.push_back(path);
    v.attach_error = att->error;
    v.state = !att->error.empty() ? "error" : v.mounts.empty() ? "attached" : "mounted";
  }
  return v;
}

NodeView Node::status() {
  NodeView n;
  n.node_name = config_.node_name;
  n.labels = config_.labels;
  n.data_dir = config_.data_dir;
  n.uptime_seconds = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count());
  PoolUsage u = pool_->usage();
  auto frontend = attachments_->preferred_frontend();
  n.frontend =
      frontend.has_value() ? frontend.value() : "none (" + frontend.error().message() + ")";
  n.nbd_socket = config_.nbd_socket;
  n.docker_plugin_socket = config_.docker_plugin_socket;
  n.volumes = u.volumes;
  n.snapshots = u.snapshots;
  n.pools.push_back(std::move(u));
  return n;
}

Result<VolumeView> Node::create_volume(const CreateRequest& r) {
  PXD_RETURN_IF_ERROR(check_name(r.name));
  PXD_RETURN_IF_ERROR(check_fs(r.fs));
  if (r.replicas == 0 || r.replicas > 3)
    return invalid_argument("replica count " + std::to_string(r.replicas) + " must be 1 to 3");
  if (r.replicas > 1)
    return unsupported("--repl " + std::to_string(r.replicas) +
                       " needs a cluster; this node runs without one (single node), so "
                       "volumes have one replica");
  auto existing = pool_->inspect(r.name);
  if (existing.has_value()) {
    VolumeView v = view(existing.value());
    std::string diff;
    auto differ = [&](const std::string& what, const std::string& have, const std::string& want) {
      if (have != want) diff += (diff.empty() ? "" : ", ") + what + " is " + have + ", not " + want;
    };
    if (v.info.is_snapshot) return already_exists("'" + r.name + "' is the name of a snapshot");
    differ("size", format_size(v.info.size_bytes), format_size(r.size_bytes));
    differ("block size", std::to_string(v.info.block_size), std::to_string(r.block_size));
    differ("filesystem", v.fs, r.fs);
    differ("replicas", std::to_string(v.replicas), std::to_string(r.replicas));
    if (v.info.labels != r.labels) diff += std::string(diff.empty() ? "" : ", ") + "labels differ";
    if (!diff.empty())
      return already_exists("volume '" + r.name + "' exists with a different spec: " + diff);
    return v;
  }
  if (existing.error().code() != StatusCode::kNotFound) return existing.error();
  VolumeSpec spec;
  spec.name = r.name;
  spec.size_bytes = r.size_bytes;
  spec.block_size = r.block_size;
  spec.labels = r.labels;
  spec.attributes[kFsAttr] = r.fs;
  spec.attributes[kReplicasAttr] = std::to_string(r.replicas);
  PXD_TRY(ObjectInfo info, pool_->create_volume(spec));
  PXD_LOG(kInfo) << "created volume " << info.name << " (" << format_size(info.size_bytes) << ")";
  return view(info);
}

Result<std::vector<VolumeView>> Node::list(const Labels& selector, bool include_snapshots) {
  std::vector<VolumeView> out;
  for (const ObjectInfo& info : pool_->list()) {
    if (info.is_snapshot && !include_snapshots) continue;
    if (matches(info.labels, selector)) out.push_back(view(info));
  }
  return out;
}

Result<VolumeView> Node::inspect(const std::string& name) {
  PXD_TRY(ObjectInfo info, pool_->inspect(name));
  return view(info);
}

Result<VolumeView> Node::update(const std::string& name, uint64_t size_bytes, const Labels* labels,
                                bool merge, const std::vector<std::string>& remove) {
  PXD_TRY(ObjectInfo info, pool_->inspect(name));
  if (size_bytes == 0 && labels == nullptr)
    return invalid_argument("nothing to update: give a new size or labels");
  if (labels && merge) {
    PXD_TRY(info, pool_->merge_labels(name, *labels, remove));
    labels = nullptr;
  }
  if (size_bytes != 0 && size_bytes != info.size_bytes) {
    PXD_TRY(info, pool_->resize(name, size_bytes));
    Status grown = attachments_->resize(name, info.size_bytes);
    if (!grown.is_ok()) {
      PXD_LOG(kWarn) << "volume '" << name << "' grew to " << format_size(info.size_bytes)
                     << " but its attached device still shows the old size: " << grown.message();
    }
  }
  if (labels) {
    PXD_TRY(info, pool_->set_labels(name, *labels));
  }
  return view(info);
}

Status Node::delete_volume(const std::string& name, bool force) {
  PXD_TRY(ObjectInfo info, pool_->inspect(name));
  if (info.is_snapshot)
    return invalid_argument("'" + name + "' is a snapshot; use snapshot delete");
  if (attachments_->find(name)) {
    if (!force) return busy("volume '" + name + "' is attached; detach it first or use --force");
    PXD_RETURN_IF_ERROR(attachments_->detach(name, true));
    wait_closed(name);
  }
  PXD_TRY(info, pool_->inspect(name));
  if (info.open_handles > 0)
    return busy("volume '" + name + "' is open by " + std::to_string(info.open_handles) +
                " NBD client(s); disconnect them first");
  PXD_RETURN_IF_ERROR(pool_->remove(name));
  PXD_LOG(kInfo) << "deleted volume " << name;
  return Status::ok();
}

Result<VolumeView> Node::create_snapshot(const std::string& volume, const std::string& name,
                                         const Labels& labels) {
  PXD_TRY(ObjectInfo info, pool_->create_snapshot(volume, name, labels));
  PXD_LOG(kInfo) << "created snapshot " << name << " of " << volume;
  return view(info);
}

Result<std::vector<VolumeView>> Node::list_snapshots(const std::string& volume) {
  if (!volume.empty()) {
    PXD_TRY(ObjectInfo vol, pool_->inspect(volume));
    if (vol.is_snapshot) return invalid_argument("'" + volume + "' is a snapshot, not a volume");
  }
  std::vector<VolumeView> out;
  for (const ObjectInfo& info : pool_->list()) {
    if (info.is_snapshot && (volume.empty() || info.volume == volume)) out.push_back(view(info));
  }
  return out;
}

Status Node::delete_snapshot(const std::string& name) {
  PXD_TRY(ObjectInfo info, pool_->inspect(name));
  if (!info.is_snapshot) return invalid_argument("'" + name + "' is a volume, not a snapshot");
  if (attachments_->find(name)) return busy("snapshot '" + name + "' is attached; detach it first");
  PXD_RETURN_IF_ERROR(pool_->remove(name));
  PXD_LOG(kInfo) << "deleted snapshot " << name;
  return Status::ok();
}

Result<VolumeView> Node::clone(const std::string& source, const std::string& name,
                               const Labels& labels) {
  PXD_TRY(ObjectInfo info, pool_->clone(source, name, labels));
  PXD_LOG(kInfo) << "cloned " << source << " as " << name;
  return view(info);
}

Result<VolumeView> Node::restore(const std::string& volume, const std::string& snapshot) {
  if (attachments_->find(volume))
    return busy("volume '" + volume + "' is attached; detach it before restoring it");
  PXD_RETURN_IF_ERROR(pool_->restore(volume, snapshot));
  PXD_LOG(kInfo) << "restored " << volume << " to " << snapshot;
  return inspect(volume);
}

Status Node::sync() {
  return pool_->sync();
}

Result<AttachTarget> Node::target_of(const std::string& name) {
  PXD_TRY(ObjectInfo info, pool_->inspect(name));
  AttachTarget t;
  t.volume_id = info.id;
  t.name = info.name;
  t.block_size = info.block_size;
  t.size_bytes = info.size_bytes;
  t.read_only = info.is_snapshot;
  return t;
}

void Node::wait_closed(const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto info = pool_->inspect(name);
    if (!info.has_value() || info.value().open_handles == 0) return;
    if (std::chrono::steady_clock::now() > deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<VolumeView> Node::attach(const std::string& name) {
  PXD_TRY(AttachTarget target, target_of(name));
  PXD_TRY(Attachment att, attachments_->attach(target));
  (void)att;
  return inspect(name);
}

Result<VolumeView> Node::detach(const std::string& name, bool force) {
  PXD_TRY(ObjectInfo info, pool_->inspect(name));
  PXD_RETURN_IF_ERROR(attachments_->detach(name, force));
  wait_closed(name);
  return view(info);
}

Result<std::pair<VolumeView, bool>> Node::mount(const std::string& name, const std::string& path) {
  PXD_TRY(AttachTarget target, target_of(name));
  PXD_TRY(VolumeView before, inspect(name));
  std::string fs = before.fs;
  if (before.info.is_snapshot) {
    auto parent = inspect(before.info.volume);
    if (parent.has_value()) fs = parent.value().fs;
  }
  PXD_TRY(MountResult mounted, attachments_->mount(target, path, fs));
  PXD_TRY(VolumeView after, inspect(name));
  return std::make_pair(after, mounted.made_fs);
}

Result<VolumeView> Node::unmount(const std::string& name, const std::string& path) {
  PXD_TRY(ObjectInfo info, pool_->inspect(name));
  PXD_TRY(Attachment att, attachments_->unmount(name, path));
  if (att.device.empty()) wait_closed(name);
  return inspect(name);
}

void Node::restore_attachments() {
  attachments_->reconcile([this](const Attachment& att) -> std::optional<AttachTarget> {
    auto target = target_of(att.name);
    if (!target.has_value() || target.value().volume_id != att.volume_id) return std::nullopt;
    return target.value();
  });
}

void Node::stop_attachments(bool detach_all) {
  attachments_->shutdown(detach_all);
}

Result<std::shared_ptr<Volume>> Node::open_export(const std::string& name) {
  return pool_->open_volume(name);
}

std::vector<std::string> Node::list_exports() {
  std::vector<std::string> names;
  for (const ObjectInfo& info : pool_->list()) names.push_back(info.name);
  return names;
}

}  // namespace pxd::daemon
