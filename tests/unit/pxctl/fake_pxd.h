// tests/unit/pxctl/fake_pxd.h: stand-ins for pxd on a unix socket, so pxctl's client side
// (connection errors, timeouts, status codes, JSON on stdout) is tested without a daemon.
//
// FakePxd serves a canned Control on its own thread and kj event loop; the test thread
// only starts and stops it. Requests it saw are recorded under a mutex.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pxd::testing {

class FakePxd {
 public:
  enum class Mode {
    kNormal,            // answers as described in fake_pxd.cc
    kPermissionDenied,  // every call: permissionDenied
    kOldApi,            // hello answers apiVersion 0
  };
  FakePxd(const std::string& socket_path, Mode mode = Mode::kNormal);
  ~FakePxd();

  // "updateVolume db size=0 labels=app=pg,env=prod", one per call after hello.
  std::vector<std::string> calls() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// A socket that accepts connections and never answers (pxd hung).
class SilentSocket {
 public:
  explicit SilentSocket(const std::string& path);
  ~SilentSocket();

 private:
  int fd_ = -1;
};

// A socket that accepts each connection and closes it at once (pxd died mid-call).
class ClosingSocket {
 public:
  explicit ClosingSocket(const std::string& path);
  ~ClosingSocket();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Run {
  int exit_code = -1;
  std::string out, err;
};

// Runs the built pxctl with `args`, capturing stdout and stderr.
Run run_pxctl(const std::vector<std::string>& args, const std::vector<std::string>& env = {});

// Runs `argv` (argv[0] a path) likewise, with stdin from /dev/null.
Run run_program(std::vector<std::string> argv, const std::vector<std::string>& env = {});

}  // namespace pxd::testing
