#include "tests/stress/stress_run.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <thread>

#include "tests/support/pool_fixture.h"

namespace pxd::stress {

using testing::AlignedBuf;

const std::vector<StressRun::WeightedOp>& StressRun::ops() {
  static const std::vector<WeightedOp> table = {
      {"write", 40, &StressRun::op_write},
      {"fua-write", 8, &StressRun::op_fua_write},
      {"discard", 10, &StressRun::op_discard},
      {"write-zeroes", 10, &StressRun::op_write_zeroes},
      {"flush", 4, &StressRun::op_flush},
      {"read", 24, &StressRun::op_read},
      {"create-volume", 6, &StressRun::op_create_volume},
      {"snapshot", 6, &StressRun::op_snapshot},
      {"read-snapshot", 10, &StressRun::op_read_snapshot},
      {"clone", 4, &StressRun::op_clone},
      {"restore", 4, &StressRun::op_restore},
      {"remove-snapshot", 6, &StressRun::op_remove_snapshot},
      {"remove-volume", 4, &StressRun::op_remove_volume},
      {"grow", 4, &StressRun::op_grow},
      {"close-handles", 2, &StressRun::op_close_handles},
      {"reopen", 1, &StressRun::op_reopen},
      {"bad-io", 4, &StressRun::op_bad_io},
      {"bad-control", 4, &StressRun::op_bad_control},
      {"queue-depth", 10, &StressRun::op_queue_depth},
      {"two-threads", 4, &StressRun::op_two_threads},
  };
  return table;
}

StressRun::StressRun(uint64_t seed)
    : seed_(seed), rng_(seed), model_(kChunk), engine_(kPoolBytes, kChunk) {
  const char* v = std::getenv("PXD_STRESS_VERBOSE");
  verbose_ = v && *v && *v != '0';
  const char* every = std::getenv("PXD_STRESS_CHECK_EVERY");
  if (every && std::atoi(every) > 0) check_every_ = static_cast<uint64_t>(std::atoi(every));
}

std::string StressRun::context() const {
  std::ostringstream out;
  out << "PXD_STRESS_SEED=" << seed_ << ", operation " << op_index_ << ": " << what_;
  return out.str();
}

void StressRun::run(uint64_t count) {
  INFO(context());
  uint32_t total = 0;
  for (const auto& op : ops()) total += op.weight;
  // Something to work on from the start.
  what_ = "initial volumes";
  for (int i = 0; i < 2; ++i) op_create_volume();
  for (op_index_ = 1; op_index_ <= count; ++op_index_) {
    uint64_t r = uniform(0, total - 1);
    const WeightedOp* chosen = &ops().front();
    for (const auto& op : ops()) {
      if (r < op.weight) {
        chosen = &op;
        break;
      }
      r -= op.weight;
    }
    what_ = chosen->name;
    auto started = std::chrono::steady_clock::now();
    (this->*chosen->fn)();
    OpStats& stats = stats_[chosen->name];
    ++stats.count;
    stats.micros += std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
    if (verbose_) std::cerr << context() << "\n";
    if (op_index_ % check_every_ == 0) check_space();
    if (op_index_ % 64 == 0) check_listing();
  }
}

std::string StressRun::summary() const {
  std::ostringstream out;
  out << "operations run (count, total ms):";
  for (const auto& [name, stats] : stats_)
    out << " " << name << " " << stats.count << " " << stats.micros / 1000 << ";";
  return out.str();
}

void StressRun::finish() {
  INFO(context());
  what_ = "final check of every object";
  check_listing();
  check_space();
  check_everything();
  what_ = "final removal of everything";
  engine_.close_all();
  for (const std::string& snap : model_.names(true)) {
    Status s = engine_.pool().remove(snap);
    REQUIRE_MESSAGE(s.is_ok(), "remove " << snap << ": " << s.to_string());
    model_.remove(snap);
  }
  check_space();
  for (const std::string& vol : model_.names(false)) {
    Status s = engine_.pool().remove(vol);
    REQUIRE_MESSAGE(s.is_ok(), "remove " << vol << ": " << s.to_string());
    model_.remove(vol);
  }
  for (int round = 0; round < 2; ++round) {
    check_space();
    PoolUsage u = engine_.pool().usage();
    CHECK(u.used_bytes == 0);
    CHECK(u.free_bytes == u.capacity_bytes);
    CHECK(u.volumes == 0);
    CHECK(u.snapshots == 0);
    CHECK(engine_.pool().list().empty());
    what_ = "reopen of the empty pool";
    std::string err = engine_.reopen();
    REQUIRE_MESSAGE(err.empty(), err);
  }
}

uint64_t StressRun::uniform(uint64_t lo, uint64_t hi) {
  return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
}

bool StressRun::chance(double p) {
  return std::uniform_real_distribution<double>(0, 1)(rng_) < p;
}

std::pair<uint64_t, uint64_t> StressRun::pick_range(uint64_t size) {
  const uint64_t blocks = size / kBlock;
  const uint64_t chunks = (blocks + kBlocksPerChunk - 1) / kBlocksPerChunk;
  uint64_t first = 0, count = 1;
  switch (uniform(0, 9)) {
    case 0:
    case 1:
    case 2:
    case 3:  // small
      count = std::min<uint64_t>(uniform(1, 4), blocks);
      first = uniform(0, blocks - count);
      break;
    case 4:
    case 5: {  // across a chunk boundary
      if (chunks < 2) return pick_range(size);
      uint64_t boundary = uniform(1, chunks - 1) * kBlocksPerChunk;
      first = boundary - uniform(1, std::min<uint64_t>(kBlocksPerChunk, boundary));
      count = std::min(boundary + uniform(1, kBlocksPerChunk), blocks) - first;
      break;
    }
    case 6:
    case 7: {  // whole chunks (the tail chunk may be short)
      uint64_t c = uniform(0, chunks - 1);
      first = c * kBlocksPerChunk;
      count = std::min((c + uniform(1, 3)) * kBlocksPerChunk, blocks) - first;
      break;
    }
    case 8:  // large
      count = uniform(1, std::min<uint64_t>(blocks, 512));
      first = uniform(0, blocks - count);
      break;
    default:  // the tail, from a chunk boundary or not
      first = chance(0.5) ? (chunks - 1) * kBlocksPerChunk : uniform(0, blocks - 1);
      count = blocks - first;
      break;
  }
  return {first * kBlock, count * kBlock};
}

std::vector<std::pair<uint64_t, uint64_t>> StressRun::cut_region(uint64_t first, uint64_t end) {
  std::vector<std::pair<uint64_t, uint64_t>> pieces;
  uint64_t pos = first;
  while (pos < end) {
    uint64_t n;
    if (pos % kBlocksPerChunk == 0 && end - pos >= kBlocksPerChunk && chance(0.12)) {
      n = kBlocksPerChunk;
    } else {
      n = std::min<uint64_t>(end - pos, chance(0.6) ? 1 : uniform(2, 4));
    }
    pieces.emplace_back(pos, n);
    pos += n;
  }
  return pieces;
}

std::string StressRun::new_name(const char* prefix) {
  if (!deleted_names_.empty() && chance(0.25)) {
    size_t i = uniform(0, deleted_names_.size() - 1);
    std::string name = deleted_names_[i];
    deleted_names_.erase(deleted_names_.begin() + static_cast<std::ptrdiff_t>(i));
    return name;
  }
  return prefix + std::to_string(++name_counter_);
}

std::vector<uint8_t> StressRun::next_pattern(uint64_t offset, uint64_t length) {
  std::vector<uint8_t> data(length);
  fill_pattern(data.data(), offset, length, ++pattern_counter_);
  return data;
}

bool StressRun::can_add(uint64_t size_bytes, bool snapshot) {
  size_t count = model_.names(snapshot).size();
  if (count >= (snapshot ? kMaxSnapshots : kMaxVolumes)) return false;
  // Keep the pool from filling: every object could map all of its chunks, plus copies in
  // flight. -ENOSPC has its own unit tests.
  uint64_t capacity = engine_.pool().usage().capacity_bytes / kChunk;
  return model_.chunk_budget() + (size_bytes + kChunk - 1) / kChunk + 128 <= capacity;
}

void StressRun::check_read(const std::string& name, uint64_t offset, uint64_t length) {
  const ModelObject& obj = model_.at(name);
  AlignedBuf buf(length);
  std::memset(buf.data, 0xEE, length);
  int rc = engine_.io().run(engine_.handle(name), IoOp::kRead, offset, length, buf.data);
  REQUIRE_MESSAGE(rc == 0, "read " << name << " [" << offset << ", +" << length << ") -> " << rc);
  std::string diff = describe_difference(obj.data.data() + offset,
                                         reinterpret_cast<uint8_t*>(buf.data), length, offset);
  REQUIRE_MESSAGE(diff.empty(), std::string(obj.snapshot ? "snapshot " : "volume ")
                                    << name << ", read [" << offset << ", +" << length
                                    << "): " << diff);
}

void StressRun::check_everything() {
  for (const auto& [name, obj] : model_.objects()) check_object(name);
}

void StressRun::check_listing() {
  std::vector<ObjectInfo> list = engine_.pool().list();
  REQUIRE(list.size() == model_.objects().size());
  for (const ObjectInfo& info : list) {
    INFO("object " << info.name);
    REQUIRE(model_.exists(info.name));
    const ModelObject& obj = model_.at(info.name);
    CHECK(info.is_snapshot == obj.snapshot);
    CHECK(info.size_bytes == obj.size());
    CHECK(info.block_size == kBlock);
    if (obj.snapshot) {
      CHECK(info.volume == obj.volume);
    } else {
      CHECK(info.snapshots == obj.snapshots);
      CHECK(info.origin == obj.origin);
    }
    CHECK(info.exclusive_bytes == model_.exclusive_chunks(info.name) * kChunk);
    CHECK(info.shared_bytes == model_.shared_chunks(info.name) * kChunk);
    CHECK(info.open_handles == (engine_.is_open(info.name) ? 1u : 0u));
  }
}

void StressRun::check_space() {
  // Reclaiming runs on the metadata thread once the requests that freed the chunks are done;
  // on a loaded machine its syncs can take longer than wait_for_reclaim's two seconds.
  auto started = std::chrono::steady_clock::now();
  auto waited = [&] { return std::chrono::steady_clock::now() - started; };
  testing::wait_for_reclaim(engine_.pool());
  while (engine_.pool().usage().reclaiming_bytes != 0 && waited() < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (waited() > std::chrono::seconds(2)) {
    MESSAGE("reclaiming took "
            << std::chrono::duration_cast<std::chrono::milliseconds>(waited()).count() << " ms");
  }
  PoolUsage u = engine_.pool().usage();
  CHECK(u.used_bytes + u.free_bytes + u.reclaiming_bytes == u.capacity_bytes);
  CHECK(u.reclaiming_bytes == 0);
  CHECK(u.volumes == model_.names(false).size());
  CHECK(u.snapshots == model_.names(true).size());
  REQUIRE_MESSAGE(
      u.used_bytes == model_.used_chunks() * kChunk,
      "pool uses " << u.used_bytes / kChunk << " chunks, the model " << model_.used_chunks());
  // Exclusive and shared bytes are counted as extents change: they equal a walk of the
  // extents (and check_listing compares them with the model).
  std::vector<ObjectInfo> counted = engine_.pool().list();
  std::vector<ObjectInfo> walked = engine_.pool().list_recounted();
  REQUIRE(counted.size() == walked.size());
  for (size_t i = 0; i < counted.size(); ++i) {
    INFO("object " << counted[i].name << ": counted against walked");
    CHECK(counted[i].exclusive_bytes == walked[i].exclusive_bytes);
    CHECK(counted[i].shared_bytes == walked[i].shared_bytes);
  }
}

void StressRun::write_once(uint32_t flags) {
  auto vols = model_.names(false);
  if (vols.empty()) return;
  const std::string& name = pick(vols);
  auto [offset, length] = pick_range(model_.at(name).size());
  what_ = std::string(flags & kIoFua ? "fua-write " : "write ") + name + " [" +
          std::to_string(offset) + ", +" + std::to_string(length) + ")";
  std::vector<uint8_t> data = next_pattern(offset, length);
  int rc = engine_.io().write(engine_.handle(name), offset, data, flags);
  REQUIRE(rc == 0);
  model_.write(name, offset, length, data.data());
  if (chance(0.3)) check_read(name, offset, length);
}

void StressRun::zero_once(IoOp op) {
  auto vols = model_.names(false);
  if (vols.empty()) return;
  const std::string& name = pick(vols);
  auto [offset, length] = pick_range(model_.at(name).size());
  what_ = std::string(op == IoOp::kDiscard ? "discard " : "write-zeroes ") + name + " [" +
          std::to_string(offset) + ", +" + std::to_string(length) + ")";
  int rc = engine_.io().run(engine_.handle(name), op, offset, length, nullptr);
  REQUIRE(rc == 0);
  model_.zero(name, offset, length);
  if (chance(0.5)) {
    // Around the range too: a discard must not zero its neighbours.
    uint64_t first = offset >= kChunk ? offset - kChunk : 0;
    uint64_t end = std::min(offset + length + kChunk, model_.at(name).size());
    check_read(name, first, end - first);
  }
}

void StressRun::op_flush() {
  auto all = model_.names(chance(0.2));
  if (all.empty()) return;
  const std::string& name = pick(all);
  what_ = "flush " + name;
  REQUIRE(engine_.io().flush(engine_.handle(name)) == 0);
}

void StressRun::op_read() {
  auto vols = model_.names(false);
  if (vols.empty()) return;
  const std::string& name = pick(vols);
  if (chance(0.1)) {
    what_ = "read all of " + name;
    check_object(name);
    return;
  }
  auto [offset, length] = pick_range(model_.at(name).size());
  what_ = "read " + name + " [" + std::to_string(offset) + ", +" + std::to_string(length) + ")";
  check_read(name, offset, length);
}

void StressRun::op_create_volume() {
  uint64_t size = chance(0.5) ? uniform(16, 128) * kChunk : uniform(256, 2048) * kBlock;
  if (!can_add(size, false)) return;
  std::string name = new_name("v");
  what_ = "create-volume " + name + " of " + std::to_string(size);
  auto r = engine_.pool().create_volume(VolumeSpec{name, size, kBlock, {}, {}});
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  CHECK(r.value().size_bytes == size);
  model_.create_volume(name, size);
  // A reused name must not show the old object's data.
  if (chance(0.3)) check_object(name);
}

void StressRun::op_snapshot() {
  auto vols = model_.names(false);
  if (vols.empty()) return;
  const std::string& vol = pick(vols);
  if (!can_add(model_.at(vol).size(), true)) return;
  std::string name = new_name("s");
  what_ = "snapshot " + vol + " as " + name;
  auto r = engine_.pool().create_snapshot(vol, name);
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  model_.create_snapshot(vol, name);
}

void StressRun::op_read_snapshot() {
  auto snaps = model_.names(true);
  if (snaps.empty()) return;
  const std::string& name = pick(snaps);
  if (chance(0.2)) {
    what_ = "read all of snapshot " + name;
    check_object(name);
  } else {
    auto [offset, length] = pick_range(model_.at(name).size());
    what_ = "read snapshot " + name + " [" + std::to_string(offset) + ", +" +
            std::to_string(length) + ")";
    check_read(name, offset, length);
  }
  // Sometimes keep the handle: its map was made at open, later writes must not show.
  if (chance(0.5)) engine_.close(name);
}

void StressRun::op_clone() {
  bool of_snapshot = chance(0.5);
  auto sources = model_.names(of_snapshot);
  if (sources.empty()) return;
  const std::string& source = pick(sources);
  if (!can_add(model_.at(source).size(), false)) return;
  std::string name = new_name("c");
  what_ = "clone " + source + " as " + name;
  auto r = engine_.pool().clone(source, name);
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  model_.clone(source, name);
  auto [offset, length] = pick_range(model_.at(name).size());
  check_read(name, offset, length);
}

void StressRun::op_restore() {
  auto snaps = model_.names(true);
  if (snaps.empty()) return;
  const std::string& snap = pick(snaps);
  const std::string vol = model_.at(snap).volume;
  what_ = "restore " + vol + " to " + snap;
  if (chance(0.2)) {
    engine_.handle(vol);
    CHECK(engine_.pool().restore(vol, snap).code() == StatusCode::kBusy);
  }
  engine_.close(vol);
  Status s = engine_.pool().restore(vol, snap);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  model_.restore(vol, snap);
  if (chance(0.5)) check_object(vol);
}

void StressRun::op_remove_snapshot() {
  auto snaps = model_.names(true);
  if (snaps.empty()) return;
  const std::string name = pick(snaps);
  what_ = "remove snapshot " + name;
  engine_.close(name);
  Status s = engine_.pool().remove(name);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  model_.remove(name);
  deleted_names_.push_back(name);
}

void StressRun::op_remove_volume() {
  auto vols = model_.names(false);
  if (vols.empty()) return;
  const std::string name = pick(vols);
  what_ = "remove volume " + name;
  engine_.close(name);
  Status s = engine_.pool().remove(name);
  if (!model_.at(name).snapshots.empty()) {
    // Refused, and nothing changed.
    REQUIRE_MESSAGE(s.code() == StatusCode::kFailedPrecondition, s.to_string());
    auto [offset, length] = pick_range(model_.at(name).size());
    check_read(name, offset, length);
    return;
  }
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  model_.remove(name);
  deleted_names_.push_back(name);
}

void StressRun::op_grow() {
  auto vols = model_.names(false);
  if (vols.empty()) return;
  const std::string& name = pick(vols);
  uint64_t old_size = model_.at(name).size();
  uint64_t new_size = std::min(old_size + uniform(1, 512) * kBlock, kMaxStressVolumeBytes);
  if (new_size <= old_size) return;
  uint64_t extra = (new_size + kChunk - 1) / kChunk - (old_size + kChunk - 1) / kChunk;
  uint64_t capacity = engine_.pool().usage().capacity_bytes / kChunk;
  if (model_.chunk_budget() + extra + 128 > capacity) return;
  what_ = "grow " + name + " from " + std::to_string(old_size) + " to " + std::to_string(new_size);
  bool online = chance(0.7);
  Volume* handle = online ? &engine_.handle(name) : nullptr;
  auto r = engine_.pool().resize(name, new_size);
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  CHECK(r.value().size_bytes == new_size);
  if (handle) CHECK(handle->size_bytes() == new_size);
  model_.grow(name, new_size);
  // The new space reads zeros, including the rest of what was the tail chunk.
  uint64_t from = old_size / kChunk * kChunk;
  check_read(name, from, new_size - from);
}

void StressRun::op_close_handles() {
  what_ = "close every handle";
  engine_.close_all();
}

void StressRun::op_reopen() {
  what_ = "reopen the pool";
  std::string err = engine_.reopen();
  REQUIRE_MESSAGE(err.empty(), "Pool::open: " << err);
  check_listing();
  check_space();
  check_everything();
}

}  // namespace pxd::stress
