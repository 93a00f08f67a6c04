#include "daemon/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

extern char** environ;

namespace pxd::daemon {
namespace {

constexpr size_t kMaxOutput = 64 * 1024;

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<CommandResult> run_command(const std::vector<std::string>& argv,
                                  std::chrono::milliseconds timeout) {
  if (argv.empty()) return invalid_argument("no command");
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return errno_status(errno, "pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // pxd's own files stay in pxd
  auto args = c_argv(argv);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    return errno_status(rc, "run " + argv[0]);
  }
  CommandResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{pipefd[0], POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[4096];
    ssize_t r = ::read(pipefd[0], buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (result.output.size() < kMaxOutput) result.output.append(buf, static_cast<size_t>(r));
  }
  ::close(pipefd[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out)
    return io_error(argv[0] + " did not finish within " +
                    std::to_string(timeout.count() / 1000) + " s");
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  while (!result.output.empty() && result.output.back() == '\n') result.output.pop_back();
  return result;
}

Result<pid_t> spawn_detached(const std::vector<std::string>& argv, const std::string& log_path) {
  if (argv.empty()) return invalid_argument("no command");
  // Double fork: the intermediate child starts the helper in a new session and exits, so
  // the helper is never pxd's child. The pid comes back through a pipe.
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return errno_status(errno, "pipe");
  auto args = c_argv(argv);
  pid_t middle = ::fork();
  if (middle < 0) {
    int err = errno;
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return errno_status(err, "fork");
  }
  if (middle == 0) {
    // Only async-signal-safe calls from here on.
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    // The helper outlives pxd: it must not hold pxd's files (pool devices, sockets, or
    // anything that would keep a filesystem busy).
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
    int64_t message = rc == 0 ? pid : -rc;
    (void)!::write(pipefd[1], &message, sizeof(message));
    ::_exit(0);
  }
  ::close(pipefd[1]);
  int64_t message = 0;
  ssize_t r;
  do {
    r = ::read(pipefd[0], &message, sizeof(message));
  } while (r < 0 && errno == EINTR);
  ::close(pipefd[0]);
  int status;
  while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  if (r != sizeof(message)) return io_error("starting " + argv[0] + " failed");
  if (message < 0) return errno_status(static_cast<int>(-message), "run " + argv[0]);
  return static_cast<pid_t>(message);
}

bool process_alive(pid_t pid, const std::string& comm) {
  if (pid <= 0) return false;
  // /proc/PID/stat: "PID (COMM) STATE ..."; a zombie (Z) or dead (X) one is not alive.
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(f, stat)) return false;
  size_t open = stat.find('('), close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= stat.size())
    return false;
  if (stat.substr(open + 1, close - open - 1) != comm.substr(0, 15)) return false;
  char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace pxd::daemon
