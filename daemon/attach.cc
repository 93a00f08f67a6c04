#include "daemon/attach.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/log.h"
#include "daemon/filesystem.h"

namespace pxd::daemon {
namespace {

using nlohmann::json;

constexpr int kStateVersion = 1;

json to_json(const Attachment& a) {
  json mounts = json::array();
  for (const auto& [path, m] : a.mounts)
    mounts.push_back({{"path", path}, {"fs", m.fs}, {"refs", m.refs}});
  return {{"volume_id", a.volume_id},
          {"name", a.name},
          {"read_only", a.read_only},
          {"block_size", a.block_size},
          {"frontend", a.frontend},
          {"device", a.device},
          {"link", a.link},
          {"helper_pid", a.helper_pid},
          {"device_size_bytes", a.device_size_bytes},
          {"attached_by_mount", a.attached_by_mount},
          {"mounts", mounts}};
}

Attachment from_json(const json& j) {
  Attachment a;
  a.volume_id = j.at("volume_id").get<uint64_t>();
  a.name = j.at("name").get<std::string>();
  a.read_only = j.at("read_only").get<bool>();
  a.block_size = j.at("block_size").get<uint32_t>();
  a.frontend = j.at("frontend").get<std::string>();
  a.device = j.at("device").get<std::string>();
  a.link = j.at("link").get<std::string>();
  a.helper_pid = j.at("helper_pid").get<int64_t>();
  a.device_size_bytes = j.value("device_size_bytes", uint64_t{0});  // added later
  a.attached_by_mount = j.at("attached_by_mount").get<bool>();
  for (const auto& m : j.at("mounts"))
    a.mounts[m.at("path").get<std::string>()] = {m.at("fs").get<std::string>(),
                                                 m.at("refs").get<uint32_t>()};
  return a;
}

}  // namespace

AttachManager::AttachManager(AttachConfig config, std::vector<std::unique_ptr<Frontend>> frontends)
    : config_(std::move(config)),
      frontends_(std::move(frontends)),
      mount_order_(config_.unit_dir, config_.service_unit) {}

Status AttachManager::mount_ordered(const std::string& device, const std::string& path,
                                    const std::string& fs, bool read_only) {
  PXD_RETURN_IF_ERROR(mount_order_.order_after_service(path));
  Status s = mount_fs(device, path, fs, read_only);
  if (!s.is_ok()) mount_order_.unordered(path);
  return s;
}

Status AttachManager::unmount_ordered(const std::string& path, bool lazy) {
  PXD_RETURN_IF_ERROR(unmount_fs(path, lazy));
  mount_order_.unordered(path);
  return Status::ok();
}

Result<std::unique_ptr<AttachManager>> AttachManager::open(
    AttachConfig config, std::vector<std::unique_ptr<Frontend>> frontends) {
  std::unique_ptr<AttachManager> m(new AttachManager(std::move(config), std::move(frontends)));
  PXD_RETURN_IF_ERROR(m->load());
  return m;
}

Status AttachManager::load() {
  std::ifstream f(config_.state_path);
  if (!f) return Status::ok();
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    json j = json::parse(ss.str());
    if (j.at("version").get<int>() != kStateVersion)
      return corruption(config_.state_path + ": unknown version " + j.at("version").dump());
    for (const auto& a : j.at("attachments")) {
      Attachment att = from_json(a);
      attachments_[att.name] = std::move(att);
    }
  } catch (const json::exception& e) {
    return corruption(config_.state_path + " is damaged (" + e.what() +
                      "); move it aside to start without attachments");
  }
  return Status::ok();
}

Status AttachManager::save() {
  json list = json::array();
  for (const auto& [name, a] : attachments_) list.push_back(to_json(a));
  json j = {{"version", kStateVersion}, {"attachments", list}};
  return write_file_atomically(config_.state_path, j.dump(2) + "\n");
}

Frontend* AttachManager::frontend_named(const std::string& name) {
  for (auto& f : frontends_)
    if (f->name() == name) return f.get();
  return nullptr;
}

Result<AttachManager::Pick> AttachManager::pick_frontend() {
  std::string why;
  for (auto& f : frontends_) {
    Status s = f->available();
    if (s.is_ok()) return Pick{f.get(), why};
    why += (why.empty() ? "" : "; ") + f->name() + ": " + s.message();
  }
  return unsupported("no way to attach a volume on this host: " + why);
}

Result<std::string> AttachManager::preferred_frontend() {
  PXD_TRY(Pick pick, pick_frontend());
  if (pick.passed_over.empty()) return pick.frontend->name();
  return pick.frontend->name() + " (" + pick.passed_over + ")";
}

Status AttachManager::link_device(const Attachment& att) {
  std::error_code ec;
  std::filesystem::remove(att.link, ec);
  std::filesystem::create_symlink(att.device, att.link, ec);
  if (ec) return io_error("link " + att.link + " -> " + att.device + ": " + ec.message());
  return Status::ok();
}

void AttachManager::unlink_device(const Attachment& att) {
  std::error_code ec;
  if (std::filesystem::is_symlink(att.link, ec)) std::filesystem::remove(att.link, ec);
}

Result<Attachment*> AttachManager::attach_locked(const AttachTarget& target) {
  auto it = attachments_.find(target.name);
  if (it != attachments_.end() && it->second.error.empty()) return &it->second;
  if (it != attachments_.end()) {
    // A failed re-establishment: clear what is left and start over.
    if (Frontend* f = frontend_named(it->second.frontend)) (void)f->detach(it->second, true);
    unlink_device(it->second);
    attachments_.erase(it);
  }
  PXD_TRY(Pick pick, pick_frontend());
  Frontend* frontend = pick.frontend;
  Attachment att;
  att.volume_id = target.volume_id;
  att.name = target.name;
  att.read_only = target.read_only;
  att.block_size = target.block_size;
  att.frontend = frontend->name();
  att.link = config_.device_dir + "/pxd" + std::to_string(target.volume_id);
  att.device_size_bytes = target.size_bytes;
  PXD_RETURN_IF_ERROR(frontend->attach(target, att));
  Status s = link_device(att);
  if (s.is_ok()) {
    attachments_[att.name] = att;
    s = save();
    if (!s.is_ok()) attachments_.erase(att.name);
  }
  if (!s.is_ok()) {
    unlink_device(att);
    (void)frontend->detach(att, true);
    return s;
  }
  PXD_LOG(kInfo) << "attached '" << att.name << "' as " << att.link << " -> " << att.device << " ("
                 << att.frontend << (pick.passed_over.empty() ? "" : "; not " + pick.passed_over)
                 << ")";
  return &attachments_[target.name];
}

Result<Attachment> AttachManager::attach(const AttachTarget& target) {
  std::lock_guard<std::mutex> lock(mu_);
  PXD_TRY(Attachment * att, attach_locked(target));
  return *att;
}

Status AttachManager::detach_locked(const std::string& name, bool force) {
  auto it = attachments_.find(name);
  if (it == attachments_.end()) return Status::ok();
  Attachment& att = it->second;
  if (!att.mounts.empty() && !force) {
    std::string paths;
    for (const auto& [path, m] : att.mounts) paths += (paths.empty() ? "" : ", ") + path;
    return busy("'" + name + "' is mounted at " + paths +
                "; unmount it first or detach with --force");
  }
  for (const auto& [path, m] : att.mounts) {
    Status s = unmount_ordered(path, /*lazy=*/true);
    if (!s.is_ok()) PXD_LOG(kWarn) << "forced detach of '" << name << "': " << s.message();
  }
  att.mounts.clear();
  if (Frontend* f = frontend_named(att.frontend)) {
    Status s = f->detach(att, force);
    if (!s.is_ok()) {
      (void)save();  // the mounts are gone even if the device stays
      return s;
    }
  }
  unlink_device(att);
  PXD_LOG(kInfo) << "detached '" << name << "'";
  attachments_.erase(it);
  return save();
}

Status AttachManager::detach(const std::string& name, bool force) {
  std::lock_guard<std::mutex> lock(mu_);
  if (attachments_.count(name) == 0) return failed_precondition("'" + name + "' is not attached");
  return detach_locked(name, force);
}

Result<MountResult> AttachManager::mount(const AttachTarget& target, const std::string& path_in,
                                         const std::string& fs) {
  PXD_TRY(std::string path, clean_mount_path(path_in));
  PXD_RETURN_IF_ERROR(check_fs_type(fs));
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, other] : attachments_)
    if (name != target.name && other.mounts.count(path))
      return busy(path + " already has volume '" + name + "' mounted");
  const bool was_attached = attachments_.count(target.name) != 0;
  PXD_TRY(Attachment * att, attach_locked(target));
  MountResult result;
  auto undo_attach = [&] {
    if (!was_attached) (void)detach_locked(target.name, true);
  };
  if (auto m = att->mounts.find(path); m != att->mounts.end()) {
    ++m->second.refs;
    PXD_RETURN_IF_ERROR(save());
    result.attachment = *att;
    result.fs = m->second.fs;
    return result;
  }
  if (is_mounted_at(path)) {
    undo_attach();
    return busy(path + " is already a mount point of something else");
  }
  auto found = probe_fs(att->device);
  if (!found.has_value()) {
    undo_attach();
    return found.error();
  }
  std::string have = found.value();
  if (have.empty()) {
    if (fs == "none" || att->read_only) {
      undo_attach();
      return failed_precondition("'" + target.name + "' has no filesystem" +
                                 (att->read_only ? "" : " (its filesystem is 'none')") +
                                 "; it can be attached as a raw device but not mounted");
    }
    PXD_LOG(kInfo) << "making " << fs << " on '" << target.name << "' (first mount)";
    Status s = make_fs(att->device, fs);
    if (!s.is_ok()) {
      undo_attach();
      return s;
    }
    have = fs;
    result.made_fs = true;
  } else if (have != "ext4" && have != "xfs") {
    undo_attach();
    return failed_precondition("'" + target.name + "' holds " + have +
                               ", which pxd does not mount");
  }
  Status s = mount_ordered(att->device, path, have, att->read_only);
  if (!s.is_ok()) {
    undo_attach();
    return s;
  }
  att->mounts[path] = {have, 1};
  if (!was_attached) att->attached_by_mount = true;
  PXD_RETURN_IF_ERROR(save());
  PXD_LOG(kInfo) << "mounted '" << target.name << "' (" << have << ") at " << path;
  result.attachment = *att;
  result.fs = have;
  return result;
}

Result<Attachment> AttachManager::unmount(const std::string& name, const std::string& path_in) {
  PXD_TRY(std::string path, clean_mount_path(path_in));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = attachments_.find(name);
  if (it == attachments_.end() || it->second.mounts.count(path) == 0)
    return failed_precondition("'" + name + "' is not mounted at " + path);
  Attachment& att = it->second;
  MountRecord& m = att.mounts[path];
  if (m.refs > 1) {
    --m.refs;
    PXD_RETURN_IF_ERROR(save());
    return att;
  }
  PXD_RETURN_IF_ERROR(unmount_ordered(path, /*lazy=*/false));
  att.mounts.erase(path);
  PXD_LOG(kInfo) << "unmounted '" << name << "' from " << path;
  if (att.mounts.empty() && att.attached_by_mount) {
    Attachment copy = att;
    PXD_RETURN_IF_ERROR(detach_locked(name, false));
    copy.device.clear();
    return copy;
  }
  PXD_RETURN_IF_ERROR(save());
  return att;
}

Status AttachManager::resize(const std::string& name, uint64_t size_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = attachments_.find(name);
  if (it == attachments_.end() || !it->second.error.empty()) return Status::ok();
  Attachment& att = it->second;
  if (att.device_size_bytes == size_bytes) return Status::ok();
  Frontend* f = frontend_named(att.frontend);
  if (f == nullptr) return unsupported("unknown frontend '" + att.frontend + "'");
  Status s = f->resize(att, size_bytes);
  Status saved = save();
  PXD_RETURN_IF_ERROR(s);
  return saved;
}

void AttachManager::shutdown(bool detach_all) {
  std::lock_guard<std::mutex> lock(mu_);
  if (detach_all) {
    std::vector<std::string> names;
    for (const auto& [name, a] : attachments_) names.push_back(name);
    for (const std::string& name : names) {
      Attachment& att = attachments_[name];
      // Unmount for real (not lazily): a filesystem still in use keeps its volume attached
      // and recoverable rather than losing its device under it.
      bool unmounted = true;
      for (auto m = att.mounts.begin(); m != att.mounts.end();) {
        Status s = unmount_ordered(m->first, /*lazy=*/false);
        if (!s.is_ok()) {
          PXD_LOG(kWarn) << "stopping: '" << name << "' stays attached: " << s.message();
          unmounted = false;
          ++m;
          continue;
        }
        m = att.mounts.erase(m);
      }
      if (!unmounted) continue;
      Status s = detach_locked(name, /*force=*/false);
      if (!s.is_ok()) PXD_LOG(kWarn) << "stopping: detach '" << name << "': " << s.message();
    }
    Status s = save();
    if (!s.is_ok()) PXD_LOG(kError) << "saving attachments: " << s.message();
  }
  for (auto& f : frontends_) f->release_all();
}

std::optional<Attachment> AttachManager::find(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = attachments_.find(name);
  if (it == attachments_.end()) return std::nullopt;
  return it->second;
}

std::vector<Attachment> AttachManager::list() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Attachment> out;
  for (const auto& [name, a] : attachments_) out.push_back(a);
  return out;
}

void AttachManager::reconcile(
    const std::function<std::optional<AttachTarget>(const Attachment&)>& lookup) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, a] : attachments_) names.push_back(name);
  for (const std::string& name : names) {
    Attachment& att = attachments_[name];
    Frontend* frontend = frontend_named(att.frontend);
    std::optional<AttachTarget> target = lookup(att);
    if (!target) {
      PXD_LOG(kWarn) << "'" << name << "' was attached but no longer exists; tearing down";
      for (const auto& [path, m] : att.mounts) (void)unmount_ordered(path, true);
      if (frontend) (void)frontend->detach(att, true);
      unlink_device(att);
      attachments_.erase(name);
      continue;
    }
    Status adopted = frontend ? frontend->adopt(*target, att)
                              : not_found("unknown frontend '" + att.frontend + "'");
    if (adopted.is_ok()) {
      Status s = link_device(att);
      if (!s.is_ok()) PXD_LOG(kWarn) << s.message();
      PXD_LOG(kInfo) << "re-adopted '" << name << "' at " << att.link << " -> " << att.device;
      continue;
    }
    PXD_LOG(kWarn) << "'" << name << "' cannot be re-adopted (" << adopted.message()
                   << "); attaching it anew";
    // Gone (a reboot) or broken: clear what is left, then attach and mount again.
    std::map<std::string, MountRecord> mounts = att.mounts;
    bool by_mount = att.attached_by_mount;
    for (const auto& [path, m] : mounts)
      if (is_mounted_at(path)) (void)unmount_ordered(path, true);
    if (frontend) (void)frontend->detach(att, true);
    unlink_device(att);
    attachments_.erase(name);
    auto fresh = attach_locked(*target);
    if (!fresh.has_value()) {
      PXD_LOG(kError) << "could not re-attach '" << name << "': " << fresh.error().message();
      Attachment record;
      record.volume_id = target->volume_id;
      record.name = name;
      record.read_only = target->read_only;
      record.block_size = target->block_size;
      record.frontend = frontend ? frontend->name() : "";
      record.link = config_.device_dir + "/pxd" + std::to_string(target->volume_id);
      record.mounts = mounts;
      record.attached_by_mount = by_mount;
      record.error = fresh.error().message();
      attachments_[name] = record;
      continue;
    }
    Attachment* now = fresh.value();
    now->attached_by_mount = by_mount;
    for (const auto& [path, m] : mounts) {
      Status s = mount_ordered(now->device, path, m.fs, now->read_only);
      if (!s.is_ok()) {
        PXD_LOG(kError) << "could not re-mount '" << name << "' at " << path << ": " << s.message();
        now->error = s.message();
        continue;
      }
      now->mounts[path] = m;
    }
    PXD_LOG(kInfo) << "re-attached '" << name << "' at " << now->link;
  }
  std::vector<Attachment> known;
  for (const auto& [name, a] : attachments_) known.push_back(a);
  for (auto& f : frontends_) f->remove_stale(known);
  // Links to devices the state does not name.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(config_.device_dir, ec)) {
    std::string fname = entry.path().filename();
    if (fname.size() <= 3 || fname.rfind("pxd", 0) != 0 ||
        fname.find_first_not_of("0123456789", 3) != std::string::npos || !entry.is_symlink(ec))
      continue;
    bool ours = false;
    for (const auto& a : known) ours |= a.link == entry.path().string();
    if (!ours) {
      PXD_LOG(kInfo) << "removing stale link " << entry.path().string();
      std::filesystem::remove(entry.path(), ec);
    }
  }
  Status s = save();
  if (!s.is_ok()) PXD_LOG(kError) << "saving attachments: " << s.message();
}

}  // namespace pxd::daemon
