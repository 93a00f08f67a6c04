// pxbench-control: control-plane figures of a real pxd, through its Cap'n Proto API.
//
//   pxbench-control [--dir DIR] [--volumes N] [--snapshots-per-volume K] [--json]
//
// Starts a private pxd (the one built next to this binary) on DIR/pxbench-control-XXXXXX,
// then measures create, snapshot and delete latency (p50, p99), the time of a volume list
// with N volumes, and pxd's resident memory with N idle volumes of K snapshots each.
// Targets (issue 3): create and snapshot under 20 ms p99, list of 1,000 under 200 ms,
// under 200 MiB resident for 1,000 volumes with 10 snapshots each.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "proto/control.capnp.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

uint64_t rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

// A pxd on private paths, killed on every exit path.
struct Daemon {
  pid_t pid = -1;
  ~Daemon() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int status;
      ::waitpid(pid, &status, 0);
    }
  }
};

struct Row {
  std::string name;
  double value;
  std::string unit;
  std::string target;
  bool pass;
};

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/var/tmp";
  unsigned volumes = 1000, snaps = 10;
  bool json = false;
  CLI::App app{"pxbench-control: control-plane latency and memory of a real pxd"};
  app.add_option("--dir", dir, "where the private pxd keeps its data");
  app.add_option("--volumes", volumes, "volumes to create");
  app.add_option("--snapshots-per-volume", snaps, "snapshots of each volume");
  app.add_flag("--json", json, "one JSON object per line");
  CLI11_PARSE(app, argc, argv);

  std::string tmpl = dir + "/pxbench-control-XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    return 1;
  }
  std::string root = tmpl;
  struct Cleanup {
    std::string path;
    ~Cleanup() { std::filesystem::remove_all(path); }
  } cleanup{root};

  std::string self = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  std::string pxd = std::filesystem::path(self).parent_path() / "daemon" / "pxd";
  std::string socket = root + "/pxd.sock";
  // Private sockets only: the NBD server on its own path, no Docker plugin (an installed
  // pxd may hold the default ones).
  std::vector<std::string> args = {
      pxd,    "--data-dir",   root + "/data",         "--control-socket",
      socket, "--nbd-socket", root + "/nbd.sock",     "--docker-plugin-socket",
      "",     "--pool",       root + "/pool.img:64G", "--log-level",
      "warn"};
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  Daemon daemon;
  if (::posix_spawn(&daemon.pid, pxd.c_str(), nullptr, nullptr, cargs.data(), environ) != 0) {
    std::cerr << "pxbench-control: cannot start " << pxd << "\n";
    return 1;
  }
  for (int i = 0; i < 300 && !std::filesystem::exists(socket); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));

  auto io = kj::setupAsyncIo();
  auto addr =
      io.provider->getNetwork().parseAddress(kj::str("unix:", socket.c_str())).wait(io.waitScope);
  auto stream = addr->connect().wait(io.waitScope);
  capnp::TwoPartyClient client(*stream);
  auto control = client.bootstrap().castAs<pxd::proto::Control>();
  auto ok = [](pxd::proto::Status::Reader s) {
    if (s.getCode() != pxd::proto::Status::Code::OK) {
      std::cerr << "pxbench-control: " << s.getMessage().cStr() << "\n";
      std::exit(1);
    }
  };

  std::vector<double> create_ms, snap_ms, delete_ms;
  std::cerr << "creating " << volumes << " volumes with " << snaps << " snapshots each\n";
  for (unsigned v = 0; v < volumes; ++v) {
    auto req = control.createVolumeRequest();
    auto spec = req.initSpec();
    spec.setName("vol" + std::to_string(v));
    spec.setSizeBytes(1ULL << 30);
    auto start = Clock::now();
    ok(req.send().wait(io.waitScope).getStatus());
    create_ms.push_back(ms_since(start));
    for (unsigned s = 0; s < snaps; ++s) {
      auto sreq = control.createSnapshotRequest();
      sreq.setVolume("vol" + std::to_string(v));
      sreq.setName("vol" + std::to_string(v) + "-s" + std::to_string(s));
      auto sstart = Clock::now();
      ok(sreq.send().wait(io.waitScope).getStatus());
      snap_ms.push_back(ms_since(sstart));
    }
  }
  std::vector<double> list_ms;
  for (int i = 0; i < 5; ++i) {
    auto req = control.listVolumesRequest();
    auto start = Clock::now();
    auto resp = req.send().wait(io.waitScope);
    ok(resp.getStatus());
    list_ms.push_back(ms_since(start));
    if (resp.getVolumes().size() != volumes) {
      std::cerr << "pxbench-control: list returned " << resp.getVolumes().size() << " volumes\n";
      return 1;
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  double rss_mib = static_cast<double>(rss_kib(daemon.pid)) / 1024.0;
  // Delete latency: a snapshot each of the first volumes (the volumes keep theirs).
  for (unsigned v = 0; v < std::min(volumes, 200u); ++v) {
    if (snaps == 0) break;
    auto req = control.deleteSnapshotRequest();
    req.setName("vol" + std::to_string(v) + "-s0");
    auto start = Clock::now();
    ok(req.send().wait(io.waitScope).getStatus());
    delete_ms.push_back(ms_since(start));
  }

  std::vector<Row> rows = {
      {"create-p50", percentile(create_ms, 0.5), "ms", "", true},
      {"create-p99", percentile(create_ms, 0.99), "ms", "< 20", percentile(create_ms, 0.99) < 20},
      {"snapshot-p50", percentile(snap_ms, 0.5), "ms", "", true},
      {"snapshot-p99", percentile(snap_ms, 0.99), "ms", "< 20", percentile(snap_ms, 0.99) < 20},
      {"delete-snapshot-p50", percentile(delete_ms, 0.5), "ms", "", true},
      {"delete-snapshot-p99", percentile(delete_ms, 0.99), "ms", "", true},
      {"list-" + std::to_string(volumes) + "-volumes", percentile(list_ms, 0.5), "ms", "< 200",
       percentile(list_ms, 0.5) < 200},
      {"rss-" + std::to_string(volumes) + "x" + std::to_string(snaps), rss_mib, "MiB", "< 200",
       rss_mib < 200},
  };
  if (!json) std::printf("%-28s %12s %-5s %-8s %s\n", "case", "pxd", "unit", "target", "");
  for (const Row& r : rows) {
    if (json) {
      nlohmann::json j = {{"bench", "control"},  {"case", r.name},           {"pxd", r.value},
                          {"baseline", nullptr}, {"baseline_name", nullptr}, {"ratio", nullptr},
                          {"unit", r.unit}};
      if (!r.target.empty()) {
        j["target"] = r.target;
        j["pass"] = r.pass;
      }
      std::cout << j.dump() << "\n";
    } else {
      std::printf("%-28s %12.2f %-5s %-8s %s\n", r.name.c_str(), r.value, r.unit.c_str(),
                  r.target.c_str(), r.target.empty() ? "" : (r.pass ? "PASS" : "MISS"));
    }
  }
  return 0;
}
