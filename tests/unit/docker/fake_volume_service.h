// tests/unit/docker/fake_volume_service.h: pxd's control API in memory, for the Docker
// plugin's unit tests.
//
// It keeps pxd's rules that the plugin relies on: create is idempotent by name and spec,
// names are unique across volumes and snapshots, mounts are counted per path, a mounted
// volume cannot be removed, and a volume with fs "none" and no filesystem cannot be
// mounted. Mounting makes the directory (and a lost+found on the first mount, as mkfs.ext4
// does). Calls complete on a later turn of the event loop, so calls the plugin runs at the
// same time really interleave. State is shared (under a mutex) with the test thread.
#pragma once

#include <kj/async.h>
#include <sys/stat.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/units.h"
#include "tools/docker-plugin/volume_service.h"

namespace pxd::testing {

using docker::VolumeInfo;

struct FakeState {
  std::mutex mu;
  std::map<std::string, VolumeInfo> volumes;                     // GUARDED_BY(mu)
  std::map<std::string, std::map<std::string, int>> mount_refs;  // volume -> path -> refs
  std::map<std::string, bool> has_fs;                            // volume -> a filesystem was made
  std::map<std::string, int> calls;                              // "mount" -> how many
  std::map<std::string, Status> fail_next;  // "mount" -> make the next one fail
  uint64_t next_id = 1;

  // Adds a volume as pxctl would have made it.
  void add(const std::string& name, uint64_t size, const std::string& fs = "ext4") {
    std::lock_guard<std::mutex> lock(mu);
    VolumeInfo v;
    v.id = next_id++;
    v.name = name;
    v.size_bytes = size;
    v.fs = fs;
    v.state = "detached";
    v.created_unix = 1795000000;
    volumes[name] = v;
  }
  int count(const std::string& call) {
    std::lock_guard<std::mutex> lock(mu);
    return calls[call];
  }
  int refs(const std::string& volume) {
    std::lock_guard<std::mutex> lock(mu);
    int n = 0;
    for (auto& [path, r] : mount_refs[volume]) n += r;
    return n;
  }
  std::vector<std::string> names() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::string> out;
    for (auto& [name, v] : volumes) out.push_back(name);
    return out;
  }
};

class FakeVolumeService final : public docker::VolumeService {
 public:
  explicit FakeVolumeService(std::shared_ptr<FakeState> state) : s_(std::move(state)) {}

  kj::Promise<Result<VolumeInfo>> inspect(std::string name) override {
    return later([this, name]() -> Result<VolumeInfo> { return find(name); }, "inspect");
  }

  kj::Promise<Result<std::vector<VolumeInfo>>> list() override {
    return later(
        [this]() -> Result<std::vector<VolumeInfo>> {
          std::vector<VolumeInfo> out;
          for (auto& [name, v] : s_->volumes)
            if (!v.is_snapshot) out.push_back(view(v));
          return out;
        },
        "list");
  }

  kj::Promise<Result<VolumeInfo>> create(docker::VolumeSpec spec) override {
    return later(
        [this, spec]() -> Result<VolumeInfo> {
          auto it = s_->volumes.find(spec.name);
          if (it != s_->volumes.end()) {
            const VolumeInfo& v = it->second;
            if (v.size_bytes != spec.size_bytes)
              return already_exists("volume '" + spec.name + "' exists with size " +
                                    format_size(v.size_bytes) + ", not " +
                                    format_size(spec.size_bytes));
            if (v.fs != spec.fs || v.block_size != spec.block_size || v.labels != spec.labels)
              return already_exists("volume '" + spec.name + "' exists with another spec");
            return view(v);
          }
          if (spec.replicas > 1)
            return unsupported("replication needs a cluster; this node runs alone");
          VolumeInfo v;
          v.id = s_->next_id++;
          v.name = spec.name;
          v.size_bytes = spec.size_bytes;
          v.block_size = spec.block_size;
          v.fs = spec.fs;
          v.labels = spec.labels;
          v.state = "detached";
          v.created_unix = 1795000000;
          s_->volumes[spec.name] = v;
          return view(v);
        },
        "create");
  }

  kj::Promise<Result<VolumeInfo>> clone(std::string source, std::string name,
                                        docker::Labels labels) override {
    return later(
        [this, source, name, labels]() -> Result<VolumeInfo> {
          auto it = s_->volumes.find(source);
          if (it == s_->volumes.end())
            return not_found("volume or snapshot '" + source + "' does not exist");
          if (s_->volumes.count(name)) return already_exists("the name '" + name + "' is taken");
          VolumeInfo v = it->second;
          v.id = s_->next_id++;
          v.name = name;
          v.is_snapshot = false;
          v.labels = labels;
          v.parent = source;
          v.mounts.clear();
          v.state = "detached";
          s_->volumes[name] = v;
          s_->has_fs[name] = s_->has_fs[source];
          return view(v);
        },
        "clone");
  }

  kj::Promise<Result<VolumeInfo>> resize(std::string name, uint64_t size) override {
    return later(
        [this, name, size]() -> Result<VolumeInfo> {
          auto it = s_->volumes.find(name);
          if (it == s_->volumes.end()) return not_found("volume '" + name + "' does not exist");
          if (size < it->second.size_bytes) return invalid_argument("volumes only grow");
          it->second.size_bytes = size;
          return view(it->second);
        },
        "resize");
  }

  kj::Promise<Status> remove(std::string name) override {
    return later(
               [this, name]() -> Result<bool> {
                 auto it = s_->volumes.find(name);
                 if (it == s_->volumes.end())
                   return not_found("volume '" + name + "' does not exist");
                 if (!s_->mount_refs[name].empty())
                   return busy("volume '" + name + "' is attached; detach it first");
                 s_->volumes.erase(it);
                 return true;
               },
               "remove")
        .then([](Result<bool> r) { return r.has_error() ? r.error() : Status::ok(); });
  }

  kj::Promise<Result<std::pair<VolumeInfo, bool>>> mount(std::string name,
                                                         std::string path) override {
    return later(
        [this, name, path]() -> Result<std::pair<VolumeInfo, bool>> {
          auto it = s_->volumes.find(name);
          if (it == s_->volumes.end()) return not_found("volume '" + name + "' does not exist");
          bool made = false;
          if (!s_->has_fs[name]) {
            if (it->second.fs == "none")
              return failed_precondition("'" + name +
                                         "' has no filesystem (its filesystem "
                                         "is 'none'); it can be attached as a raw device but "
                                         "not mounted");
            s_->has_fs[name] = made = true;
          }
          ::mkdir(path.c_str(), 0755);
          if (made) ::mkdir((path + "/lost+found").c_str(), 0700);
          s_->mount_refs[name][path]++;
          return std::make_pair(view(it->second), made);
        },
        "mount");
  }

  kj::Promise<Result<VolumeInfo>> unmount(std::string name, std::string path) override {
    return later(
        [this, name, path]() -> Result<VolumeInfo> {
          auto it = s_->volumes.find(name);
          if (it == s_->volumes.end()) return not_found("volume '" + name + "' does not exist");
          auto& refs = s_->mount_refs[name];
          auto m = refs.find(path);
          if (m == refs.end()) return not_found("'" + name + "' is not mounted at " + path);
          if (--m->second == 0) refs.erase(m);
          if (refs.empty()) s_->mount_refs.erase(name);
          return view(it->second);
        },
        "unmount");
  }

 private:
  // Runs `f` under the state's lock on a later turn (or fails it, if the test asked).
  template <class F>
  auto later(F f, const std::string& call) -> kj::Promise<decltype(f())> {
    using R = decltype(f());
    return kj::evalLater([this, f = std::move(f), call]() mutable -> R {
      std::lock_guard<std::mutex> lock(s_->mu);
      s_->calls[call]++;
      auto fail = s_->fail_next.find(call);
      if (fail != s_->fail_next.end()) {
        Status s = fail->second;
        s_->fail_next.erase(fail);
        return s;
      }
      return f();
    });
  }

  // REQUIRES: s_->mu held.
  Result<VolumeInfo> find(const std::string& name) {
    auto it = s_->volumes.find(name);
    if (it == s_->volumes.end()) return not_found("volume '" + name + "' does not exist");
    return view(it->second);
  }

  // REQUIRES: s_->mu held.
  VolumeInfo view(VolumeInfo v) {
    v.mounts.clear();
    auto refs = s_->mount_refs.find(v.name);
    if (refs != s_->mount_refs.end())
      for (auto& [path, n] : refs->second) v.mounts.push_back(path);
    v.state = v.mounts.empty() ? "detached" : "mounted";
    return v;
  }

  std::shared_ptr<FakeState> s_;
};

}  // namespace pxd::testing
