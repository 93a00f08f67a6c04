// Exclusive and shared bytes are counted as extents change (doc/engine.md, "Space
// accounting"); Pool::list_recounted() walks every tree for the same figures, by their
// definition. These tests check that the two agree after each step of random operation
// sequences (writes, discards, snapshots and their deletion, clones of volumes and
// snapshots, restores, growth, volume deletion, reopening the pool), and in the cases
// where a chunk becomes exclusive to another tree than the one whose I/O unshared it.
#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/support/pool_fixture.h"

namespace pxd {
namespace {

using testing::kTestChunk;
using testing::PoolFixture;

// Compares list() with list_recounted(), object by object.
void check_counts(Pool& pool, const std::string& after) {
  INFO("after " << after);
  std::vector<ObjectInfo> counted = pool.list();
  std::vector<ObjectInfo> walked = pool.list_recounted();
  REQUIRE(counted.size() == walked.size());
  uint64_t exclusive = 0;
  for (size_t i = 0; i < counted.size(); ++i) {
    INFO("object " << counted[i].name);
    REQUIRE(counted[i].name == walked[i].name);
    CHECK(counted[i].exclusive_bytes == walked[i].exclusive_bytes);
    CHECK(counted[i].shared_bytes == walked[i].shared_bytes);
    exclusive += counted[i].exclusive_bytes;
  }
  CHECK(exclusive <= pool.usage().used_bytes);
}

class RandomRun {
 public:
  explicit RandomRun(uint64_t seed) : rng_(seed), f_(256 * kMiB) {}

  void run(int steps) {
    for (int i = 0; i < steps; ++i) {
      std::string what = step();
      if (what.empty()) continue;
      check_counts(*f_.pool, "step " + std::to_string(i) + ": " + what);
    }
    reopen();
    check_counts(*f_.pool, "the last reopen");
  }

 private:
  uint64_t uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[uniform(0, v.size() - 1)];
  }
  std::vector<std::string> names(bool snapshots) {
    std::vector<std::string> out;
    for (const ObjectInfo& o : f_.pool->list())
      if (o.is_snapshot == snapshots) out.push_back(o.name);
    return out;
  }
  Volume& handle(const std::string& name) {
    auto& h = handles_[name];
    if (!h) h = f_.open(name);
    return *h;
  }
  void reopen() {
    handles_.clear();
    f_.pool.reset();
    auto p = Pool::open(f_.dir / "meta");
    REQUIRE_MESSAGE(p.has_value(), p.error().to_string());
    f_.pool = std::move(p).value();
  }
  // Room for every object to map all of its chunks: no step may fail for space.
  bool room_for(uint64_t bytes) {
    uint64_t budget = 0;
    for (const ObjectInfo& o : f_.pool->list()) budget += o.size_bytes;
    return budget + bytes + 64 * kTestChunk <= f_.pool->usage().capacity_bytes;
  }
  std::string fresh(const char* prefix) { return prefix + std::to_string(++counter_); }

  // One random operation; returns what it did ("" if nothing).
  std::string step() {
    std::vector<std::string> vols = names(false), snaps = names(true);
    const uint64_t r = uniform(0, 99);
    if (vols.empty() || (r < 5 && vols.size() < 6)) {
      uint64_t size = uniform(4, 24) * kTestChunk;
      if (!room_for(size)) return "";
      std::string name = fresh("v");
      f_.create(name, size);
      return "create " + name;
    }
    const std::string& vol = pick(vols);
    const uint64_t size = f_.info(vol).size_bytes;
    if (r < 40) {  // a write: within a chunk, or across several
      uint64_t chunks = size / kTestChunk;
      uint64_t first = uniform(0, chunks - 1);
      uint64_t count = uniform(0, 3) == 0 ? uniform(1, std::min<uint64_t>(4, chunks - first)) : 1;
      uint64_t offset = first * kTestChunk + (count == 1 ? uniform(0, 15) * 4096 : 0);
      uint64_t length = count == 1 ? 4096 : count * kTestChunk;
      REQUIRE(f_.io.write_fill(handle(vol), offset, length, static_cast<uint8_t>(r)) == 0);
      return "write " + vol + " @" + std::to_string(offset) + " +" + std::to_string(length);
    }
    if (r < 50) {  // discard or write-zeroes of whole chunks (unmap), or of a part (copy)
      uint64_t chunks = size / kTestChunk;
      uint64_t first = uniform(0, chunks - 1);
      uint64_t count = uniform(1, std::min<uint64_t>(3, chunks - first));
      bool part = uniform(0, 3) == 0;
      uint64_t offset = first * kTestChunk + (part ? 8192 : 0);
      uint64_t length = part ? 4096 : count * kTestChunk;
      int rc = uniform(0, 1) ? f_.io.discard(handle(vol), offset, length)
                             : f_.io.write_zeroes(handle(vol), offset, length);
      REQUIRE(rc == 0);
      return "zero " + vol + " @" + std::to_string(offset) + " +" + std::to_string(length);
    }
    if (r < 62) {
      if (snaps.size() >= 16 || !room_for(size)) return "";
      std::string name = fresh("s");
      f_.snapshot(vol, name);
      return "snapshot " + vol + " as " + name;
    }
    if (r < 72) {
      if (snaps.empty()) return "";
      std::string snap = pick(snaps);
      handles_.erase(snap);
      f_.remove(snap);
      return "delete snapshot " + snap;
    }
    if (r < 80) {
      if (vols.size() >= 6) return "";
      const std::string& source = uniform(0, 1) && !snaps.empty() ? pick(snaps) : vol;
      if (!room_for(f_.info(source).size_bytes)) return "";
      std::string name = fresh("c");
      f_.clone(source, name);
      return "clone " + source + " as " + name;
    }
    if (r < 86) {
      ObjectInfo info = f_.info(vol);
      if (info.snapshots.empty()) return "";
      const std::string& snap = pick(info.snapshots);
      handles_.erase(vol);
      Status s = f_.pool->restore(vol, snap);
      REQUIRE_MESSAGE(s.is_ok(), s.to_string());
      return "restore " + vol + " to " + snap;
    }
    if (r < 90) {
      uint64_t grown = size + uniform(1, 4) * kTestChunk;
      if (!room_for(grown - size)) return "";
      REQUIRE(f_.pool->resize(vol, grown).has_value());
      return "grow " + vol;
    }
    if (r < 95) {
      ObjectInfo info = f_.info(vol);
      if (!info.snapshots.empty()) return "";
      handles_.erase(vol);
      f_.remove(vol);
      return "delete " + vol;
    }
    reopen();
    return "reopen";
  }

  std::mt19937_64 rng_;
  PoolFixture f_;
  std::map<std::string, std::shared_ptr<Volume>> handles_;
  uint64_t counter_ = 0;
};

TEST_CASE("counted exclusive and shared bytes equal a walk of the extents, at every step") {
  for (uint64_t seed : {1, 2, 3, 4}) {
    INFO("seed " << seed);
    RandomRun(seed).run(300);
  }
}

TEST_CASE("a chunk unshared by another tree's I/O becomes exclusive to the one left") {
  PoolFixture f;
  f.create("v", 8 * kTestChunk);
  {
    auto v = f.open("v");
    REQUIRE(f.io.write_fill(*v, 0, 8 * kTestChunk, 1) == 0);
  }
  f.clone("v", "c");
  CHECK(f.info("v").exclusive_bytes == 0);
  auto c = f.open("c");
  // The clone copies chunk 0 and drops chunk 1: both are v's alone again.
  REQUIRE(f.io.write_fill(*c, 0, 4096, 2) == 0);
  REQUIRE(f.io.discard(*c, kTestChunk, kTestChunk) == 0);
  CHECK(f.info("v").exclusive_bytes == 2 * kTestChunk);
  CHECK(f.info("v").shared_bytes == 6 * kTestChunk);
  CHECK(f.info("c").exclusive_bytes == kTestChunk);
  CHECK(f.info("c").shared_bytes == 6 * kTestChunk);
  check_counts(*f.pool, "the clone's writes");
  // A snapshot of v and its deletion move v's chunks out of and back into its own.
  f.snapshot("v", "s");
  CHECK(f.info("v").exclusive_bytes == 0);
  CHECK(f.info("s").exclusive_bytes == 0);
  CHECK(f.info("s").shared_bytes == 8 * kTestChunk);
  f.remove("s");
  CHECK(f.info("v").exclusive_bytes == 2 * kTestChunk);
  // Deleting the clone leaves v alone with all of its chunks.
  c.reset();
  f.remove("c");
  CHECK(f.info("v").exclusive_bytes == 8 * kTestChunk);
  CHECK(f.info("v").shared_bytes == 0);
  check_counts(*f.pool, "deleting the clone");
}

TEST_CASE("a snapshot's exclusive bytes follow its neighbours' deletion and a restore") {
  PoolFixture f;
  f.create("v", 4 * kTestChunk);
  auto v = f.open("v");
  REQUIRE(f.io.write_fill(*v, 0, 4 * kTestChunk, 1) == 0);
  f.snapshot("v", "s1");
  REQUIRE(f.io.write_fill(*v, 0, 4096, 2) == 0);  // chunk 0, first version: s1's alone
  f.snapshot("v", "s2");
  REQUIRE(f.io.write_fill(*v, kTestChunk, 4096, 3) == 0);  // chunk 1 v1: s1 and s2 share it
  CHECK(f.info("s1").exclusive_bytes == kTestChunk);
  CHECK(f.info("s2").exclusive_bytes == 0);
  f.remove("s1");
  CHECK(f.info("s2").exclusive_bytes == kTestChunk);  // chunk 1 v1 is s2's alone now
  check_counts(*f.pool, "deleting s1");
  v.reset();
  REQUIRE(f.pool->restore("v", "s2").is_ok());
  // Chunk 1 v1 is live again (restored) and still s2's: shared by both.
  CHECK(f.info("s2").exclusive_bytes == 0);
  CHECK(f.info("v").exclusive_bytes == 0);
  check_counts(*f.pool, "the restore");
  v = f.open("v");
  REQUIRE(f.io.write_fill(*v, kTestChunk, 4096, 4) == 0);  // copies: v1 is s2's alone again
  CHECK(f.info("s2").exclusive_bytes == kTestChunk);
  CHECK(f.info("v").exclusive_bytes == kTestChunk);
  check_counts(*f.pool, "a write after the restore");
}

TEST_CASE("thousands of chunks unshared at once are settled in the background and on demand") {
  constexpr uint64_t kChunks = 5000;  // more than one background batch
  PoolFixture f(3 * kChunks * kTestChunk);
  f.create("v", kChunks * kTestChunk);
  {
    auto v = f.open("v");
    constexpr uint64_t kPiece = 125 * kTestChunk;
    for (uint64_t at = 0; at < kChunks * kTestChunk; at += kPiece)
      REQUIRE(f.io.write_fill(*v, at, kPiece, 1) == 0);
  }
  f.clone("v", "c");
  CHECK(f.info("v").exclusive_bytes == 0);
  {
    auto c = f.open("c");
    REQUIRE(f.io.discard(*c, 0, kChunks * kTestChunk) == 0);
  }
  CHECK(f.info("v").exclusive_bytes == kChunks * kTestChunk);
  CHECK(f.info("c").shared_bytes == 0);
  check_counts(*f.pool, "discarding the clone");
}

}  // namespace
}  // namespace pxd
