#include "tests/unit/pxctl/fake_pxd.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "proto/control.capnp.h"
#include "tests/support/temp_dir.h"
#include "tools/pxctl/args.h"

extern char** environ;

namespace pxd::testing {

using pxctl::Labels;
using Code = proto::Status::Code;

struct FakePxd::State {
  Mode mode;
  std::string path;
  mutable std::mutex mu;
  std::vector<std::string> calls;
  std::thread thread;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;

  void record(std::string call) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(std::move(call));
  }
};

namespace {

void set_status(proto::Status::Builder status, Code code, const char* message) {
  status.setCode(code);
  status.setMessage(message);
}

void fill_volume(proto::Volume::Builder v, const std::string& name, const Labels& labels) {
  bool snapshot = name.find("-s") != std::string::npos;
  v.setId(snapshot ? 4 : 3);
  v.setName(name);
  v.setIsSnapshot(snapshot);
  v.setSizeBytes(10ull << 30);
  v.setBlockSize(4096);
  v.setFs("ext4");
  pxctl::fill_labels(v.initLabels(static_cast<unsigned>(labels.size())), labels);
  if (snapshot) {
    v.setParent("db");
  } else {
    v.initSnapshots(1).set(0, "db-s1");
  }
  v.setExclusiveBytes(1 << 20);
  v.setState("detached");
  v.setCreatedUnix(1795000000);
  v.setReplicas(1);
  v.setPool("default");
}

void fill_pool(proto::Pool::Builder p) {
  p.setName("default");
  p.setUuid("4f1c-fake");
  p.setChunkSize(4 << 20);
  p.setCapacityBytes(100ull << 30);
  p.setUsedBytes(1ull << 30);
  p.setFreeBytes(99ull << 30);
  p.initDevices(1).set(0, "/var/lib/pxd/pool.img");
  p.setVolumes(1);
  p.setSnapshots(1);
}

const Labels kDbLabels = {{"app", "pg"}, {"tier", "gold"}};

// Answers as a one-node pxd with volume "db" and its snapshot "db-s1" would.
class FakeControl final : public proto::Control::Server {
 public:
  explicit FakeControl(std::shared_ptr<FakePxd::State> state) : state_(std::move(state)) {}

 protected:
  kj::Promise<void> hello(HelloContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    set_status(r.initStatus(), Code::OK, "");
    bool old = state_->mode == FakePxd::Mode::kOldApi;
    r.setApiVersion(old ? 0 : 1);
    r.setVersion(old ? "0.0.1" : "9.9.9-fake");
    return kj::READY_NOW;
  }

  kj::Promise<void> status(StatusContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    state_->record("status");
    set_status(r.initStatus(), Code::OK, "");
    auto node = r.initNode();
    node.setNodeName("n1");
    node.setVersion("9.9.9-fake");
    node.setApiVersion(1);
    node.setUptimeSeconds(3725);
    node.setDataDir("/var/lib/pxd");
    node.setCluster("none (single node)");
    node.setFrontend("ublk");
    fill_pool(node.initPools(1)[0]);
    node.setVolumes(1);
    node.setSnapshots(1);
    return kj::READY_NOW;
  }

  kj::Promise<void> listPools(ListPoolsContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    set_status(r.initStatus(), Code::OK, "");
    fill_pool(r.initPools(1)[0]);
    return kj::READY_NOW;
  }

  kj::Promise<void> createVolume(CreateVolumeContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    auto spec = context.getParams().getSpec();
    std::string name = spec.getName().cStr();
    Labels labels = pxctl::labels_from(spec.getLabels());
    state_->record("createVolume " + name + " size=" + std::to_string(spec.getSizeBytes()) +
                   " bs=" + std::to_string(spec.getBlockSize()) + " fs=" + spec.getFs().cStr() +
                   " repl=" + std::to_string(spec.getReplicas()) +
                   " labels=" + pxctl::labels_text(labels));
    if (spec.getReplicas() > 1) {
      set_status(r.initStatus(), Code::UNSUPPORTED,
                 "--repl 2 needs a cluster; this node runs without one (single node), so "
                 "volumes have one replica");
    } else if (name == "taken") {
      set_status(r.initStatus(), Code::ALREADY_EXISTS, "volume 'taken' exists with size 1 GiB");
    } else {
      set_status(r.initStatus(), Code::OK, "");
      fill_volume(r.initVolume(), name, labels);
      r.getVolume().setSizeBytes(spec.getSizeBytes());
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> listVolumes(ListVolumesContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    auto params = context.getParams();
    state_->record(
        "listVolumes selector=" + pxctl::labels_text(pxctl::labels_from(params.getSelector())) +
        " all=" + std::to_string(params.getIncludeSnapshots()));
    set_status(r.initStatus(), Code::OK, "");
    auto volumes = r.initVolumes(params.getIncludeSnapshots() ? 2 : 1);
    fill_volume(volumes[0], "db", kDbLabels);
    if (params.getIncludeSnapshots()) fill_volume(volumes[1], "db-s1", {});
    return kj::READY_NOW;
  }

  kj::Promise<void> inspectVolume(InspectVolumeContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    std::string name = context.getParams().getName().cStr();
    if (name == "boom") KJ_FAIL_REQUIRE("fake pxd bug");
    if (name != "db" && name != "db-s1") {
      set_status(r.initStatus(), Code::NOT_FOUND, ("volume '" + name + "' does not exist").c_str());
      return kj::READY_NOW;
    }
    set_status(r.initStatus(), Code::OK, "");
    fill_volume(r.initVolume(), name, name == "db" ? kDbLabels : Labels{});
    return kj::READY_NOW;
  }

  kj::Promise<void> updateVolume(UpdateVolumeContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    auto p = context.getParams();
    Labels labels = pxctl::labels_from(p.getLabels());
    std::string removed;
    Labels result = p.getSetLabels() ? labels : kDbLabels;
    for (auto key : p.getRemoveLabels()) {
      removed += (removed.empty() ? "" : ",") + std::string(key.cStr());
      std::erase_if(result, [&](const auto& kv) { return kv.first == key.cStr(); });
    }
    if (p.getMergeLabels()) {
      for (const auto& kv : labels) {
        auto it = std::find_if(result.begin(), result.end(),
                               [&](const auto& have) { return have.first == kv.first; });
        if (it == result.end()) {
          result.push_back(kv);
        } else {
          it->second = kv.second;
        }
      }
    }
    state_->record(std::string("updateVolume ") + p.getName().cStr() +
                   " size=" + std::to_string(p.getSizeBytes()) +
                   " set_labels=" + std::to_string(p.getSetLabels()) +
                   " merge=" + std::to_string(p.getMergeLabels()) +
                   " labels=" + pxctl::labels_text(labels) + " remove=" + removed);
    set_status(r.initStatus(), Code::OK, "");
    fill_volume(r.initVolume(), p.getName().cStr(), result);
    if (p.getSizeBytes() != 0) r.getVolume().setSizeBytes(p.getSizeBytes());
    return kj::READY_NOW;
  }

  kj::Promise<void> deleteVolume(DeleteVolumeContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    std::string name = context.getParams().getName().cStr();
    state_->record("deleteVolume " + name +
                   " force=" + std::to_string(context.getParams().getForce()));
    if (name == "attached" && !context.getParams().getForce()) {
      set_status(r.initStatus(), Code::BUSY, "volume 'attached' is attached; use --force");
    } else if (name == "db" || name == "attached") {
      set_status(r.initStatus(), Code::OK, "");
    } else {
      set_status(r.initStatus(), Code::NOT_FOUND, ("volume '" + name + "' does not exist").c_str());
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> createSnapshot(CreateSnapshotContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    auto p = context.getParams();
    state_->record(std::string("createSnapshot ") + p.getVolume().cStr() + " " +
                   p.getName().cStr());
    set_status(r.initStatus(), Code::OK, "");
    fill_volume(r.initSnapshot(), p.getName().cStr(), pxctl::labels_from(p.getLabels()));
    return kj::READY_NOW;
  }

  kj::Promise<void> listSnapshots(ListSnapshotsContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    state_->record(std::string("listSnapshots ") + context.getParams().getVolume().cStr());
    set_status(r.initStatus(), Code::OK, "");
    fill_volume(r.initSnapshots(1)[0], "db-s1", {});
    return kj::READY_NOW;
  }

  kj::Promise<void> deleteSnapshot(DeleteSnapshotContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    state_->record(std::string("deleteSnapshot ") + context.getParams().getName().cStr());
    set_status(r.initStatus(), Code::OK, "");
    return kj::READY_NOW;
  }

  kj::Promise<void> clone(CloneContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    auto p = context.getParams();
    state_->record(std::string("clone ") + p.getSource().cStr() + " " + p.getName().cStr());
    set_status(r.initStatus(), Code::OK, "");
    fill_volume(r.initVolume(), p.getName().cStr(), {});
    r.getVolume().setParent(p.getSource());
    return kj::READY_NOW;
  }

  kj::Promise<void> restore(RestoreContext context) override {
    auto r = context.getResults();
    if (refused(r)) return kj::READY_NOW;
    auto p = context.getParams();
    state_->record(std::string("restore ") + p.getVolume().cStr() + " " + p.getSnapshot().cStr());
    if (std::string(p.getSnapshot().cStr()) != "db-s1") {
      set_status(r.initStatus(), Code::FAILED_PRECONDITION, "'other' is not a snapshot of 'db'");
      return kj::READY_NOW;
    }
    set_status(r.initStatus(), Code::OK, "");
    fill_volume(r.initVolume(), p.getVolume().cStr(), kDbLabels);
    return kj::READY_NOW;
  }

 private:
  template <class Results>
  bool refused(Results& results) {
    if (state_->mode != FakePxd::Mode::kPermissionDenied) return false;
    set_status(results.initStatus(), Code::PERMISSION_DENIED,
               "permission denied: the control API is for root and members of group pxd");
    return true;
  }

  std::shared_ptr<FakePxd::State> state_;
};

int listen_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

FakePxd::FakePxd(const std::string& socket_path, Mode mode) : state_(std::make_shared<State>()) {
  state_->mode = mode;
  state_->path = socket_path;
  std::promise<void> ready;
  state_->thread = std::thread([state = state_, &ready] {
    auto io = kj::setupAsyncIo();
    auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
    state->stop = kj::mv(stop.fulfiller);
    capnp::TwoPartyServer server(kj::heap<FakeControl>(state));
    auto address = io.provider->getNetwork()
                       .parseAddress(kj::str("unix:", state->path.c_str()))
                       .wait(io.waitScope);
    auto listener = address->listen();
    ready.set_value();
    server.listen(*listener).exclusiveJoin(kj::mv(stop.promise)).wait(io.waitScope);
  });
  ready.get_future().wait();
}

FakePxd::~FakePxd() {
  state_->stop->fulfill();
  state_->thread.join();
  ::unlink(state_->path.c_str());
}

std::vector<std::string> FakePxd::calls() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->calls;
}

SilentSocket::SilentSocket(const std::string& path) : fd_(listen_unix(path)) {}

SilentSocket::~SilentSocket() {
  if (fd_ >= 0) ::close(fd_);
}

struct ClosingSocket::Impl {
  int fd = -1;
  std::thread thread;
};

ClosingSocket::ClosingSocket(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->fd = listen_unix(path);
  impl_->thread = std::thread([fd = impl_->fd] {
    while (true) {
      int conn = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) return;  // shut down
      ::close(conn);
    }
  });
}

ClosingSocket::~ClosingSocket() {
  ::shutdown(impl_->fd, SHUT_RDWR);
  impl_->thread.join();
  ::close(impl_->fd);
}

Run run_pxctl(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> argv = {PXCTL_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, env);
}

Run run_program(std::vector<std::string> argv_s, const std::vector<std::string>& env) {
  TempDir dir;
  std::string out_path = dir / "out", err_path = dir / "err";
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The caller's environment without PXD_SOCKET, plus `env`.
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "PXD_SOCKET=", 11) != 0) env_s.emplace_back(*e);
  }
  env_s.insert(env_s.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT, 0600);
  pid_t pid = -1;
  Run run;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    run.err = std::string("posix_spawn: ") + std::strerror(rc);
    return run;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  run.out = slurp(out_path);
  run.err = slurp(err_path);
  return run;
}

}  // namespace pxd::testing
