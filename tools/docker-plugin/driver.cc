#include "tools/docker-plugin/driver.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/units.h"

namespace pxd::docker {
namespace {

struct LogTaskErrors : kj::TaskSet::ErrorHandler {
  void taskFailed(kj::Exception&& e) override {
    PXD_LOG(kError) << "docker plugin: a call failed: " << e.getDescription().cStr();
  }
};

Reply ok(std::string body) {
  return {200, std::move(body)};
}

Reply failed(const Status& status) {
  return {500, error_body(status.message())};
}

bool mounted_at(const VolumeInfo& v, const std::string& path) {
  return std::find(v.mounts.begin(), v.mounts.end(), path) != v.mounts.end();
}

// Docker mounts volumes, not snapshots or raw devices: say what to do instead.
Status check_mountable(const VolumeInfo& v) {
  if (v.is_snapshot)
    return failed_precondition("'" + v.name +
                               "' is a snapshot; Docker mounts volumes: create one from it "
                               "with --opt parent=" +
                               v.name);
  return Status::ok();
}

Status raw_volume_error(const VolumeInfo& v, const Status& why) {
  return failed_precondition(
      why.message() + ". Docker volumes are mounted filesystems; for the raw device run " +
      "'pxctl host attach " + v.name + "' and 'docker run --device /dev/pxd" +
      std::to_string(v.id) + " ...', or create the volume with fs=ext4 or fs=xfs");
}

std::string labels_text(const Labels& labels) {
  std::string text;
  for (const auto& [k, v] : labels) text += (text.empty() ? "" : ",") + k + "=" + v;
  return text;
}

// Docker copies an image's files (and the directory's owner) into a volume only when the
// volume is empty; a fresh ext4 holds lost+found, which would leave a root-owned, empty
// volume. e2fsck re-creates it when it needs it.
void remove_lost_found(const std::string& mountpoint) {
  std::string dir = mountpoint + "/lost+found";
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT)
    PXD_LOG(kWarn) << "docker plugin: cannot remove " << dir << ": " << std::strerror(errno);
}

}  // namespace

Driver::Driver(VolumeService& service, MountIds& ids, std::string mount_root)
    : service_(service),
      ids_(ids),
      mount_root_(std::move(mount_root)),
      errors_(kj::heap<LogTaskErrors>()),
      tasks_(*errors_) {}

Driver::~Driver() = default;

kj::Promise<Reply> Driver::handle(Endpoint endpoint, std::string body) {
  auto parsed = parse_request(endpoint, body);
  if (parsed.has_error()) return Reply{400, error_body(parsed.error().message())};
  ++in_flight_;
  kj::Promise<Reply> work =
      kj::evalLater([this, endpoint, request = std::move(parsed).value()]() mutable {
        return dispatch(endpoint, std::move(request));
      }).catch_([](kj::Exception&& e) {
        return Reply{500, error_body(std::string("pxd's Docker plugin failed: ") +
                                     e.getDescription().cStr())};
      });
  auto forked = work.attach(kj::defer([this] { --in_flight_; })).fork();
  tasks_.add(forked.addBranch().ignoreResult());
  return forked.addBranch();
}

kj::Promise<Reply> Driver::dispatch(Endpoint endpoint, Request request) {
  switch (endpoint) {
    case Endpoint::kActivate:
      return ok(activate_body());
    case Endpoint::kCapabilities:
      return ok(capabilities_body());
    case Endpoint::kList:
      return list();
    case Endpoint::kCreate:
      return create(std::move(request));
    case Endpoint::kRemove:
      return remove(std::move(request));
    case Endpoint::kMount:
      return mount(std::move(request));
    case Endpoint::kUnmount:
      return unmount(std::move(request));
    case Endpoint::kPath:
      return path(std::move(request));
    case Endpoint::kGet:
      return get(std::move(request));
  }
  return Reply{404, error_body("unknown endpoint")};
}

kj::Promise<Reply> Driver::serialized(const std::string& volume,
                                      kj::Function<kj::Promise<Reply>()> work) {
  Lane& lane = lanes_[volume];
  kj::Promise<void> turn = nullptr;
  if (!lane.busy) {
    lane.busy = true;
    turn = kj::READY_NOW;
  } else {
    auto paf = kj::newPromiseAndFulfiller<void>();
    lane.waiting.push_back(kj::mv(paf.fulfiller));
    turn = kj::mv(paf.promise);
  }
  return turn.then([this, volume, work = kj::mv(work)]() mutable {
    auto done = kj::defer([this, volume] { release(volume); });
    return work().attach(kj::mv(done));
  });
}

void Driver::release(const std::string& volume) {
  auto it = lanes_.find(volume);
  if (it == lanes_.end()) return;
  Lane& lane = it->second;
  while (!lane.waiting.empty()) {
    auto next = kj::mv(lane.waiting.front());
    lane.waiting.pop_front();
    if (next->isWaiting()) {
      next->fulfill();
      return;  // the lane stays busy: it is that call's turn
    }
  }
  lanes_.erase(it);
}

// ---- Create ----

kj::Promise<Reply> Driver::create(Request request) {
  auto parsed = parse_create_options(request.name, request.opts);
  if (parsed.has_error()) return failed(parsed.error());
  CreateOptions options = std::move(parsed).value();
  std::string name = options.name;
  return serialized(name, [this, options = std::move(options)]() mutable {
    return options.parent.empty() ? create_plain(std::move(options))
                                  : create_clone(std::move(options));
  });
}

kj::Promise<Reply> Driver::create_plain(CreateOptions o) {
  return service_.inspect(o.name).then([this, o](Result<VolumeInfo> found) -> kj::Promise<Reply> {
    VolumeSpec spec;
    spec.name = o.name;
    if (found.has_value()) {
      const VolumeInfo& v = found.value();
      PXD_LOG(kDebug) << "docker plugin: create of existing '" << o.name << "'";
      if (v.is_snapshot) return failed(check_mountable(v));
      // Docker creates a volume it has not seen before on first use, with no options:
      // an existing pxd volume (made with pxctl, say) is simply adopted.
      if (!o.has_spec()) return ok(empty_body());
      // Otherwise pxd compares, as for any repeated create, and says what differs.
      spec.size_bytes = v.size_bytes;
      spec.block_size = v.block_size;
      spec.fs = v.fs;
      spec.labels = v.labels;
      spec.replicas = v.replicas;
    } else if (found.error().code() != StatusCode::kNotFound) {
      return failed(found.error());
    } else {
      spec.size_bytes = kDefaultSizeBytes;
    }
    if (o.size_bytes) spec.size_bytes = *o.size_bytes;
    if (o.block_size) spec.block_size = *o.block_size;
    if (o.fs) spec.fs = *o.fs;
    if (!o.labels.empty()) spec.labels = o.labels;
    if (o.replicas) spec.replicas = *o.replicas;
    return service_.create(std::move(spec)).then([name = o.name](Result<VolumeInfo> made) {
      if (made.has_error()) return failed(made.error());
      PXD_LOG(kInfo) << "docker plugin: created '" << name << "'";
      return ok(empty_body());
    });
  });
}

kj::Promise<Reply> Driver::create_clone(CreateOptions o) {
  return service_.inspect(o.name).then([this,
                                        o](Result<VolumeInfo> existing) -> kj::Promise<Reply> {
    if (existing.has_value()) {
      const VolumeInfo& v = existing.value();
      if (!v.is_snapshot && v.parent == o.parent) return ok(empty_body());
      return failed(already_exists("the name '" + o.name + "' is taken by " +
                                   (v.is_snapshot ? "a snapshot" : "a volume") +
                                   (v.parent.empty() ? "" : " made from '" + v.parent + "'")));
    }
    if (existing.error().code() != StatusCode::kNotFound) return failed(existing.error());
    return service_.inspect(o.parent).then([this,
                                            o](Result<VolumeInfo> source) -> kj::Promise<Reply> {
      if (source.has_error()) {
        if (source.error().code() == StatusCode::kNotFound)
          return failed(not_found("parent '" + o.parent + "' is neither a volume nor a snapshot"));
        return failed(source.error());
      }
      const VolumeInfo& src = source.value();
      if (o.fs && *o.fs != src.fs)
        return failed(invalid_argument("a clone keeps its parent's filesystem (" + src.fs +
                                       "), not " + *o.fs));
      if (o.block_size && *o.block_size != src.block_size)
        return failed(invalid_argument("a clone keeps its parent's block size (" +
                                       std::to_string(src.block_size) + ")"));
      if (o.replicas && *o.replicas != src.replicas)
        return failed(invalid_argument("a clone keeps its parent's replica count (" +
                                       std::to_string(src.replicas) + ")"));
      if (o.size_bytes && *o.size_bytes < src.size_bytes)
        return failed(invalid_argument("a clone cannot be smaller than its parent '" + o.parent +
                                       "' (" + format_size(src.size_bytes) + ")"));
      bool grow = o.size_bytes && *o.size_bytes > src.size_bytes;
      return service_.clone(o.parent, o.name, o.labels)
          .then([this, o, grow](Result<VolumeInfo> made) -> kj::Promise<Reply> {
            if (made.has_error()) return failed(made.error());
            PXD_LOG(kInfo) << "docker plugin: created '" << o.name << "' from '" << o.parent << "'";
            if (!grow) return ok(empty_body());
            return service_.resize(o.name, *o.size_bytes)
                .then([this, name = o.name](Result<VolumeInfo> resized) -> kj::Promise<Reply> {
                  if (resized.has_value()) return ok(empty_body());
                  // Changes nothing: the clone goes again.
                  Status why = resized.error();
                  return service_.remove(name).then([why](Status) { return failed(why); });
                });
          });
    });
  });
}

// ---- Remove ----

kj::Promise<Reply> Driver::remove(Request request) {
  auto name = volume_name(request.name);
  if (name.has_error()) return failed(name.error());
  return serialized(name.value(), [this, name = name.value()]() -> kj::Promise<Reply> {
    kj::Promise<Status> holders = Status::ok();
    if (ids_.count(name) > 0) {
      // IDs whose mount is gone (released with pxctl after dockerd lost its containers)
      // hold nothing: forget them rather than refuse forever.
      holders = service_.inspect(name).then([this, name](Result<VolumeInfo> found) {
        if (found.has_value() && mounted_at(found.value(), mount_path(name)))
          return busy("volume '" + name + "' is mounted for " + std::to_string(ids_.count(name)) +
                      " container(s)");
        PXD_LOG(kWarn) << "docker plugin: forgetting the mount IDs of '" << name
                       << "', which is no longer mounted for Docker";
        return ids_.drop(name);
      });
    }
    return holders.then([this, name](Status held) -> kj::Promise<Reply> {
      if (!held.is_ok()) return failed(held);
      return service_.remove(name).then([name](Status s) {
        if (!s.is_ok()) return failed(s);
        PXD_LOG(kInfo) << "docker plugin: removed '" << name << "'";
        return ok(empty_body());
      });
    });
  });
}

// ---- Mount and Unmount ----

kj::Promise<Reply> Driver::mount(Request request) {
  auto name = volume_name(request.name);
  if (name.has_error()) return failed(name.error());
  return serialized(name.value(), [this, name = name.value(), id = request.id]() {
    return service_.inspect(name).then([this, name,
                                        id](Result<VolumeInfo> found) -> kj::Promise<Reply> {
      if (found.has_error()) return failed(found.error());
      VolumeInfo v = found.value();
      if (Status s = check_mountable(v); !s.is_ok()) return failed(s);
      std::string path = mount_path(name);
      bool mounted = mounted_at(v, path);
      if (mounted && ids_.contains(name, id)) return ok(mountpoint_body(path));  // a retry
      kj::Promise<Result<bool>> ready = Result<bool>(false);
      if (!mounted) {
        // IDs without a mount (released behind Docker's back) would keep this new mount
        // from ever being undone.
        if (ids_.count(name) > 0) {
          PXD_LOG(kWarn) << "docker plugin: forgetting the mount IDs of '" << name
                         << "', which is no longer mounted for Docker";
          if (Status s = ids_.drop(name); !s.is_ok()) return failed(s);
        }
        ready =
            service_.mount(name, path)
                .then([v, path](Result<std::pair<VolumeInfo, bool>> done) -> Result<bool> {
                  if (done.has_error()) {
                    if (v.fs == "none" && done.error().code() == StatusCode::kFailedPrecondition)
                      return raw_volume_error(v, done.error());
                    return done.error();
                  }
                  if (done.value().second) remove_lost_found(path);
                  return true;
                });
      }
      return ready.then([this, name, id, path](Result<bool> made) -> kj::Promise<Reply> {
        if (made.has_error()) return failed(made.error());
        Status saved = ids_.add(name, id);
        if (saved.is_ok()) {
          PXD_LOG(kInfo) << "docker plugin: mounted '" << name << "' at " << path << " for "
                         << id.substr(0, 12) << " (" << ids_.count(name) << " in use)";
          return ok(mountpoint_body(path));
        }
        if (!made.value()) return failed(saved);
        return service_.unmount(name, path).then([saved](Result<VolumeInfo>) {
          return failed(saved);
        });
      });
    });
  });
}

kj::Promise<Reply> Driver::unmount(Request request) {
  auto name = volume_name(request.name);
  if (name.has_error()) return failed(name.error());
  return serialized(
      name.value(), [this, name = name.value(), id = request.id]() -> kj::Promise<Reply> {
        if (!ids_.contains(name, id)) {
          // Docker retries an Unmount it saw fail; a second one must not end someone else's use.
          PXD_LOG(kWarn) << "docker plugin: unmount of '" << name << "' by " << id.substr(0, 12)
                         << ", which holds no mount of it";
          return ok(empty_body());
        }
        if (ids_.count(name) > 1) {
          Status s = ids_.remove(name, id);
          return s.is_ok() ? ok(empty_body()) : failed(s);
        }
        return service_.inspect(name).then(
            [this, name, id](Result<VolumeInfo> found) -> kj::Promise<Reply> {
              std::string path = mount_path(name);
              bool gone = found.has_error() && found.error().code() == StatusCode::kNotFound;
              if (found.has_error() && !gone) return failed(found.error());
              kj::Promise<Status> undone = Status::ok();
              if (!gone && mounted_at(found.value(), path)) {
                undone = service_.unmount(name, path).then([](Result<VolumeInfo> r) {
                  return r.has_error() ? r.error() : Status::ok();
                });
              }
              return undone.then([this, name, id, path](Status s) {
                if (!s.is_ok()) return failed(s);  // the ID stays: Docker may try again
                ::rmdir(path.c_str());
                PXD_LOG(kInfo) << "docker plugin: unmounted '" << name << "' (last user "
                               << id.substr(0, 12) << ")";
                Status saved = ids_.remove(name, id);
                return saved.is_ok() ? ok(empty_body()) : failed(saved);
              });
            });
      });
}

// ---- Path, Get, List ----

kj::Promise<Reply> Driver::path(Request request) {
  auto name = volume_name(request.name);
  if (name.has_error()) return failed(name.error());
  return service_.inspect(name.value()).then([this, name = name.value()](Result<VolumeInfo> found) {
    if (found.has_error()) return failed(found.error());
    std::string path = mount_path(name);
    return ok(mountpoint_body(mounted_at(found.value(), path) ? path : ""));
  });
}

kj::Promise<Reply> Driver::get(Request request) {
  auto name = volume_name(request.name);
  if (name.has_error()) return failed(name.error());
  return service_.inspect(name.value())
      .then([this, docker_name = request.name, name = name.value()](Result<VolumeInfo> found) {
        if (found.has_error()) return failed(found.error());
        const VolumeInfo& v = found.value();
        if (Status s = check_mountable(v); !s.is_ok()) return failed(s);
        std::string path = mount_path(name);
        VolumeEntry e;
        e.name = docker_name;
        e.mountpoint = mounted_at(v, path) ? path : "";
        e.created_unix = v.created_unix;
        e.status = {{"name", v.name},
                    {"id", std::to_string(v.id)},
                    {"size", format_size(v.size_bytes)},
                    {"size_bytes", std::to_string(v.size_bytes)},
                    {"fs", v.fs},
                    {"block_size", std::to_string(v.block_size)},
                    {"replicas", std::to_string(v.replicas)},
                    {"state", v.state},
                    {"docker_mounts", std::to_string(ids_.count(name))}};
        if (!v.device_path.empty()) e.status["device"] = v.device_path;
        if (!v.parent.empty()) e.status["parent"] = v.parent;
        if (!v.labels.empty()) e.status["labels"] = labels_text(v.labels);
        return ok(get_body(e));
      });
}

kj::Promise<Reply> Driver::list() {
  return service_.list().then([this](Result<std::vector<VolumeInfo>> found) {
    if (found.has_error()) return failed(found.error());
    std::vector<VolumeEntry> entries;
    for (const auto& v : found.value()) {
      if (v.is_snapshot) continue;
      std::string path = mount_path(v.name);
      entries.push_back({v.name, mounted_at(v, path) ? path : "", v.created_unix, {}});
    }
    return ok(list_body(entries));
  });
}

// ---- Start ----

kj::Promise<void> Driver::reconcile() {
  return service_.list().then([this](Result<std::vector<VolumeInfo>> found) -> kj::Promise<void> {
    if (found.has_error()) {
      PXD_LOG(kWarn) << "docker plugin: cannot check mounts at start: " << found.error().message();
      return kj::READY_NOW;
    }
    std::map<std::string, const VolumeInfo*> by_name;
    for (const auto& v : found.value()) by_name[v.name] = &v;
    for (const std::string& name : ids_.volumes()) {
      auto it = by_name.find(name);
      if (it != by_name.end() && mounted_at(*it->second, mount_path(name))) continue;
      PXD_LOG(kWarn) << "docker plugin: '" << name << "' is no longer mounted for Docker; "
                     << "forgetting its " << ids_.count(name) << " mount ID(s)";
      Status s = ids_.drop(name);
      if (!s.is_ok()) PXD_LOG(kError) << "docker plugin: " << s.message();
    }
    std::vector<std::string> orphans;
    for (const auto& v : found.value()) {
      if (mounted_at(v, mount_path(v.name)) && ids_.count(v.name) == 0) orphans.push_back(v.name);
    }
    return reconcile_unmount(std::move(orphans), 0);
  });
}

kj::Promise<void> Driver::reconcile_unmount(std::vector<std::string> names, size_t next) {
  if (next >= names.size()) return kj::READY_NOW;
  std::string name = names[next];
  std::string path = mount_path(name);
  PXD_LOG(kInfo) << "docker plugin: unmounting '" << name << "': no container holds it";
  return service_.unmount(name, path)
      .then([this, names = std::move(names), next, name, path](Result<VolumeInfo> r) mutable {
        if (r.has_error()) {
          PXD_LOG(kWarn) << "docker plugin: cannot unmount '" << name
                         << "': " << r.error().message();
        } else {
          ::rmdir(path.c_str());
        }
        return reconcile_unmount(std::move(names), next + 1);
      });
}

}  // namespace pxd::docker
