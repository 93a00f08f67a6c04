#include "tests/integration/process.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace pxd::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> environment_with(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    bool overridden = false;
    for (const auto& x : extra) {
      if (kv.substr(0, kv.find('=') + 1) == x.substr(0, x.find('=') + 1)) overridden = true;
    }
    if (!overridden) env.push_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

// Waits for `pid` up to `timeout`; returns the exit code or INT32_MIN on timeout.
int wait_pid(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return decode_status(status);
    if (r < 0) return -1;
    if (Clock::now() > deadline) return INT32_MIN;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

RunResult run(const std::vector<std::string>& argv_in, const std::vector<std::string>& env_extra,
              std::chrono::milliseconds timeout, const std::string& stdin_text) {
  RunResult result;
  int out_pipe[2], err_pipe[2], in_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC) || ::pipe2(in_pipe, O_CLOEXEC))
    return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = environment_with(env_extra);
  auto cargv = c_strings(argv);
  auto cenv = c_strings(env);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(in_pipe[0]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    ::close(in_pipe[1]);
    result.err = std::string("spawn failed: ") + std::strerror(rc);
    return result;
  }
  if (!stdin_text.empty()) {
    ssize_t n = ::write(in_pipe[1], stdin_text.data(), stdin_text.size());
    (void)n;
  }
  ::close(in_pipe[1]);
  auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int code = wait_pid(pid, std::chrono::seconds(10));
  if (code == INT32_MIN) {
    ::kill(pid, SIGKILL);
    code = wait_pid(pid, std::chrono::seconds(10));
  }
  result.exit_code = code;
  return result;
}

NotifySocket::NotifySocket(const std::string& path) : path_(path) {
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ::unlink(path.c_str());
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

NotifySocket::~NotifySocket() {
  if (fd_ >= 0) ::close(fd_);
  ::unlink(path_.c_str());
}

bool NotifySocket::wait_for(const std::string& needle, std::chrono::milliseconds timeout,
                            std::string* seen) {
  auto deadline = Clock::now() + timeout;
  while (fd_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) continue;
    std::string msg(buf, static_cast<size_t>(n));
    if (seen) *seen += msg + "\n";
    if (msg.find(needle) != std::string::npos) return true;
  }
  return false;
}

PxdProcess::PxdProcess(const std::string& dir, PxdOptions options)
    : dir_(dir),
      data_dir_(dir + "/data"),
      socket_(dir + "/run/pxd.sock"),
      log_(dir + "/pxd.log"),
      options_(std::move(options)),
      notify_(dir + "/notify.sock") {}

PxdProcess::~PxdProcess() {
  child_.stop(std::chrono::seconds(20));
}

bool Child::start(const std::vector<std::string>& argv_in, const std::string& log_path,
                  const std::vector<std::string>& env_extra) {
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = environment_with(env_extra);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  auto cargv = c_strings(argv);
  auto cenv = c_strings(env);
  int rc = ::posix_spawnp(&pid_, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) pid_ = -1;
  return rc == 0;
}

bool Child::running() {
  if (pid_ <= 0) return false;
  int status;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int Child::stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int code = wait_pid(pid_, timeout);
  if (code == INT32_MIN) {
    ::kill(pid_, SIGKILL);
    code = wait_pid(pid_, std::chrono::seconds(10));
    code = code == INT32_MIN ? -SIGKILL : code;
  }
  pid_ = -1;
  return code;
}

void Child::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait_pid(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (ready()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool PxdProcess::start() {
  std::vector<std::string> argv = {pxd_binary(),          "--data-dir", data_dir_,
                                   "--control-socket",    socket_,      "--pool",
                                   dir_ + "/pool0.img:4G"};
  // A private NBD socket too (tests run in parallel), unless the test names one.
  if (std::find(options_.extra_args.begin(), options_.extra_args.end(), "--nbd-socket") ==
      options_.extra_args.end())
    argv.insert(argv.end(), {"--nbd-socket", dir_ + "/run/nbd.sock"});
  // No Docker plugin unless the test names a socket: the default one is the host's.
  if (std::find(options_.extra_args.begin(), options_.extra_args.end(), "--docker-plugin-socket") ==
      options_.extra_args.end())
    argv.insert(argv.end(), {"--docker-plugin-socket", ""});
  // And private /dev/pxd<ID> links: volume ids of parallel tests' pools collide.
  if (std::find(options_.extra_args.begin(), options_.extra_args.end(), "--device-dir") ==
      options_.extra_args.end()) {
    std::filesystem::create_directories(dir_ + "/dev");
    argv.insert(argv.end(), {"--device-dir", dir_ + "/dev"});
  }
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<std::string> extra = options_.env;
  extra.push_back("NOTIFY_SOCKET=" + notify_.path());
  if (!child_.start(argv, log_, extra)) return false;
  if (!options_.wait_ready) return true;
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    if (notify_.wait_for("READY=1", std::chrono::milliseconds(100), nullptr)) return true;
    if (!running()) return false;
  }
  return false;
}

bool PxdProcess::running() {
  return child_.running();
}

int PxdProcess::stop(std::chrono::milliseconds timeout) {
  return child_.stop(timeout);
}

void PxdProcess::kill9() {
  child_.kill9();
}

std::string PxdProcess::log() const {
  std::ifstream f(log_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

RunResult pxctl(const std::string& socket, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {pxctl_binary(), "--socket", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

bool pxd_group_exists() {
  return ::getgrnam("pxd") != nullptr;
}

std::string pxd_binary() {
  return PXD_BINARY_PATH;
}
std::string pxctl_binary() {
  return PXCTL_BINARY_PATH;
}

}  // namespace pxd::testing
