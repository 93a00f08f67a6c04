// tests/vm/ublk_test_server.cc: a minimal ublk server for the guest tests.
//
//   ublk_test_server POOL_DIR VOLUME [options]   serve VOLUME of the pool in POOL_DIR
//   ublk_test_server --probe | --list | --remove DEV_ID
//
// The library's own guest tests (ublk_errors.sh: bad requests, user copy, devices that are
// not recoverable) and the benchmark drive it; the daemon's tests use --list and --remove
// to see and clean up what the driver holds. It opens (or creates, with one sparse file POOL_DIR/pool.img) the pool, creates the volume
// if missing, serves it through ublk::Device, writes the device id to --ready FILE once the
// disk exists, and on SIGTERM or SIGINT stops the device (--on-term stop, the default) or
// leaves it for recovery (--on-term release). --recover DEV_ID takes over a device a
// killed server left. --cycles N creates and stops N devices and fails if threads, file
// descriptors or devices leak. SIGUSR1 writes the pool's used bytes to POOL_DIR/usage;
// with --refuse-busy a SIGTERM while the device is in use (mounted) is refused.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/units.h"
#include "engine/pool.h"
#include "ublk/device.h"

namespace {

using pxd::Status;
namespace ublk = pxd::ublk;

struct Args {
  std::string pool_dir;
  std::string volume;
  uint64_t volume_size = 256ULL << 20;
  uint64_t pool_size = 1ULL << 30;
  uint32_t chunk_size = pxd::kDefaultChunkSize;
  int recover = -1;
  ublk::DeviceOptions device;
  std::string ready_file;
  bool release_on_term = false;
  bool refuse_busy = false;
  int cycles = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "ublk_test_server: " << why << "\n"
            << "usage: ublk_test_server POOL_DIR VOLUME [--size S] [--pool-size S] [--chunk S]\n"
            << "         [--recover DEV_ID] [--dev-id N] [--queues N] [--depth N]\n"
            << "         [--user-copy|--kernel-copy] [--not-recoverable] [--owner N]\n"
            << "         [--ready FILE]\n"
            << "         [--on-term stop|release] [--refuse-busy] [--cycles N]\n"
            << "       ublk_test_server --probe | --list | --remove DEV_ID\n";
  std::exit(2);
}

uint64_t size_arg(const std::string& text) {
  auto r = pxd::parse_size(text, 1);
  if (!r) usage("bad size '" + text + "': " + r.error().message());
  return r.value();
}

int int_arg(const std::string& text) {
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != 0 || v < 0 || v > 1 << 20) usage("bad number '" + text + "'");
  return static_cast<int>(v);
}

int fail(const Status& s, const std::string& what) {
  std::cerr << "ublk_test_server: " << what << ": " << s << "\n";
  return 1;
}

size_t count_entries(const char* dir) {
  size_t n = 0;
  if (DIR* d = ::opendir(dir)) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
  }
  return n;
}

void write_ready(const std::string& path, int dev_id) {
  if (path.empty()) return;
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << dev_id << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

std::unique_ptr<pxd::Pool> open_pool(const Args& args) {
  std::string meta = args.pool_dir + "/meta";
  if (std::filesystem::exists(meta)) {
    auto pool = pxd::Pool::open(meta);
    if (!pool) {
      fail(pool.error(), "open pool " + meta);
      return nullptr;
    }
    return std::move(pool).value();
  }
  std::filesystem::create_directories(args.pool_dir);
  pxd::PoolOptions options;
  options.devices.push_back({args.pool_dir + "/pool.img", args.pool_size});
  options.chunk_size = args.chunk_size;
  auto pool = pxd::Pool::create(meta, options);
  if (!pool) {
    fail(pool.error(), "create pool " + meta);
    return nullptr;
  }
  return std::move(pool).value();
}

// One 4 KiB write and read back through the block device, O_DIRECT: the device serves.
bool device_answers(const std::string& path, int round) {
  int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return false;
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, 8192) != 0) std::abort();
  auto* out = static_cast<unsigned char*>(buf);
  auto* in = out + 4096;
  std::memset(out, 0xA0 + round % 16, 4096);
  bool ok = ::pwrite(fd, out, 4096, 4096LL * round) == 4096 &&
            ::pread(fd, in, 4096, 4096LL * round) == 4096 && std::memcmp(in, out, 4096) == 0;
  std::free(buf);
  ::close(fd);
  return ok;
}

int run_cycles(const Args& args, const std::shared_ptr<pxd::Volume>& volume) {
  auto before = ublk::list_devices();
  if (!before) return fail(before.error(), "list devices");
  // The first cycle warms up what stays (the engine's threads, log and library state).
  for (int i = 0; i <= args.cycles; ++i) {
    static size_t threads0 = 0, fds0 = 0;
    if (i == 1) {
      threads0 = count_entries("/proc/self/task");
      fds0 = count_entries("/proc/self/fd");
    }
    auto dev = ublk::Device::create(volume, args.device);
    if (!dev) return fail(dev.error(), "cycle " + std::to_string(i) + ": create");
    if (!device_answers(dev.value()->block_path(), i)) {
      std::cerr << "ublk_test_server: cycle " << i << ": " << dev.value()->block_path()
                << " does not answer\n";
      return 1;
    }
    Status s = dev.value()->stop(true);
    if (!s.is_ok()) return fail(s, "cycle " + std::to_string(i) + ": stop");
    if (i == args.cycles) {
      size_t threads = count_entries("/proc/self/task");
      size_t fds = count_entries("/proc/self/fd");
      std::cout << "cycles: " << args.cycles << " threads " << threads0 << " -> " << threads
                << ", fds " << fds0 << " -> " << fds << "\n";
      if (threads != threads0 || fds != fds0) {
        std::cerr << "ublk_test_server: threads or file descriptors leaked\n";
        return 1;
      }
    }
  }
  auto after = ublk::list_devices();
  if (!after) return fail(after.error(), "list devices");
  if (after.value().size() != before.value().size()) {
    std::cerr << "ublk_test_server: " << after.value().size() - before.value().size()
              << " devices leaked\n";
    return 1;
  }
  std::cout << "cycles: no device leaked (" << after.value().size() << " before and after)\n";
  return 0;
}

int serve(const Args& args) {
  // Queue threads inherit this mask: only the main thread takes the signals, in sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::unique_ptr<pxd::Pool> pool = open_pool(args);
  if (!pool) return 1;
  Args effective = args;
  effective.device.discard_granularity = pool->usage().chunk_size;
  if (!pool->inspect(args.volume)) {
    auto created = pool->create_volume(pxd::VolumeSpec{args.volume, args.volume_size, 4096, {}, {}});
    if (!created) return fail(created.error(), "create volume " + args.volume);
  }
  auto volume = pool->open_volume(args.volume);
  if (!volume) return fail(volume.error(), "open volume " + args.volume);

  if (args.cycles > 0) {
    int rc = run_cycles(effective, volume.value());
    volume.value().reset();
    return rc;
  }

  auto dev = args.recover >= 0
                 ? ublk::Device::recover(args.recover, volume.value(), effective.device)
                 : ublk::Device::create(volume.value(), effective.device);
  if (!dev) return fail(dev.error(), args.recover >= 0 ? "recover" : "create");
  std::cout << "serving " << dev.value()->block_path() << " (volume " << args.volume << ", "
            << dev.value()->queues() << " queues, "
            << (dev.value()->user_copy() ? "user copy" : "kernel copy") << ")" << std::endl;
  write_ready(args.ready_file, dev.value()->dev_id());

  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig == SIGUSR1) {
      // The pool's used bytes into POOL_DIR/usage, for the space tests.
      std::string path = args.pool_dir + "/usage";
      {
        std::ofstream out(path + ".tmp");
        out << pool->usage().used_bytes << "\n";
      }
      std::rename((path + ".tmp").c_str(), path.c_str());
      continue;
    }
    if (args.refuse_busy && dev.value()->in_use()) {
      std::cout << "refused: " << dev.value()->block_path() << " is in use" << std::endl;
      continue;
    }
    break;
  }
  Status s = args.release_on_term ? dev.value()->release() : dev.value()->stop(true);
  if (!s.is_ok()) return fail(s, "on signal");
  ublk::DeviceStats stats = dev.value()->stats();
  std::cout << "exit on signal " << sig << ": " << stats.requests << " requests, " << stats.errors
            << " errors" << std::endl;
  dev.value().reset();
  volume.value().reset();
  s = pool->sync();
  if (!s.is_ok()) return fail(s, "sync pool");
  return stats.errors == 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> argv_s(argv + 1, argv + argc);
  if (argv_s.empty()) usage("missing arguments");
  if (argv_s[0] == "--probe") {
    auto f = ublk::probe();
    if (!f) return fail(f.error(), "probe");
    std::cout << "features: " << f.value().describe() << " (0x" << std::hex << f.value().flags
              << std::dec << ")\n";
    return 0;
  }
  if (argv_s[0] == "--list") {
    auto devices = ublk::list_devices();
    if (!devices) return fail(devices.error(), "list");
    for (const auto& d : devices.value()) {
      std::cout << d.dev_id << " " << ublk::device_state_name(d.state) << " pid " << d.server_pid
                << " volume " << d.volume_id << " queues " << d.queues << " depth "
                << d.queue_depth << (d.recoverable() ? " recoverable" : "")
                << (d.user_copy() ? " user-copy" : "") << " owner 0x" << std::hex << d.owner
                << std::dec << "\n";
    }
    return 0;
  }
  if (argv_s[0] == "--remove") {
    if (argv_s.size() != 2) usage("--remove takes a device id");
    Status s = ublk::remove_device(int_arg(argv_s[1]));
    return s.is_ok() ? 0 : fail(s, "remove");
  }

  Args args;
  std::vector<std::string> positional;
  for (size_t i = 0; i < argv_s.size(); ++i) {
    const std::string& a = argv_s[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= argv_s.size()) usage(a + " needs a value");
      return argv_s[++i];
    };
    if (a == "--size") {
      args.volume_size = size_arg(value());
    } else if (a == "--pool-size") {
      args.pool_size = size_arg(value());
    } else if (a == "--chunk") {
      args.chunk_size = static_cast<uint32_t>(size_arg(value()));
    } else if (a == "--recover") {
      args.recover = int_arg(value());
    } else if (a == "--dev-id") {
      args.device.dev_id = int_arg(value());
    } else if (a == "--queues") {
      args.device.queues = static_cast<uint16_t>(int_arg(value()));
    } else if (a == "--depth") {
      args.device.queue_depth = static_cast<uint16_t>(int_arg(value()));
    } else if (a == "--user-copy") {
      args.device.copy_mode = ublk::CopyMode::kUserCopy;
    } else if (a == "--kernel-copy") {
      args.device.copy_mode = ublk::CopyMode::kKernelCopy;
    } else if (a == "--owner") {
      args.device.owner = static_cast<uint32_t>(int_arg(value()));
    } else if (a == "--not-recoverable") {
      args.device.recoverable = false;
    } else if (a == "--ready") {
      args.ready_file = value();
    } else if (a == "--on-term") {
      const std::string& v = value();
      if (v != "stop" && v != "release") usage("--on-term takes stop or release");
      args.release_on_term = v == "release";
    } else if (a == "--refuse-busy") {
      args.refuse_busy = true;
    } else if (a == "--cycles") {
      args.cycles = int_arg(value());
    } else if (!a.empty() && a[0] == '-') {
      usage("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) usage("expected POOL_DIR and VOLUME");
  args.pool_dir = positional[0];
  args.volume = positional[1];
  return serve(args);
}
