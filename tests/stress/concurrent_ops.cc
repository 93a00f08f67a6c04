// Many requests in flight at once: on one ring (allocation, copy-on-write, waiting and
// re-dispatch inside shared chunks), and from two threads with a snapshot or a clone taken
// while they write.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "tests/stress/stress_run.h"

namespace pxd::stress {

using testing::AlignedBuf;

namespace {

// One piece of a concurrent operation and the data it writes.
struct Planned {
  IoOp op = IoOp::kWrite;
  uint32_t flags = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<uint8_t> data;  // kWrite
};

// Copies `plan` into items with buffers carved from `buf`, on `volume`.
std::vector<BatchItem> make_items(const std::vector<Planned>& plan, Volume* volume,
                                  AlignedBuf& buf) {
  std::vector<BatchItem> items;
  uint64_t at = 0;
  for (const Planned& p : plan) {
    BatchItem item;
    item.volume = volume;
    item.op = p.op;
    item.flags = p.flags;
    item.offset = p.offset;
    item.length = p.length;
    if (p.op == IoOp::kRead || p.op == IoOp::kWrite) {
      item.buffer = buf.data + at;
      if (p.op == IoOp::kWrite)
        std::memcpy(item.buffer, p.data.data(), p.length);
      else
        std::memset(item.buffer, 0xEE, p.length);
      at += p.length;
    }
    items.push_back(item);
  }
  return items;
}

uint64_t buffer_bytes(const std::vector<Planned>& plan) {
  uint64_t n = 0;
  for (const Planned& p : plan) n += p.length;
  return n + kBlock;
}

}  // namespace

void StressRun::op_queue_depth() {
  auto vols = model_.names(false);
  if (vols.empty()) return;
  const std::string vol = pick(vols);
  // Often share the chunks with a new snapshot first, so that the requests copy.
  if (chance(0.35) && can_add(model_.at(vol).size(), true)) {
    std::string snap = new_name("s");
    what_ = "queue-depth: snapshot " + vol + " as " + snap;
    auto r = engine_.pool().create_snapshot(vol, snap);
    REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
    model_.create_snapshot(vol, snap);
  }
  const ModelObject& obj = model_.at(vol);
  const uint64_t blocks = obj.size() / kBlock;
  const uint64_t chunks = (blocks + kBlocksPerChunk - 1) / kBlocksPerChunk;
  // Mostly around chunks that are mapped (and maybe shared), else anywhere.
  uint64_t first_chunk = uniform(0, chunks - 1);
  if (!obj.chunks.empty() && chance(0.7)) {
    auto it = obj.chunks.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(uniform(0, obj.chunks.size() - 1)));
    first_chunk = it->first;
  }
  uint64_t span = uniform(2, 4);
  uint64_t first = first_chunk * kBlocksPerChunk;
  uint64_t end = std::min((first_chunk + span) * kBlocksPerChunk, blocks);
  auto pieces = cut_region(first, end);
  std::shuffle(pieces.begin(), pieces.end(), rng_);
  pieces.resize(std::min<size_t>(pieces.size(), uniform(8, 32)));

  std::vector<Planned> plan;
  for (auto [block, count] : pieces) {
    Planned p;
    p.offset = block * kBlock;
    p.length = count * kBlock;
    uint64_t r = uniform(0, 99);
    if (count == kBlocksPerChunk) {
      p.op = r < 60 ? IoOp::kWrite : r < 80 ? IoOp::kDiscard : IoOp::kWriteZeroes;
    } else {
      p.op = r < 70   ? IoOp::kWrite
             : r < 75 ? (p.flags = kIoFua, IoOp::kWrite)
             : r < 85 ? IoOp::kRead
             : r < 92 ? IoOp::kDiscard
                      : IoOp::kWriteZeroes;
    }
    if (p.op == IoOp::kWrite) p.data = next_pattern(p.offset, p.length);
    plan.push_back(std::move(p));
  }
  if (chance(0.3)) plan.insert(plan.begin() + uniform(0, plan.size()), Planned{IoOp::kFlush});
  // Sometimes through two handles of the same volume.
  std::shared_ptr<Volume> second;
  if (chance(0.3)) {
    auto h = engine_.pool().open_volume(vol);
    REQUIRE_MESSAGE(h.has_value(), h.error().to_string());
    second = h.value();
  }
  what_ = "queue-depth: " + std::to_string(plan.size()) + " requests on " + vol + " in blocks [" +
          std::to_string(first) + ", " + std::to_string(end) + ")" +
          (second ? " through two handles" : "");

  AlignedBuf buf(buffer_bytes(plan));
  Volume& primary = engine_.handle(vol);
  auto items = make_items(plan, &primary, buf);
  for (size_t i = 1; second && i < items.size(); i += 2) items[i].volume = second.get();
  REQUIRE(run_batch(engine_.io().ring(), items));
  for (size_t i = 0; i < items.size(); ++i) {
    INFO("request " << i << ": op " << static_cast<int>(items[i].op) << " offset "
                    << items[i].offset << " length " << items[i].length);
    REQUIRE(items[i].result == 0);
    CHECK_FALSE(items[i].done_inside_submit);
    if (items[i].op == IoOp::kRead) {
      // Disjoint from every write of the batch: the data from before it.
      std::string diff = describe_difference(model_.at(vol).data.data() + items[i].offset,
                                             reinterpret_cast<uint8_t*>(items[i].buffer),
                                             items[i].length, items[i].offset);
      REQUIRE_MESSAGE(diff.empty(), "volume " << vol << ": " << diff);
    }
  }
  for (const Planned& p : plan) {
    if (p.op == IoOp::kWrite) model_.write(vol, p.offset, p.length, p.data.data());
    if (p.op == IoOp::kDiscard || p.op == IoOp::kWriteZeroes) model_.zero(vol, p.offset, p.length);
  }
  second.reset();
  check_read(vol, first * kBlock, (end - first) * kBlock);
}

void StressRun::op_two_threads() {
  auto vols = model_.names(false);
  if (vols.empty()) return;
  const std::string vol = pick(vols);
  const uint64_t size = model_.at(vol).size();
  const uint64_t blocks = size / kBlock;
  const uint64_t chunks = (blocks + kBlocksPerChunk - 1) / kBlocksPerChunk;
  uint64_t span = uniform(2, 6);
  uint64_t first_chunk = uniform(0, chunks - 1);
  uint64_t first = first_chunk * kBlocksPerChunk;
  uint64_t end = std::min((first_chunk + span) * kBlocksPerChunk, blocks);
  auto pieces = cut_region(first, end);
  std::shuffle(pieces.begin(), pieces.end(), rng_);
  pieces.resize(std::min<size_t>(pieces.size(), uniform(16, 64)));
  // The threads write into the same chunks, never the same blocks.
  std::vector<Planned> plans[2];
  std::set<uint64_t> touched;
  for (size_t i = 0; i < pieces.size(); ++i) {
    Planned p;
    p.offset = pieces[i].first * kBlock;
    p.length = pieces[i].second * kBlock;
    p.flags = chance(0.1) ? uint32_t{kIoFua} : 0u;
    p.data = next_pattern(p.offset, p.length);
    for (uint64_t c = p.offset / kChunk; c * kChunk < p.offset + p.length; ++c) touched.insert(c);
    plans[i % 2].push_back(std::move(p));
  }
  size_t depth[2] = {uniform(1, 16), uniform(1, 16)};

  // What the main thread does to the volume while the writes run.
  enum class During { kNothing, kSnapshot, kClone, kRemoveSnapshot, kCloneSnapshot, kGrow };
  static const char* const kDuringNames[] = {"",          ", snapshot ",         ", clone ",
                                             ", remove ", ", clone a snapshot ", ", grow"};
  During during = static_cast<During>(uniform(0, 5));
  // Known bug 1: writes after a clone of the volume land in the clone's chunks.
  std::string other;   // the snapshot or clone made, or the snapshot removed
  std::string source;  // kCloneSnapshot: one of the volume's snapshots
  uint64_t new_size = std::min(size + uniform(1, 256) * kBlock, kMaxStressVolumeBytes);
  if (during == During::kSnapshot && can_add(size, true)) {
    other = new_name("s");
  } else if (during == During::kClone && can_add(size, false)) {
    other = new_name("c");
  } else if (during == During::kRemoveSnapshot && !model_.at(vol).snapshots.empty()) {
    other = pick(model_.at(vol).snapshots);
    engine_.close(other);
  } else if (during == During::kCloneSnapshot && !model_.at(vol).snapshots.empty() &&
             can_add(size, false)) {
    source = pick(model_.at(vol).snapshots);
    other = new_name("c");
  } else if (during != During::kGrow || new_size == size ||
             model_.chunk_budget() + 128 + (new_size - size) / kChunk + 1 >
                 engine_.pool().usage().capacity_bytes / kChunk) {
    during = During::kNothing;
  }
  uint64_t delay_us = uniform(0, 400);
  what_ = "two-threads: " + std::to_string(pieces.size()) + " writes to " + vol + " in blocks [" +
          std::to_string(first) + ", " + std::to_string(end) + ")" +
          kDuringNames[static_cast<int>(during)] + other + (source.empty() ? "" : " of " + source);

  Volume& volume = engine_.handle(vol);
  AlignedBuf buf0(buffer_bytes(plans[0])), buf1(buffer_bytes(plans[1]));
  std::vector<BatchItem> items[2] = {make_items(plans[0], &volume, buf0),
                                     make_items(plans[1], &volume, buf1)};
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  bool ring_ok[2] = {false, false};
  std::string ring_error[2];
  auto worker = [&](int t) {
    auto ring = IoRing::create(64);
    ready.fetch_add(1);
    while (!go.load()) std::this_thread::yield();
    if (ring.has_error()) {
      ring_error[t] = ring.error().to_string();
      return;
    }
    ring_ok[t] = run_batch(*ring.value(), items[t], depth[t]);
  };
  std::thread t0(worker, 0), t1(worker, 1);
  while (ready.load() < 2) std::this_thread::yield();
  go.store(true);
  Status status;
  std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
  auto status_of = [](const auto& r) { return r.has_error() ? r.error() : Status::ok(); };
  const int64_t control_start = now_ns();
  switch (during) {
    case During::kNothing:
      break;
    case During::kSnapshot:
      status = status_of(engine_.pool().create_snapshot(vol, other));
      break;
    case During::kClone:
      status = status_of(engine_.pool().clone(vol, other));
      break;
    case During::kRemoveSnapshot:
      status = engine_.pool().remove(other);
      break;
    case During::kCloneSnapshot:
      status = status_of(engine_.pool().clone(source, other));
      break;
    case During::kGrow:
      status = status_of(engine_.pool().resize(vol, new_size));
      break;
  }
  const int64_t control_end = now_ns();
  t0.join();
  t1.join();
  for (int t = 0; t < 2; ++t) {
    REQUIRE_MESSAGE(ring_ok[t], "thread " << t << ": " << ring_error[t]);
    for (const BatchItem& item : items[t]) {
      INFO("thread " << t << " write at " << item.offset << " length " << item.length);
      REQUIRE(item.result == 0);
      CHECK_FALSE(item.done_inside_submit);
    }
  }
  REQUIRE_MESSAGE(status.is_ok(), status.to_string());

  const std::vector<uint8_t> before = model_.at(vol).data;
  const std::map<uint64_t, uint64_t> ids_before = model_.at(vol).chunks;
  for (int t = 0; t < 2; ++t) {
    for (const Planned& p : plans[t]) model_.write(vol, p.offset, p.length, p.data.data());
  }
  if (during == During::kRemoveSnapshot) {
    // Written before or after the snapshot went, the volume ends with chunks of its own.
    model_.remove(other);
    deleted_names_.push_back(other);
  } else if (during == During::kCloneSnapshot) {
    model_.clone(source, other);  // a snapshot does not change: no timing to learn
    check_object(other);
  } else if (during == During::kGrow) {
    CHECK(volume.size_bytes() == new_size);
    model_.grow(vol, new_size);
    check_read(vol, size / kChunk * kChunk, new_size - size / kChunk * kChunk);
  }
  check_read(vol, first * kBlock, (end - first) * kBlock);
  if (during == During::kSnapshot || during == During::kClone) {
    std::vector<const BatchItem*> writes;
    for (const auto& list : items)
      for (const BatchItem& item : list) writes.push_back(&item);
    learn_capture(vol, other, during == During::kClone, before, ids_before, touched, writes,
                  control_start, control_end);
  }
}

void StressRun::learn_capture(const std::string& vol, const std::string& capture, bool clone,
                              const std::vector<uint8_t>& before,
                              const std::map<uint64_t, uint64_t>& ids_before,
                              const std::set<uint64_t>& touched,
                              const std::vector<const BatchItem*>& writes, int64_t start_ns,
                              int64_t end_ns) {
  // Each block shows the old or the new data: the new if its write completed before the
  // capture began, the old if it was submitted after the capture returned, else either.
  // From that, which chunks the capture shares with the volume.
  const uint64_t size = before.size();
  AlignedBuf seen(size);
  REQUIRE(engine_.io().run(engine_.handle(capture), IoOp::kRead, 0, size, seen.data) == 0);
  const auto* got = reinterpret_cast<const uint8_t*>(seen.data);
  const std::vector<uint8_t>& after = model_.at(vol).data;
  for (uint64_t off = 0; off < size; off += kBlock) {
    bool old_data = std::memcmp(got + off, before.data() + off, kBlock) == 0;
    bool new_data = std::memcmp(got + off, after.data() + off, kBlock) == 0;
    bool either = old_data || new_data;
    REQUIRE_MESSAGE(either, capture
                                << " (taken of " << vol << " during writes), block " << off / kBlock
                                << " is neither the data before nor after: "
                                << describe_difference(after.data() + off, got + off, kBlock, off));
  }
  for (const BatchItem* w : writes) {
    bool must_show = w->completed_ns<start_ns, must_not = w->submitted_ns> end_ns;
    for (uint64_t off = w->offset; off < w->offset + w->length; off += kBlock) {
      bool shows = std::memcmp(got + off, after.data() + off, kBlock) == 0;
      INFO(capture << " (taken of " << vol << " during writes), block " << off / kBlock);
      if (must_show) CHECK_MESSAGE(shows, "misses a write that completed before it was taken");
      if (must_not) CHECK_MESSAGE(!shows, "shows a write submitted after it was taken");
    }
  }
  if (clone) {
    model_.clone(vol, capture);
  } else {
    model_.create_snapshot(vol, capture);
  }
  model_.set_bytes(capture, std::vector<uint8_t>(got, got + size));
  for (uint64_t c : touched) {
    uint64_t from = c * kChunk, len = std::min<uint64_t>(kChunk, size - from);
    auto same = [&](const uint8_t* a, const uint8_t* b) { return std::memcmp(a, b, len) == 0; };
    auto old_id = ids_before.find(c);
    if (same(got + from, after.data() + from)) continue;  // every write came first: shared
    if (old_id == ids_before.end() &&
        std::all_of(got + from, got + from + len, [](uint8_t b) { return b == 0; })) {
      model_.set_chunk(capture, c, Model::kUnmapped);  // allocated after the capture
    } else if (old_id != ids_before.end() && same(got + from, before.data() + from)) {
      // Every write came after: the capture keeps the old chunk, the volume copied.
      model_.set_chunk(capture, c, old_id->second);
      if (model_.at(vol).chunks.at(c) == old_id->second)
        model_.set_chunk(vol, c, model_.fresh_identity());
    } else {
      // Some writes before, some after: the volume copied what the capture now has alone.
      model_.set_chunk(capture, c, model_.fresh_identity());
    }
  }
}

}  // namespace pxd::stress
