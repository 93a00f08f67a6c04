// Requests and control calls that must fail with the documented error and change nothing.
#include <doctest/doctest.h>

#include <cerrno>

#include "tests/stress/stress_run.h"

namespace pxd::stress {

using testing::AlignedBuf;

void StressRun::op_bad_io() {
  bool on_snapshot = chance(0.3) && !model_.names(true).empty();
  auto names = model_.names(on_snapshot);
  if (names.empty()) return;
  const std::string name = pick(names);
  const uint64_t size = model_.at(name).size();
  Volume& volume = engine_.handle(name);
  // Big enough for every request, in case one that must fail does not.
  AlignedBuf buf(size + 2 * kBlock);
  std::string snapshot_target;
  std::vector<BatchItem> items;
  auto add = [&](IoOp op, uint64_t offset, uint64_t length, std::byte* buffer, int expected) {
    BatchItem item;
    item.volume = &volume;
    item.op = op;
    item.offset = offset;
    item.length = length;
    item.buffer = op == IoOp::kRead || op == IoOp::kWrite ? buffer : nullptr;
    items.push_back(item);
    return expected;
  };
  std::vector<int> expected;
  static constexpr IoOp kOps[] = {IoOp::kRead, IoOp::kWrite, IoOp::kDiscard, IoOp::kWriteZeroes};
  // A snapshot refuses every change with -EROFS before it looks at the range.
  auto pick_op = [&] { return on_snapshot ? IoOp::kRead : kOps[uniform(0, 3)]; };
  const uint64_t kind = uniform(0, 3);
  switch (kind) {
    case 0:  // past the end, across it, and far beyond
      what_ = "bad-io past the end of " + name;
      expected.push_back(add(pick_op(), size, kBlock, buf.data, -EINVAL));
      expected.push_back(add(pick_op(), size - kBlock, 2 * kBlock, buf.data, -EINVAL));
      expected.push_back(add(pick_op(), UINT64_MAX - kBlock + 1, kBlock, buf.data, -EINVAL));
      expected.push_back(add(pick_op(), 0, size + kBlock, buf.data, -EINVAL));
      break;
    case 1:  // misaligned offset, length and buffer
      what_ = "bad-io misaligned on " + name;
      expected.push_back(
          add(pick_op(), uniform(0, size / kBlock - 2) * kBlock + 512, kBlock, buf.data, -EINVAL));
      expected.push_back(add(pick_op(), 0, kBlock + 512, buf.data, -EINVAL));
      expected.push_back(
          add(on_snapshot ? IoOp::kRead : IoOp::kWrite, 0, kBlock, buf.data + 8, -EINVAL));
      expected.push_back(add(IoOp::kRead, kBlock, kBlock, buf.data + 8, -EINVAL));
      break;
    case 2:  // zero length
      what_ = "bad-io zero length on " + name;
      expected.push_back(add(pick_op(), 0, 0, buf.data, -EINVAL));
      expected.push_back(add(pick_op(), size / 2 / kBlock * kBlock, 0, buf.data, -EINVAL));
      break;
    default: {  // changes to a snapshot
      auto snaps = model_.names(true);
      if (snaps.empty()) return;
      const std::string& snap = snapshot_target = pick(snaps);
      what_ = "bad-io writes to snapshot " + snap;
      Volume& s = engine_.handle(snap);
      CHECK(s.read_only());
      for (IoOp op : {IoOp::kWrite, IoOp::kDiscard, IoOp::kWriteZeroes}) {
        auto [offset, length] = pick_range(model_.at(snap).size());
        length = std::min<uint64_t>(length, 3 * kBlock);
        expected.push_back(add(op, offset, length, buf.data, -EROFS));
        items.back().volume = &s;
      }
      // Flushing a snapshot is allowed and does nothing.
      expected.push_back(add(IoOp::kFlush, 0, 0, nullptr, 0));
      items.back().volume = &s;
      break;
    }
  }
  REQUIRE(run_batch(engine_.io().ring(), items));
  for (size_t i = 0; i < items.size(); ++i) {
    INFO("request " << i << ": op " << static_cast<int>(items[i].op) << " offset "
                    << items[i].offset << " length " << items[i].length);
    CHECK(items[i].result == expected[i]);
    CHECK_FALSE(items[i].done_inside_submit);
  }
  // Nothing changed: the ranges the requests aimed at, and the pool's space.
  for (const BatchItem& item : items) {
    const std::string& target = item.volume == &volume ? name : snapshot_target;
    uint64_t target_size = model_.at(target).size();
    uint64_t offset = std::min(item.offset / kBlock * kBlock, target_size - kBlock);
    check_read(target, offset, std::min<uint64_t>(4 * kBlock, target_size - offset));
  }
  check_space();
}

void StressRun::op_bad_control() {
  Pool& pool = engine_.pool();
  auto vols = model_.names(false);
  auto snaps = model_.names(true);
  if (vols.empty()) return;
  const std::string vol = pick(vols);
  auto code_of = [](const auto& result) {
    return result.has_error() ? result.error().code() : StatusCode::kOk;
  };
  switch (uniform(0, 5)) {
    case 0: {  // a taken name, volume's or snapshot's
      auto all = vols;
      all.insert(all.end(), snaps.begin(), snaps.end());
      const std::string taken = pick(all);
      what_ = "bad-control: create objects named " + taken;
      CHECK(code_of(pool.create_volume(VolumeSpec{taken, kChunk, kBlock, {}, {}})) ==
            StatusCode::kAlreadyExists);
      CHECK(code_of(pool.create_snapshot(vol, taken)) == StatusCode::kAlreadyExists);
      CHECK(code_of(pool.clone(vol, taken)) == StatusCode::kAlreadyExists);
      break;
    }
    case 1: {  // shrinking; resizing a snapshot
      uint64_t size = model_.at(vol).size();
      what_ = "bad-control: shrink " + vol;
      CHECK(code_of(pool.resize(vol, size - uniform(1, size / kBlock - 1) * kBlock)) ==
            StatusCode::kInvalidArgument);
      CHECK(code_of(pool.resize(vol, size + 512)) == StatusCode::kInvalidArgument);
      if (!snaps.empty()) {
        const std::string snap = pick(snaps);
        CHECK(code_of(pool.resize(snap, model_.at(snap).size() + kChunk)) ==
              StatusCode::kInvalidArgument);
      }
      break;
    }
    case 2: {  // names nothing has
      const std::string missing = "missing-" + std::to_string(uniform(0, 1000));
      what_ = "bad-control: unknown name " + missing;
      CHECK(code_of(pool.inspect(missing)) == StatusCode::kNotFound);
      CHECK(code_of(pool.open_volume(missing)) == StatusCode::kNotFound);
      CHECK(pool.remove(missing).code() == StatusCode::kNotFound);
      CHECK(code_of(pool.resize(missing, 1ULL << 20)) == StatusCode::kNotFound);
      CHECK(code_of(pool.create_snapshot(missing, "x-" + missing)) == StatusCode::kNotFound);
      CHECK(code_of(pool.clone(missing, "x-" + missing)) == StatusCode::kNotFound);
      CHECK(pool.restore(missing, vol).code() == StatusCode::kNotFound);
      if (!snaps.empty()) CHECK(pool.restore(vol, missing).code() == StatusCode::kNotFound);
      break;
    }
    case 3: {  // open objects cannot go, nor be restored
      what_ = "bad-control: remove or restore open " + vol;
      engine_.handle(vol);
      CHECK(pool.remove(vol).code() == StatusCode::kBusy);
      const auto& own = model_.at(vol).snapshots;
      if (!own.empty()) {
        CHECK(pool.restore(vol, pick(own)).code() == StatusCode::kBusy);
        const std::string snap = pick(own);
        engine_.handle(snap);
        CHECK(pool.remove(snap).code() == StatusCode::kBusy);
      }
      break;
    }
    case 4: {  // kinds that do not fit the operation
      what_ = "bad-control: wrong kinds around " + vol;
      CHECK(pool.restore(vol, vol).code() == StatusCode::kInvalidArgument);
      if (!snaps.empty()) {
        const std::string snap = pick(snaps);
        CHECK(code_of(pool.create_snapshot(snap, "x-" + snap)) == StatusCode::kInvalidArgument);
        CHECK(pool.restore(snap, snap).code() == StatusCode::kInvalidArgument);
        if (model_.at(snap).volume != vol) {
          engine_.close(vol);
          CHECK(pool.restore(vol, snap).code() == StatusCode::kInvalidArgument);
        }
      }
      break;
    }
    default:  // malformed names and sizes
      what_ = "bad-control: malformed names and sizes";
      for (const std::string& bad : {std::string(), std::string("a/b"), std::string(".."),
                                     std::string(256, 'n'), std::string("tab\t")}) {
        CHECK(code_of(pool.create_volume(VolumeSpec{bad, kChunk, kBlock, {}, {}})) ==
              StatusCode::kInvalidArgument);
        CHECK(code_of(pool.create_snapshot(vol, bad)) == StatusCode::kInvalidArgument);
      }
      CHECK(code_of(pool.create_volume(VolumeSpec{"odd-size", kChunk + 512, kBlock, {}, {}})) ==
            StatusCode::kInvalidArgument);
      CHECK(code_of(pool.create_volume(VolumeSpec{"no-size", 0, kBlock, {}, {}})) ==
            StatusCode::kInvalidArgument);
      break;
  }
  check_listing();
  check_space();
  auto [offset, length] = pick_range(model_.at(vol).size());
  check_read(vol, offset, length);
}

}  // namespace pxd::stress
