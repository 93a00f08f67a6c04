// tests/integration/docker_engine.h: a real, private Docker engine for tests.
//
// DockerEngine runs Debian's dockerd on paths of its own (data-root, exec-root, API
// socket, pidfile, containerd namespace) with no networking, under `setpriv --pdeathsig`
// so that it dies with the test even if the test is killed; stop() (also run by the
// destructor) removes every container, stops dockerd (SIGTERM, then SIGKILL of it and the
// containerd it started) and lazily unmounts whatever it left under its directory.
// PluginSpec registers a volume plugin socket with Docker under a unique name (a spec file
// in /etc/docker/plugins, which every dockerd on the host reads), removed on destruction,
// with the leftovers of dead test processes removed first.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tests/integration/process.h"

namespace pxd::testing {

class DockerEngine {
 public:
  // `dir`: a private directory; keep it short (containerd's socket path goes under it).
  explicit DockerEngine(std::string dir);
  ~DockerEngine();
  DockerEngine(const DockerEngine&) = delete;
  DockerEngine& operator=(const DockerEngine&) = delete;

  // "" once the engine answers; otherwise why it cannot run here.
  std::string start(std::chrono::seconds timeout = std::chrono::seconds(60));
  // The docker CLI (Debian's, matching the engine) against this engine.
  RunResult docker(const std::vector<std::string>& args,
                   std::chrono::seconds timeout = std::chrono::seconds(120));
  // Imports `tag`: busybox-static with its applets in /bin, PATH=/bin, and /home/app owned
  // by uid and gid 1000, mode 0750. Empty on success, else the error.
  std::string import_busybox(const std::string& tag);
  void stop();
  std::string log() const;

 private:
  std::string dir_, socket_, log_path_, namespace_;
  Child dockerd_;
};

class PluginSpec {
 public:
  // Registers `socket` as plugin `<prefix>-<pid>`.
  PluginSpec(const std::string& prefix, const std::string& socket);
  ~PluginSpec();
  PluginSpec(const PluginSpec&) = delete;
  PluginSpec& operator=(const PluginSpec&) = delete;
  const std::string& name() const { return name_; }

 private:
  std::string name_, path_;
};

// Lazily unmounts every mount at or below `dir`, deepest first.
void unmount_below(const std::string& dir);

}  // namespace pxd::testing
