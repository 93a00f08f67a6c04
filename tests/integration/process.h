// tests/integration/process.h: real processes for integration tests.
//
// run() executes a program with a deadline and captures its exit code and output.
// PxdProcess starts a pxd on private paths (data dir, socket, pool file) with its own
// NOTIFY_SOCKET, waits for READY=1, and stops it (SIGTERM, then SIGKILL) on every exit
// path.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace pxd::testing {

struct RunResult {
  int exit_code = -1;  // -signal when killed by a signal
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv[0] with argv, optional stdin text and extra environment ("K=V"), killing it
// after `timeout`.
RunResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
              std::chrono::milliseconds timeout = std::chrono::seconds(60),
              const std::string& stdin_text = "");

// Receives sd_notify datagrams on a private socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path);
  ~NotifySocket();
  const std::string& path() const { return path_; }
  // Waits for a datagram containing `needle`; returns everything received until then.
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout, std::string* seen);

 private:
  std::string path_;
  int fd_ = -1;
};

// A background process (a server a test needs: nbdkit, qemu-nbd, pxd) with its output in
// a log file, stopped on destruction.
class Child {
 public:
  Child() = default;
  ~Child() { stop(std::chrono::seconds(10)); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Starts argv[0] with argv and extra environment ("K=V"), stdout and stderr appended to
  // `log_path`. False if it could not be started.
  bool start(const std::vector<std::string>& argv, const std::string& log_path,
             const std::vector<std::string>& env = {});
  bool running();
  // SIGTERM, then SIGKILL after `timeout`; returns the exit code (-signal if killed), or
  // -1 if it was not running.
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void kill9();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// Polls `ready` every 20 ms until it is true or `timeout` passes.
bool wait_until(const std::function<bool()>& ready,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

struct PxdOptions {
  std::vector<std::string> extra_args;
  std::vector<std::string> env;
  bool wait_ready = true;
};

class PxdProcess {
 public:
  // `dir` is a private directory; pxd's data dir, socket and pool go under it.
  PxdProcess(const std::string& dir, PxdOptions options = {});
  ~PxdProcess();
  PxdProcess(const PxdProcess&) = delete;
  PxdProcess& operator=(const PxdProcess&) = delete;

  bool start();  // false if pxd exited or was not ready within 30 s
  // SIGTERM and wait; returns the exit code (-signal if killed).
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void kill9();
  bool running();

  const std::string& socket() const { return socket_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_path() const { return log_; }
  std::string log() const;
  NotifySocket& notify() { return notify_; }
  pid_t pid() const { return child_.pid(); }

 private:
  std::string dir_, data_dir_, socket_, log_;
  PxdOptions options_;
  NotifySocket notify_;
  Child child_;
};

// pxctl against `socket`, with -j when json.
RunResult pxctl(const std::string& socket, const std::vector<std::string>& args);

// Whether the `pxd` group exists on this machine (it decides the socket's mode).
bool pxd_group_exists();

// Paths of the built binaries (set by CMake).
std::string pxd_binary();
std::string pxctl_binary();

}  // namespace pxd::testing
