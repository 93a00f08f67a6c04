// bench/peer_targets.h: the NBD servers `pxbench peers` measures (pxd's own server in this
// process; qemu-nbd and nbdkit as child processes, stopped with their objects) and the fio
// runs against them.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "bench/bench_pool.h"
#include "nbd/server.h"

extern char** environ;

namespace pxd::bench {

// Runs argv to completion (killed after `timeout_s`); stdout to `out_path`, stderr to
// `out_path`.err.
int run_process(const std::vector<std::string>& argv, const std::string& out_path,
                double timeout_s);
std::string slurp(const std::string& path);
bool socket_answers(const std::string& path);

// A peer server process, stopped on destruction.
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& argv, const std::string& log,
                const std::string& socket) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw BenchError("cannot run " + argv[0] + ": " + std::strerror(rc));
    const double deadline = now_seconds() + 10;
    while (!socket_answers(socket)) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw BenchError(argv[0] + " exited: " + slurp(log));
      }
      if (now_seconds() > deadline || interrupted()) {
        stop();  // the destructor does not run when the constructor throws
        throw_if_interrupted();
        throw BenchError(argv[0] + " did not listen on " + socket + ": " + slurp(log));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~ServerProcess() { stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

 private:
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 250; ++i) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  pid_t pid_ = -1;
};

// ---- targets ----

class Target {
 public:
  virtual ~Target() = default;
  virtual std::string name() const = 0;
  virtual std::string uri() const = 0;
};

class PoolExport : public nbd::ExportProvider {
 public:
  explicit PoolExport(Pool& pool) : pool_(pool) {}
  Result<std::shared_ptr<Volume>> open_export(const std::string& name) override {
    return pool_.open_volume(name);
  }
  std::vector<std::string> list_exports() override { return {"vol"}; }

 private:
  Pool& pool_;
};

// pxd's NBD server in this process, over a pool of its own.
class PxdTarget : public Target {
 public:
  // `copies`: how many full copies of the volume's data the pool must hold.
  PxdTarget(const std::string& name, const std::string& dir, uint64_t size, uint32_t copies = 1)
      : name_(name),
        pool_(dir, copies * size + (size / 8) + (64ULL << 20)),
        exports_(pool_.pool()) {
    check(pool_->create_volume(VolumeSpec{"vol", size, 4096, {}, {}}), "create volume");
    nbd::ServerOptions options;
    options.unix_path = dir + "/nbd.sock";
    server_ = check(nbd::Server::start(options, exports_), "start the NBD server");
    uri_ = "nbd+unix:///vol?socket=" + options.unix_path;
  }
  ~PxdTarget() override { server_->stop(); }
  std::string name() const override { return name_; }
  std::string uri() const override { return uri_; }
  Pool& pool() { return pool_.pool(); }

 private:
  std::string name_;
  BenchPool pool_;
  PoolExport exports_;
  std::unique_ptr<nbd::Server> server_;
  std::string uri_;
};

class PeerTarget : public Target {
 public:
  PeerTarget(const std::string& name, const std::string& dir, uint64_t size) : name_(name) {
    const std::string socket = dir + "/nbd.sock", log = dir + "/server.log";
    std::vector<std::string> argv;
    if (name == "nbdkit-file") {
      const std::string file = dir + "/disk.raw";
      std::ofstream(file, std::ios::trunc).close();
      if (::truncate(file.c_str(), static_cast<off_t>(size)) != 0)
        throw BenchError("truncate " + file);
      argv = {"nbdkit", "--foreground", "--exit-with-parent", "--unix",    socket, "--exportname",
              "vol",    "file",         "file=" + file,       "cache=none"};
    } else {
      const bool qcow2 = name == "qemu-nbd-qcow2";
      const std::string file = dir + (qcow2 ? "/disk.qcow2" : "/disk.raw");
      if (run_process({"qemu-img", "create", "-q", "-f", qcow2 ? "qcow2" : "raw", file,
                       std::to_string(size)},
                      dir + "/qemu-img.out", 60) != 0)
        throw BenchError("qemu-img create " + file + ": " + slurp(dir + "/qemu-img.out.err"));
      argv = {"qemu-nbd",
              "--persistent",
              "--shared=8",
              "--cache=none",
              "--aio=io_uring",
              "--discard=unmap",
              "--format",
              qcow2 ? "qcow2" : "raw",
              "--socket",
              socket,
              "--export-name",
              "vol",
              file};
    }
    process_ = std::make_unique<ServerProcess>(argv, log, socket);
    uri_ = "nbd+unix:///vol?socket=" + socket;
  }
  std::string name() const override { return name_; }
  std::string uri() const override { return uri_; }

 private:
  std::string name_;
  std::unique_ptr<ServerProcess> process_;
  std::string uri_;
};

// ---- fio ----

struct FioResult {
  double iops = 0;
  double mib_s = 0;
  double mean_latency_us = 0;
};

// fio's nbd engine against `uri`: time-based (with a ramp) unless `time_based` is false, in
// which case it writes or reads `size` bytes once.
FioResult run_fio(const std::string& uri, const std::string& rw, uint32_t block, uint32_t depth,
                  uint32_t connections, uint64_t size, double seconds, const std::string& scratch,
                  bool time_based = true);
// The first line `argv` prints (a tool's --version), or "?".
std::string first_line_of(const std::vector<std::string>& argv, const std::string& scratch);
// Writes the whole target once, 1 MiB at a time.
void preload(Target& t, uint64_t size, const std::string& scratch);

}  // namespace pxd::bench
