#include "tools/docker-plugin/mount_ids.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"

namespace pxd::docker {
namespace {

using Json = nlohmann::json;
constexpr int kVersion = 1;

}  // namespace

std::string current_boot_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(f, id);
  return id;
}

Result<MountIds> MountIds::load(const std::string& path, const std::string& boot_id) {
  MountIds ids(path, boot_id);
  std::ifstream f(path);
  if (!f) return ids;
  std::stringstream text;
  text << f.rdbuf();
  try {
    Json j = Json::parse(text.str());
    if (j.at("version").get<int>() != kVersion)
      return corruption(path + ": unknown version " + j.at("version").dump());
    std::map<std::string, std::set<std::string>> volumes;
    for (const auto& [name, list] : j.at("volumes").items()) {
      for (const auto& id : list) volumes[name].insert(id.get<std::string>());
    }
    if (j.at("boot_id").get<std::string>() != boot_id) {
      ids.dropped_old_boot_ = !volumes.empty();
      PXD_RETURN_IF_ERROR(ids.save({}));
    } else {
      ids.volumes_ = std::move(volumes);
    }
  } catch (const Json::exception& e) {
    return corruption(path + " is damaged (" + e.what() +
                      "); move it aside to start with no Docker mounts counted");
  }
  return ids;
}

bool MountIds::contains(const std::string& volume, const std::string& id) const {
  auto it = volumes_.find(volume);
  return it != volumes_.end() && it->second.count(id) > 0;
}

size_t MountIds::count(const std::string& volume) const {
  auto it = volumes_.find(volume);
  return it == volumes_.end() ? 0 : it->second.size();
}

std::vector<std::string> MountIds::volumes() const {
  std::vector<std::string> names;
  for (const auto& [name, set] : volumes_) names.push_back(name);
  return names;
}

Status MountIds::add(const std::string& volume, const std::string& id) {
  auto next = volumes_;
  next[volume].insert(id);
  PXD_RETURN_IF_ERROR(save(next));
  volumes_ = std::move(next);
  return Status::ok();
}

Status MountIds::remove(const std::string& volume, const std::string& id) {
  auto next = volumes_;
  auto it = next.find(volume);
  if (it == next.end() || it->second.erase(id) == 0) return Status::ok();
  if (it->second.empty()) next.erase(it);
  PXD_RETURN_IF_ERROR(save(next));
  volumes_ = std::move(next);
  return Status::ok();
}

Status MountIds::drop(const std::string& volume) {
  if (!volumes_.count(volume)) return Status::ok();
  auto next = volumes_;
  next.erase(volume);
  PXD_RETURN_IF_ERROR(save(next));
  volumes_ = std::move(next);
  return Status::ok();
}

Status MountIds::save(const std::map<std::string, std::set<std::string>>& volumes) const {
  Json list = Json::object();
  for (const auto& [name, set] : volumes) list[name] = set;
  Json j = {{"version", kVersion}, {"boot_id", boot_id_}, {"volumes", list}};
  std::string text;
  try {
    text = j.dump(2) + "\n";
  } catch (const Json::exception& e) {
    return invalid_argument(std::string("cannot record the mount: ") + e.what());
  }
  return write_file_atomically(path_, text);
}

}  // namespace pxd::docker
