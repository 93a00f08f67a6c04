// tests/stress/stress_run.h: one randomized run of the engine against the model.
//
// Every choice comes from one std::mt19937_64, so a seed replays the same operations
// (only the interleaving inside the two-thread operation depends on timing: its checks
// accept any legal interleaving, and what a snapshot taken during it saw can steer later
// choices). Engine bugs it found have regression tests in known_bugs_test.cc.
// Operations live in three files: stress_run.cc (single requests and control operations, and the
// checks), bad_input_ops.cc (requests and control calls that must fail and change nothing),
// concurrent_ops.cc (many requests in flight on one ring; two threads while a snapshot, clone,
// snapshot delete or grow runs).
//
// Thread safety: the test's main thread only.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tests/stress/harness.h"
#include "tests/stress/model.h"

namespace pxd::stress {

inline constexpr uint32_t kChunk = 64 * 1024;
inline constexpr uint64_t kBlocksPerChunk = kChunk / kBlock;
inline constexpr uint64_t kPoolBytes = 512ULL << 20;
inline constexpr size_t kMaxVolumes = 8;
inline constexpr size_t kMaxSnapshots = 12;
inline constexpr uint64_t kMaxStressVolumeBytes = 12ULL << 20;

class StressRun {
 public:
  explicit StressRun(uint64_t seed);

  void run(uint64_t ops);
  // Checks everything once more, deletes every object and checks the pool is empty, also
  // after one more reopen.
  void finish();

  // How often each operation ran and how long it took in all.
  std::string summary() const;

  // Printed with every failure: the seed, the operation number and what it was doing.
  std::string context() const;

 private:
  using Op = void (StressRun::*)();
  struct WeightedOp {
    const char* name;
    uint32_t weight;
    Op fn;
  };
  static const std::vector<WeightedOp>& ops();

  // ---- randomness ----
  uint64_t uniform(uint64_t lo, uint64_t hi);  // inclusive
  bool chance(double p);
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[uniform(0, v.size() - 1)];
  }
  // A byte range of an object of `size` bytes: small, crossing a chunk boundary, whole
  // chunks, large, or the tail.
  std::pair<uint64_t, uint64_t> pick_range(uint64_t size);
  // Cuts blocks [first, end) into disjoint pieces (block offset, block count).
  std::vector<std::pair<uint64_t, uint64_t>> cut_region(uint64_t first, uint64_t end);
  // A new name, sometimes one that was deleted before.
  std::string new_name(const char* prefix);
  std::vector<uint8_t> next_pattern(uint64_t offset, uint64_t length);

  // ---- checks ----
  void check_read(const std::string& name, uint64_t offset, uint64_t length);
  void check_object(const std::string& name) { check_read(name, 0, model_.at(name).size()); }
  void check_everything();
  void check_listing();
  void check_space();
  bool can_add(uint64_t size_bytes, bool snapshot);

  // ---- operations (stress_run.cc) ----
  void op_write() { write_once(0); }
  void op_fua_write() { write_once(kIoFua); }
  void write_once(uint32_t flags);
  void op_discard() { zero_once(IoOp::kDiscard); }
  void op_write_zeroes() { zero_once(IoOp::kWriteZeroes); }
  void zero_once(IoOp op);
  void op_flush();
  void op_read();
  void op_create_volume();
  void op_snapshot();
  void op_read_snapshot();
  void op_clone();
  void op_restore();
  void op_remove_snapshot();
  void op_remove_volume();
  void op_grow();
  void op_close_handles();
  void op_reopen();
  // ---- bad_input_ops.cc ----
  void op_bad_io();
  void op_bad_control();
  // ---- concurrent_ops.cc ----
  void op_queue_depth();
  void op_two_threads();
  // After a snapshot or clone `capture` of `vol` was taken while writes to the chunks
  // `touched` ran: checks what it shows, and adds it to the model.
  void learn_capture(const std::string& vol, const std::string& capture, bool clone,
                     const std::vector<uint8_t>& before,
                     const std::map<uint64_t, uint64_t>& ids_before,
                     const std::set<uint64_t>& touched, const std::vector<const BatchItem*>& writes,
                     int64_t start_ns, int64_t end_ns);

  const uint64_t seed_;
  std::mt19937_64 rng_;
  Model model_;
  Harness engine_;
  uint64_t op_index_ = 0;
  std::string what_;  // the current operation, for failure messages
  uint64_t pattern_counter_ = 0;
  uint64_t name_counter_ = 0;
  std::vector<std::string> deleted_names_;
  bool verbose_ = false;
  struct OpStats {
    uint64_t count = 0;
    uint64_t micros = 0;
  };
  std::map<std::string, OpStats> stats_;
  uint64_t check_every_ = 8;  // operations between space checks (PXD_STRESS_CHECK_EVERY)
};

}  // namespace pxd::stress
