#include "bench/load.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

#include "bench/bench.h"

namespace pxd::bench {

void LoadSlot::on_complete(int result) {
  int status = result < 0 ? result : static_cast<uint64_t>(result) == req.length ? 0 : -EIO;
  driver->finished(*this, status);
}

void VolumeTarget::start(IoRing& ring, LoadSlot& slot) {
  slot.req.done = [](IoRequest* req, int result) {
    auto* s = static_cast<LoadSlot*>(req->user);
    s->driver->finished(*s, result);
  };
  slot.req.user = &slot;
  volume_->submit(ring, &slot.req);
}

LoadResult& LoadResult::operator+=(const LoadResult& o) {
  if (errors == 0) first_error = o.first_error;
  ops += o.ops;
  bytes += o.bytes;
  seconds += o.seconds;
  cpu_seconds += o.cpu_seconds;
  latency_sum_us += o.latency_sum_us;
  latency_max_us = std::max(latency_max_us, o.latency_max_us);
  latencies_us.insert(latencies_us.end(), o.latencies_us.begin(), o.latencies_us.end());
  errors += o.errors;
  return *this;
}

double LoadResult::mib_per_s() const {
  return seconds > 0 ? static_cast<double>(bytes) / kMiBf / seconds : 0;
}

struct LoadDriver::State {
  State(IoTarget& t, const LoadSpec& s) : target(t), spec(s), rng(s.seed) {}

  IoTarget& target;
  LoadSpec spec;
  std::unique_ptr<IoRing> ring;
  std::vector<std::unique_ptr<LoadSlot>> slots;
  std::vector<AlignedBuffer> buffers;
  std::mt19937_64 rng;
  uint64_t region = 0;
  uint64_t blocks = 0;
  uint64_t next_index = 0;
  uint64_t issued = 0;
  uint64_t inflight = 0;
  uint64_t start_ns = 0;
  uint64_t deadline_ns = 0;
  uint64_t last_completion_ns = 0;
  bool stopped = false;
  LoadResult result;
};

LoadDriver::LoadDriver(IoTarget& target, const LoadSpec& spec)
    : state_(std::make_unique<State>(target, spec)) {
  State& s = *state_;
  if (spec.block_bytes == 0 || spec.block_bytes % 4096 != 0 || spec.queue_depth == 0)
    throw BenchError("load spec: block size must be a multiple of 4096, queue depth above 0");
  if ((spec.pattern == Pattern::kStrided || spec.pattern == Pattern::kScattered) &&
      (spec.stride_bytes < spec.block_bytes || spec.stride_bytes % spec.block_bytes != 0))
    throw BenchError("load spec: the stride must be a multiple of the block size");
  s.region = spec.region_bytes ? spec.region_bytes : target.size_bytes();
  if (s.region > target.size_bytes() || s.region < spec.block_bytes)
    throw BenchError("load spec: region does not fit the target");
  s.blocks = s.region / spec.block_bytes;
  s.next_index = spec.first_index;
  // An SQE per chunk piece: 1 MiB requests on 64 KiB chunks take 16 each.
  s.ring = check(IoRing::create(256), "create io_uring");
  for (uint32_t i = 0; i < spec.queue_depth; ++i) {
    s.buffers.emplace_back(spec.block_bytes, spec.seed + i + 1);
    auto slot = std::make_unique<LoadSlot>();
    slot->driver = this;
    slot->req.buffer = s.buffers.back().data();
    s.slots.push_back(std::move(slot));
  }
}

LoadDriver::~LoadDriver() = default;

void LoadDriver::issue(LoadSlot& slot) {
  State& s = *state_;
  uint64_t now = now_ns();
  if (s.stopped || interrupted() || (s.spec.max_ops && s.issued >= s.spec.max_ops) ||
      (s.deadline_ns && now >= s.deadline_ns) ||
      (s.spec.stop && s.spec.stop->load(std::memory_order_relaxed))) {
    s.stopped = true;
    return;
  }
  const uint64_t block = s.spec.block_bytes;
  uint64_t offset = 0;
  switch (s.spec.pattern) {
    case Pattern::kRandom:
      offset = s.rng() % s.blocks * block;
      break;
    case Pattern::kSequential:
      offset = s.next_index++ % s.blocks * block;
      break;
    case Pattern::kStrided:
      offset = s.next_index++ * s.spec.stride_bytes % (s.blocks * block) / block * block;
      break;
    case Pattern::kScattered: {
      uint64_t within = s.rng() % (s.spec.stride_bytes / block) * block;
      offset = (s.next_index++ * s.spec.stride_bytes + within) % (s.blocks * block);
      break;
    }
  }
  IoRequest& req = slot.req;
  req.op = s.spec.op;
  req.flags = s.spec.op == IoOp::kWrite ? s.spec.write_flags : 0;
  req.offset = offset;
  req.length = block;
  slot.started_ns = now;
  ++s.issued;
  ++s.inflight;
  s.target.start(*s.ring, slot);
}

void LoadDriver::finished(LoadSlot& slot, int result) {
  State& s = *state_;
  uint64_t now = now_ns();
  --s.inflight;
  s.last_completion_ns = now;
  if (result < 0) {
    if (s.result.errors++ == 0) s.result.first_error = result;
    s.stopped = true;
  } else {
    ++s.result.ops;
    s.result.bytes += slot.req.length;
    double us = static_cast<double>(now - slot.started_ns) / 1e3;
    s.result.latency_sum_us += us;
    s.result.latency_max_us = std::max(s.result.latency_max_us, us);
    if (s.spec.record_latencies) s.result.latencies_us.push_back(us);
  }
  issue(slot);
}

LoadResult LoadDriver::run() {
  State& s = *state_;
  double cpu0 = cpu_seconds();
  s.start_ns = now_ns();
  s.last_completion_ns = s.start_ns;
  if (s.spec.seconds > 0) s.deadline_ns = s.start_ns + static_cast<uint64_t>(s.spec.seconds * 1e9);
  for (auto& slot : s.slots) issue(*slot);
  while (s.inflight > 0) {
    int rc = s.ring->run_once(true, 100);
    if (rc < 0 && rc != -EINTR) throw BenchError(std::string("io_uring: ") + std::strerror(-rc));
  }
  s.result.seconds = static_cast<double>(s.last_completion_ns - s.start_ns) / 1e9;
  s.result.cpu_seconds = cpu_seconds() - cpu0;
  throw_if_interrupted();
  return s.result;
}

LoadResult run_load(IoTarget& target, const LoadSpec& spec) {
  LoadDriver driver(target, spec);
  return driver.run();
}

LoadResult run_load_checked(IoTarget& target, const LoadSpec& spec, const std::string& what) {
  LoadResult r = run_load(target, spec);
  if (r.errors)
    throw BenchError(what + ": " + std::to_string(r.errors) + " requests failed, the first with " +
                     std::strerror(-r.first_error));
  return r;
}

Comparison compare_loads(IoTarget& a, IoTarget& b, const LoadSpec& spec, int rounds,
                         const std::string& what) {
  Comparison c;
  rounds = std::max(rounds, 1);
  LoadSpec round = spec;
  round.seconds = spec.seconds / rounds;
  for (int i = 0; i < rounds; ++i) {
    round.seed = spec.seed + static_cast<uint64_t>(i);
    if (i % 2 == 0) {
      c.a += run_load_checked(a, round, what);
      c.b += run_load_checked(b, round, what);
    } else {
      c.b += run_load_checked(b, round, what);
      c.a += run_load_checked(a, round, what);
    }
  }
  return c;
}

LoadResult fill_sequential(IoTarget& target, uint64_t bytes, const std::string& what) {
  LoadSpec spec;
  spec.op = IoOp::kWrite;
  spec.pattern = Pattern::kSequential;
  spec.block_bytes = static_cast<uint32_t>(std::min<uint64_t>(bytes, 1 << 20));
  spec.queue_depth = 32;
  spec.region_bytes = bytes;
  spec.max_ops = bytes / spec.block_bytes;
  return run_load_checked(target, spec, what);
}

}  // namespace pxd::bench
