#include "bench/peer_targets.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/units.h"

namespace pxd::bench {

// Runs argv to completion (killed after `timeout_s`); stdout to `out_path`.
int run_process(const std::vector<std::string>& argv, const std::string& out_path,
                double timeout_s) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, (out_path + ".err").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw BenchError("cannot run " + argv[0] + ": " + std::strerror(rc));
  const double deadline = now_seconds() + timeout_s;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (interrupted() || now_seconds() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      throw_if_interrupted();
      throw BenchError(argv[0] + " did not finish within " + std::to_string(timeout_s) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool socket_answers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

FioResult run_fio(const std::string& uri, const std::string& rw, uint32_t block, uint32_t depth,
                  uint32_t connections, uint64_t size, double seconds, const std::string& scratch,
                  bool time_based) {
  const uint64_t per_job = size / connections / block * block;
  std::vector<std::string> argv = {"fio",
                                   "--name=peers",
                                   "--ioengine=nbd",
                                   "--uri=" + uri,
                                   "--rw=" + rw,
                                   "--bs=" + std::to_string(block),
                                   "--iodepth=" + std::to_string(depth),
                                   "--numjobs=" + std::to_string(connections),
                                   "--size=" + std::to_string(per_job),
                                   "--offset_increment=" + std::to_string(per_job),
                                   "--group_reporting",
                                   "--output-format=json",
                                   "--randrepeat=0"};
  if (time_based) {
    char runtime[64], ramp[64];
    std::snprintf(runtime, sizeof(runtime), "--runtime=%dms", static_cast<int>(seconds * 1000));
    std::snprintf(ramp, sizeof(ramp), "--ramp_time=%dms",
                  static_cast<int>(std::min(1.0, seconds / 4) * 1000));
    argv.insert(argv.end(), {"--time_based", runtime, ramp});
  }
  const std::string out = scratch + "/fio.json";
  int code = run_process(argv, out, seconds + 120);
  std::string text = slurp(out);
  auto json =
      nlohmann::json::parse(text.substr(std::min(text.find('{'), text.size())), nullptr, false);
  if (code != 0 || json.is_discarded() || !json.contains("jobs"))
    throw BenchError("fio against " + uri + " failed (" + std::to_string(code) +
                     "): " + slurp(out + ".err"));
  const auto& job = json["jobs"][0];
  FioResult r;
  double ios = 0, lat_sum = 0;
  for (const char* dir : {"read", "write"}) {
    const auto& d = job[dir];
    r.iops += d["iops"].get<double>();
    r.mib_s += d["bw_bytes"].get<double>() / kMiBf;
    double n = d["total_ios"].get<double>();
    ios += n;
    lat_sum += n * d["lat_ns"]["mean"].get<double>();
  }
  if (job["error"].get<int>() != 0) throw BenchError("fio reported an I/O error on " + uri);
  r.mean_latency_us = ios > 0 ? lat_sum / ios / 1000 : 0;
  return r;
}

// The first line `argv` prints (a tool's --version), or "?".
std::string first_line_of(const std::vector<std::string>& argv, const std::string& scratch) {
  const std::string out = scratch + "/version.txt";
  if (run_process(argv, out, 30) != 0) return "?";
  std::string text = slurp(out);
  return text.substr(0, text.find('\n'));
}

void preload(Target& t, uint64_t size, const std::string& scratch) {
  run_fio(t.uri(), "write", 1u << 20, 16, 1, size, 0, scratch, false);
}

}  // namespace pxd::bench
