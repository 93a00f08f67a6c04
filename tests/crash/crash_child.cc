// tests/crash/crash_child.cc: the process engine_crash_test kills.
//
//   engine_crash_child META_DIR JOURNAL SEED CYCLE IO_THREADS QUEUE_DEPTH SNAPSHOTS
//
// Opens the pool, then runs a random workload over every volume until it is SIGKILLed:
// writes of self-describing 4 KiB blocks (crash_format.h), some multi-block, some FUA;
// discards and write-zeroes of partial and whole chunks; flushes; reads checked against
// what it wrote; and, with SNAPSHOTS=1, a control thread creating and deleting snapshots
// while the I/O runs (so kills land mid copy-on-write and mid chunk freeing).
//
// It never has two requests touching the same block in flight at once (reads included):
// so each block's mutations are totally ordered and the parent's model stays exact. Each
// event is journaled (crash_format.h) in the order that makes the parent's reading
// conservative: an intent before its submit, a completion after its callback ran and
// before the block is released to the next request.
//
// Threads: IO_THREADS (1 or 2) ring threads, each with its own IoRing and QUEUE_DEPTH
// requests in flight; optionally one control thread. They share the block state under
// `mu`; the journal has its own lock.
//
// With PXD_CRASH_DM_MARK=NAME set (the power-cut test, tests/vm/powercut.sh), the pool is
// on a filesystem over the dm log-writes device NAME, and after each successful flush has
// been journaled the child puts the mark "pxd-flush-<seq>" into that device's log (what
// `dmsetup message NAME 0 mark ...` does, without a process per flush): a replay of the
// log up to that mark is a power cut after the flush completed.
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/io_ring.h"
#include "engine/pool.h"
#include "engine/volume.h"
#include "tests/crash/crash_format.h"

namespace pxd::crash {
namespace {

constexpr uint64_t kUnknown = UINT64_MAX;  // the child has not written this block yet
constexpr uint32_t kMaxBlocks = 32;        // per request
constexpr uint32_t kChunkBlocks = 16;      // the parent makes the pool with 64 KiB chunks
constexpr int kSelfLimitSeconds = 60;      // the parent kills us long before

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "engine_crash_child: %s\n", what.c_str());
  std::_Exit(2);
}

class JournalWriter {
 public:
  explicit JournalWriter(const std::string& path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) die("open journal " + path + ": " + std::strerror(errno));
  }
  // One write(2) per record: it is in the file before append() returns, and the page
  // cache survives SIGKILL, so no fdatasync (which would stall every thread behind this
  // lock). The parent ignores a torn tail (checksums), which only a machine crash makes.
  void append(Record r) {
    r.seal();
    std::lock_guard<std::mutex> lock(mu_);
    ssize_t n = ::write(fd_, &r, sizeof(r));
    if (n != static_cast<ssize_t>(sizeof(r))) die("journal write failed");
  }

 private:
  std::mutex mu_;
  int fd_ = -1;
};

// Puts marks into a dm log-writes device's log through the device-mapper control node.
class DmMarker {
 public:
  explicit DmMarker(std::string device) : device_(std::move(device)) {
    if (device_.size() >= DM_NAME_LEN) die("dm device name too long: " + device_);
    fd_ = ::open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
    if (fd_ < 0) die(std::string("open /dev/mapper/control: ") + std::strerror(errno));
  }
  // REQUIRES: the flush `seq` completed and its kFlushDone record is in the journal.
  void mark(uint64_t seq) {
    alignas(8) char buf[sizeof(dm_ioctl) + sizeof(dm_target_msg) + 64] = {};
    auto* io = reinterpret_cast<dm_ioctl*>(buf);
    io->version[0] = DM_VERSION_MAJOR;
    io->data_size = sizeof(buf);
    io->data_start = sizeof(dm_ioctl);
    std::memcpy(io->name, device_.data(), device_.size());
    auto* msg = reinterpret_cast<dm_target_msg*>(buf + sizeof(dm_ioctl));
    std::snprintf(msg->message, sizeof(buf) - sizeof(dm_ioctl) - sizeof(dm_target_msg),
                  "mark pxd-flush-%llu", static_cast<unsigned long long>(seq));
    if (::ioctl(fd_, DM_TARGET_MSG, io) != 0)
      die("dm mark on " + device_ + ": " + std::strerror(errno));
  }

 private:
  std::string device_;
  int fd_ = -1;
};

struct ChildVolume {
  std::string name;
  std::shared_ptr<Volume> handle;
  uint64_t id = 0;
  uint64_t blocks = 0;
  std::vector<uint8_t> busy;          // GUARDED_BY(Shared::mu): a request holds it
  std::vector<uint64_t> known;        // GUARDED_BY(Shared::mu): last completed value
  std::deque<std::string> snapshots;  // control thread only, oldest first
};

struct Shared {
  explicit Shared(const std::string& journal_path) : journal(journal_path) {}
  JournalWriter journal;
  std::unique_ptr<Pool> pool;
  std::mutex mu;
  std::vector<ChildVolume> volumes;
  std::atomic<uint64_t> next_seq{0};
  std::unique_ptr<DmMarker> marker;  // power-cut test only
};

// One ring thread and its requests.
class Worker {
 public:
  Worker(Shared& shared, uint64_t seed, uint32_t depth) : shared_(shared), rng_(seed) {
    slots_.resize(depth);
    for (auto& s : slots_) {
      void* p = nullptr;
      if (posix_memalign(&p, kIoBufferAlignment, kMaxBlocks * kBlockBytes) != 0) die("memalign");
      s.buffer = static_cast<std::byte*>(p);
      s.worker = this;
    }
  }

  [[noreturn]] void run() {
    auto ring = IoRing::create(256);
    if (ring.has_error()) die("IoRing::create: " + ring.error().to_string());
    ring_ = std::move(ring).value();
    for (;;) {
      for (auto& s : slots_) {
        if (!s.in_flight) start(s);
      }
      int rc = ring_->run_once(true, 2);
      if (rc < 0) die("run_once: " + std::string(std::strerror(-rc)));
    }
  }

 private:
  enum class Kind { kRead, kWrite, kWriteFua, kDiscard, kWriteZeroes, kFlush };
  struct Slot {
    IoRequest req;
    std::byte* buffer = nullptr;
    Worker* worker = nullptr;
    bool in_flight = false;
    Kind kind = Kind::kRead;
    ChildVolume* volume = nullptr;
    uint64_t seq = 0;
    uint64_t lba = 0;
    uint32_t count = 0;
  };

  uint64_t pick(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

  // Chooses a request; false if the range it drew is busy (tried again next round).
  bool choose(Slot& s) {
    ChildVolume& v = shared_.volumes[pick(shared_.volumes.size())];
    s.volume = &v;
    uint64_t r = pick(100);
    if (r < 5) {
      s.kind = Kind::kFlush;
      s.count = 0;
      return true;
    }
    bool whole_chunks = false;
    if (r < 15) {
      s.kind = Kind::kRead;
    } else if (r < 24) {
      s.kind = Kind::kDiscard;
      whole_chunks = pick(2) == 0;
    } else if (r < 32) {
      s.kind = Kind::kWriteZeroes;
      whole_chunks = pick(2) == 0;
    } else {
      s.kind = pick(100) < 15 ? Kind::kWriteFua : Kind::kWrite;
    }
    if (whole_chunks) {
      s.count = kChunkBlocks * static_cast<uint32_t>(1 + pick(2));
      s.lba = pick(v.blocks / kChunkBlocks - 1) * kChunkBlocks;
    } else {
      uint64_t size = pick(100);
      s.count = size < 60   ? 1
                : size < 85 ? static_cast<uint32_t>(2 + pick(7))
                            : static_cast<uint32_t>(9 + pick(kMaxBlocks - 8));
      s.lba = pick(v.blocks - s.count + 1);
    }
    std::lock_guard<std::mutex> lock(shared_.mu);
    for (uint64_t b = s.lba; b < s.lba + s.count; ++b) {
      if (v.busy[b]) return false;
    }
    for (uint64_t b = s.lba; b < s.lba + s.count; ++b) v.busy[b] = 1;
    return true;
  }

  void start(Slot& s) {
    if (!choose(s)) return;
    s.seq = shared_.next_seq.fetch_add(1);
    IoRequest& req = s.req;
    req = IoRequest{};
    req.user = &s;
    req.done = &Worker::on_done;
    req.offset = s.lba * kBlockBytes;
    req.length = uint64_t{s.count} * kBlockBytes;
    Record intent;
    intent.type = RecordType::kIntent;
    intent.seq = s.seq;
    intent.volume = s.volume->id;
    intent.lba = s.lba;
    intent.count = s.count;
    switch (s.kind) {
      case Kind::kFlush:
        req.op = IoOp::kFlush;
        req.offset = req.length = 0;
        shared_.journal.append(
            Record{.type = RecordType::kFlushSubmit, .seq = s.seq, .volume = s.volume->id});
        break;
      case Kind::kRead:
        req.op = IoOp::kRead;
        req.buffer = s.buffer;
        break;
      case Kind::kWrite:
      case Kind::kWriteFua:
        req.op = IoOp::kWrite;
        req.buffer = s.buffer;
        req.flags = s.kind == Kind::kWriteFua ? uint32_t{kIoFua} : 0u;
        for (uint32_t i = 0; i < s.count; ++i)
          encode_block(s.buffer + uint64_t{i} * kBlockBytes, s.volume->id, s.lba + i, s.seq);
        intent.arg = static_cast<uint64_t>(s.kind == Kind::kWriteFua ? MutationOp::kWriteFua
                                                                     : MutationOp::kWrite);
        shared_.journal.append(intent);
        break;
      case Kind::kDiscard:
      case Kind::kWriteZeroes:
        req.op = s.kind == Kind::kDiscard ? IoOp::kDiscard : IoOp::kWriteZeroes;
        intent.arg = static_cast<uint64_t>(s.kind == Kind::kDiscard ? MutationOp::kDiscard
                                                                    : MutationOp::kWriteZeroes);
        shared_.journal.append(intent);
        break;
    }
    s.in_flight = true;
    s.volume->handle->submit(*ring_, &req);
  }

  static void on_done(IoRequest* req, int result) {
    auto* s = static_cast<Slot*>(req->user);
    s->worker->finish(*s, result);
  }

  void finish(Slot& s, int result) {
    ChildVolume& v = *s.volume;
    JournalWriter& journal = shared_.journal;
    if (s.kind == Kind::kFlush) {
      journal.append(Record{.type = RecordType::kFlushDone,
                            .seq = s.seq,
                            .volume = v.id,
                            .arg = static_cast<uint64_t>(int64_t{result})});
      if (result == 0 && shared_.marker) shared_.marker->mark(s.seq);
    } else if (s.kind != Kind::kRead) {
      journal.append(Record{.type = RecordType::kComplete,
                            .seq = s.seq,
                            .arg = static_cast<uint64_t>(int64_t{result})});
    }
    if (result != 0) {
      std::fprintf(stderr, "engine_crash_child: request %llu on volume %llu failed: %s\n",
                   static_cast<unsigned long long>(s.seq), static_cast<unsigned long long>(v.id),
                   std::strerror(-result));
      journal.append(Record{.type = RecordType::kError,
                            .seq = s.seq,
                            .volume = v.id,
                            .lba = s.lba,
                            .count = s.count,
                            .arg = static_cast<uint64_t>(ChildError::kIoFailed),
                            .spare = static_cast<uint64_t>(-int64_t{result})});
    }
    std::vector<Record> mismatches;
    {
      std::lock_guard<std::mutex> lock(shared_.mu);
      for (uint32_t i = 0; i < s.count; ++i) {
        const uint64_t b = s.lba + i;
        v.busy[b] = 0;
        switch (s.kind) {
          case Kind::kWrite:
          case Kind::kWriteFua:
            v.known[b] = result == 0 ? s.seq : kUnknown;
            break;
          case Kind::kDiscard:
          case Kind::kWriteZeroes:
            v.known[b] = result == 0 ? 0 : kUnknown;
            break;
          case Kind::kRead: {
            if (result != 0 || v.known[b] == kUnknown) break;
            DecodedBlock d = decode_block(s.buffer + uint64_t{i} * kBlockBytes);
            uint64_t found = kUnknown;
            if (d.kind == DecodedBlock::Kind::kZeros) found = 0;
            if (d.kind == DecodedBlock::Kind::kValid && d.volume == v.id && d.lba == b)
              found = d.seq;
            if (found != v.known[b])
              mismatches.push_back(Record{.type = RecordType::kError,
                                          .seq = v.known[b],
                                          .volume = v.id,
                                          .lba = b,
                                          .arg = static_cast<uint64_t>(ChildError::kReadMismatch),
                                          .spare = found});
            break;
          }
          case Kind::kFlush:
            break;
        }
      }
    }
    for (const Record& m : mismatches) {
      std::fprintf(stderr,
                   "engine_crash_child: read of volume %llu block %llu returned %llx, the last "
                   "completed write put %llx there\n",
                   static_cast<unsigned long long>(m.volume),
                   static_cast<unsigned long long>(m.lba), static_cast<unsigned long long>(m.spare),
                   static_cast<unsigned long long>(m.seq));
      journal.append(m);
    }
    s.in_flight = false;
  }

  Shared& shared_;
  std::mt19937_64 rng_;
  std::unique_ptr<IoRing> ring_;
  std::deque<Slot> slots_;  // stable addresses: requests point at them
};

// Creates and deletes snapshots while the I/O runs: at most two per volume.
[[noreturn]] void control_loop(Shared& shared, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3 + pick(40)));
    ChildVolume& v = shared.volumes[pick(shared.volumes.size())];
    const uint64_t seq = shared.next_seq.fetch_add(1);
    if (!v.snapshots.empty() && (v.snapshots.size() >= 2 || pick(100) < 35)) {
      std::string name = v.snapshots.front();
      v.snapshots.pop_front();
      uint64_t target = std::stoull(name.substr(5));
      shared.journal.append(Record{.type = RecordType::kDeleteBegin, .seq = seq, .arg = target});
      Status st = shared.pool->remove(name);
      shared.journal.append(Record{
          .type = RecordType::kDeleteDone, .seq = seq, .arg = static_cast<uint64_t>(st.code())});
      if (!st.is_ok()) die("remove " + name + ": " + st.to_string());
    } else {
      std::string name = "snap-" + std::to_string(seq);
      shared.journal.append(Record{.type = RecordType::kSnapshotBegin, .seq = seq, .volume = v.id});
      auto r = shared.pool->create_snapshot(v.name, name);
      shared.journal.append(
          Record{.type = RecordType::kSnapshotDone,
                 .seq = seq,
                 .volume = v.id,
                 .lba = r.has_value() ? r.value().id : 0,
                 .arg = static_cast<uint64_t>(r.has_value() ? StatusCode::kOk : r.error().code())});
      if (r.has_error()) die("create_snapshot " + name + ": " + r.error().to_string());
      v.snapshots.push_back(name);
    }
  }
}

int child_main(int argc, char** argv) {
  if (argc != 8)
    die("usage: engine_crash_child META_DIR JOURNAL SEED CYCLE IO_THREADS QUEUE_DEPTH SNAPSHOTS");
  // Never outlive the test that runs us, even if it dies without killing us.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const std::string meta_dir = argv[1];
  const uint64_t seed = std::stoull(argv[3]);
  const uint64_t cycle = std::stoull(argv[4]);
  const int io_threads = std::stoi(argv[5]);
  const uint32_t depth = static_cast<uint32_t>(std::stoul(argv[6]));
  const bool snapshots = std::stoi(argv[7]) != 0;

  Shared shared(argv[2]);
  if (const char* dm = std::getenv("PXD_CRASH_DM_MARK"); dm && *dm)
    shared.marker = std::make_unique<DmMarker>(dm);
  shared.next_seq = seq_base_of_cycle(cycle);
  shared.journal.append(Record{.type = RecordType::kStart, .arg = cycle});
  auto pool = Pool::open(meta_dir);
  if (pool.has_error()) die("Pool::open: " + pool.error().to_string());
  shared.pool = std::move(pool).value();
  std::vector<ObjectInfo> objects = shared.pool->list();
  for (const ObjectInfo& info : objects) {
    if (info.is_snapshot) continue;
    auto handle = shared.pool->open_volume(info.name);
    if (handle.has_error()) die("open_volume: " + handle.error().to_string());
    ChildVolume v;
    v.name = info.name;
    v.handle = handle.value();
    v.id = info.id;
    v.blocks = info.size_bytes / kBlockBytes;
    v.busy.assign(v.blocks, 0);
    v.known.assign(v.blocks, kUnknown);
    v.snapshots.assign(info.snapshots.begin(), info.snapshots.end());
    shared.volumes.push_back(std::move(v));
  }
  if (shared.volumes.empty()) die("the pool has no volumes");
  shared.journal.append(Record{.type = RecordType::kReady, .count = shared.volumes.size()});

  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < io_threads; ++t)
    workers.push_back(std::make_unique<Worker>(shared, mix64(seed + t), depth));
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  if (snapshots) threads.emplace_back([&shared, seed] { control_loop(shared, mix64(~seed)); });
  std::this_thread::sleep_for(std::chrono::seconds(kSelfLimitSeconds));
  die("not killed within " + std::to_string(kSelfLimitSeconds) + " s");
}

}  // namespace
}  // namespace pxd::crash

int main(int argc, char** argv) {
  return pxd::crash::child_main(argc, argv);
}
