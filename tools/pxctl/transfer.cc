#include "tools/pxctl/transfer.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>

#include "common/units.h"
#include "tools/pxctl/errors.h"
#include "tools/pxctl/output.h"

extern char** environ;

namespace pxd::pxctl {
namespace {

volatile sig_atomic_t g_interrupted = 0;
void on_signal(int sig) { g_interrupted = sig; }

std::string percent_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// Runs argv, returning its exit code and output (for nbdinfo --size).
int capture(const std::vector<std::string>& argv, std::string* out) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    *out = argv[0] + ": " + std::strerror(rc);
    return -1;
  }
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out->append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (!out->empty() && out->back() == '\n') out->pop_back();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool is_qcow2(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  unsigned char magic[4] = {};
  bool yes = ::pread(fd, magic, 4, 0) == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0;
  ::close(fd);
  return yes;
}

}  // namespace

bool is_nbd_uri(const std::string& text) {
  for (const char* scheme : {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+vsock://"})
    if (text.rfind(scheme, 0) == 0) return true;
  return false;
}

std::string pxd_export_uri(const std::string& socket, const std::string& name) {
  return "nbd+unix:///" + percent_encode(name) + "?socket=" + percent_encode(socket);
}

Endpoint source_endpoint(const std::string& text) {
  Endpoint e;
  e.text = text;
  if (is_nbd_uri(text)) {
    e.args = {text};
    return e;
  }
  struct stat st;
  if (::stat(text.c_str(), &st) != 0)
    throw CommandError(kExitUsage, "cannot read '" + text + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    throw CommandError(kExitUsage, "'" + text + "' is not a file, a block device or an NBD URI");
  if (::access(text.c_str(), R_OK) != 0)
    throw CommandError(kExitUsage, "cannot read '" + text + "': " + std::strerror(errno));
  e.is_file = true;
  if (is_qcow2(text))
    e.args = {"[", "qemu-nbd", "--read-only", "--format=qcow2", text, "]"};
  else
    e.args = {text};
  return e;
}

uint64_t source_size(const Endpoint& source) {
  if (source.is_file && source.args.size() == 1) {
    struct stat st;
    if (::stat(source.text.c_str(), &st) != 0)
      throw CommandError(kExitUsage, "cannot read '" + source.text + "'");
    if (S_ISREG(st.st_mode)) return static_cast<uint64_t>(st.st_size);
    int fd = ::open(source.text.c_str(), O_RDONLY | O_CLOEXEC);
    uint64_t bytes = 0;
    bool ok = fd >= 0 && ::ioctl(fd, BLKGETSIZE64, &bytes) == 0;
    if (fd >= 0) ::close(fd);
    if (!ok) throw CommandError(kExitUsage, "cannot size '" + source.text + "'");
    return bytes;
  }
  std::vector<std::string> argv = {"nbdinfo", "--size", "--"};
  argv.insert(argv.end(), source.args.begin(), source.args.end());
  if (source.args.size() == 1) argv = {"nbdinfo", "--size", source.args[0]};
  std::string out;
  int rc = capture(argv, &out);
  char* end = nullptr;
  unsigned long long size = std::strtoull(out.c_str(), &end, 10);
  if (rc != 0 || end == out.c_str() || *end != '\0')
    throw CommandError(kExitFailed, "cannot open '" + source.text + "': " + out);
  return size;
}

std::string progress_line(uint64_t done, uint64_t total, double seconds) {
  std::string line = format_size(done) + " / " + format_size(total);
  if (seconds >= 0.5 && done > 0) {
    double rate = static_cast<double>(done) / seconds;
    line += "  " + format_size(static_cast<uint64_t>(rate)) + "/s";
    if (done < total)
      line += "  ETA " + format_duration(static_cast<uint64_t>(
                             static_cast<double>(total - done) / rate + 0.5));
  }
  return line;
}

void run_copy(const Endpoint& source, const Endpoint& destination, const CopyOptions& options) {
  int progress[2] = {-1, -1};
  if (options.progress && ::pipe2(progress, O_CLOEXEC) != 0) progress[0] = progress[1] = -1;
  std::vector<std::string> argv = {"nbdcopy", "--flush"};
  if (options.destination_is_zero) argv.push_back("--destination-is-zero");
  if (progress[1] >= 0) argv.push_back("--progress=3");
  argv.push_back("--");
  argv.insert(argv.end(), source.args.begin(), source.args.end());
  argv.insert(argv.end(), destination.args.begin(), destination.args.end());

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (progress[1] >= 0) posix_spawn_file_actions_adddup2(&actions, progress[1], 3);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  struct sigaction act = {}, old_int = {}, old_term = {};
  act.sa_handler = on_signal;  // no SA_RESTART: waits return EINTR
  sigemptyset(&act.sa_mask);
  sigaction(SIGINT, &act, &old_int);
  sigaction(SIGTERM, &act, &old_term);
  g_interrupted = 0;
  pid_t pid;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (progress[1] >= 0) ::close(progress[1]);
  if (rc != 0) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    if (progress[0] >= 0) ::close(progress[0]);
    throw CommandError(kExitFailed, std::string("cannot run nbdcopy (Debian package libnbd-bin): ") +
                                        std::strerror(rc));
  }
  const auto started = std::chrono::steady_clock::now();
  std::string pending;
  bool drew = false;
  int status = 0;
  for (;;) {
    if (g_interrupted) ::kill(pid, SIGTERM);
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    pollfd p{progress[0], POLLIN, 0};
    int n = ::poll(&p, progress[0] >= 0 ? 1 : 0, 200);
    if (n > 0 && progress[0] >= 0) {
      char buf[256];
      ssize_t got = ::read(progress[0], buf, sizeof(buf));
      if (got > 0) pending.append(buf, static_cast<size_t>(got));
      if (got == 0) {
        ::close(progress[0]);
        progress[0] = -1;
      }
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        unsigned pct = static_cast<unsigned>(std::strtoul(pending.c_str(), nullptr, 10));
        pending.erase(0, nl + 1);
        double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        uint64_t done = options.size / 100 * pct + options.size % 100 * pct / 100;
        std::cerr << "\r\033[K" << pct << "%  " << progress_line(done, options.size, seconds)
                  << std::flush;
        drew = true;
      }
    }
  }
  if (progress[0] >= 0) ::close(progress[0]);
  if (drew) std::cerr << "\n";
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (g_interrupted)
    throw CommandError(kExitFailed, std::string("interrupted (") + strsignal(g_interrupted) + ")");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw CommandError(kExitFailed, "copying from '" + source.text + "' to '" + destination.text +
                                        "' failed (nbdcopy exit " +
                                        std::to_string(WIFEXITED(status) ? WEXITSTATUS(status)
                                                                         : 128 + WTERMSIG(status)) +
                                        "; its message is above)");
}

}  // namespace pxd::pxctl
