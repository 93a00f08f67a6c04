// tests/crash/crash_model.h: what a pool may contain after its child was SIGKILLed.
//
// The parent keeps, for every block of every volume and every surviving snapshot, the
// content found after the previous kill (the baseline: sequence number of the write found
// there, or 0 for zeros). replay() reads one child's journal and rebuilds, per block, the
// ordered list of mutations the child started, and which of them the contract makes
// durable: a completed FUA write; any completed write, discard or write-zeroes that
// completed before a flush of the same volume was submitted, once that flush completed.
// verify() then reads the reopened pool and checks every block:
//
//  * it is zeros or a valid block of this very volume and LBA (never foreign, never torn);
//  * it is the last durable value or something the child started after it (never older
//    than a durable write, never zeros where a durable write remains);
//  * a snapshot from an earlier cycle is exactly what it was; a snapshot created in this
//    cycle holds, per block, a value that was current between its create call's start and
//    end, and no older than what was durable before that;
//  * snapshots exist exactly when their create/delete calls say they must.
//
// What was found becomes the next baseline. Single-threaded (the test's thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/pool.h"
#include "tests/crash/crash_format.h"

namespace pxd::crash {

struct ModelVolume {
  std::string name;
  uint64_t id = 0;
  uint64_t blocks = 0;
};

// Records up to the first short or damaged one; *torn_bytes says how much followed it.
std::vector<Record> read_journal(const std::string& path, uint64_t* torn_bytes);

// What one cycle did and what the kill interrupted.
struct CycleReport {
  bool ready = false;              // the child had opened the pool and its volumes
  uint64_t mutations = 0;          // writes, discards, write-zeroes started
  uint64_t in_flight = 0;          // ... of which not completed at the kill
  uint64_t durable = 0;            // ... of which durable by FUA or a completed flush
  uint64_t flushes_done = 0;       // completed flushes
  uint64_t flushes_in_flight = 0;  // flushes submitted, not completed at the kill
  uint64_t snapshot_ops = 0;       // creates and deletes started
  bool snapshot_op_in_flight = false;
  // Writes in flight at the kill into a chunk a snapshot shares and no completed
  // mutation has touched since: mid copy-on-write (approximately: the journal does not
  // say which chunks are mapped).
  uint64_t copy_on_write_in_flight = 0;
  // Verification.
  uint64_t blocks_checked = 0;
  uint64_t lost_completed = 0;    // blocks older than a completed (not durable) mutation
  uint64_t in_flight_landed = 0;  // blocks holding what an uncompleted write wrote
};

class CrashModel {
 public:
  explicit CrashModel(std::vector<ModelVolume> volumes);

  // Rebuilds the cycle from `records`. Problems (an inconsistent journal, or an error the
  // child saw and journaled) are appended to `failures`.
  //
  // A power cut (tests/vm/powercut.sh) keeps only what was flushed before the moment it
  // struck, which is at or before the end of the journal: then only FUA writes and flushes
  // that completed at or before record `durable_until` count as durable, while every
  // mutation in the journal may have landed. Snapshot creates and deletes are synced before
  // they return, so those that returned at or before it must have happened; any later one
  // may or may not have.
  void replay(uint64_t cycle, const std::vector<Record>& records, CycleReport& report,
              std::vector<std::string>& failures, size_t durable_until = SIZE_MAX);
  // Checks the reopened pool against the cycle replayed last; on success the content
  // found becomes the baseline of the next cycle.
  void verify(Pool& pool, CycleReport& report, std::vector<std::string>& failures);

  size_t snapshot_count() const { return snapshots_.size(); }

 private:
  static constexpr size_t kNever = SIZE_MAX;

  struct Mutation {
    uint64_t seq = 0;
    uint32_t volume = 0;  // index into volumes_
    uint64_t lba = 0;
    uint32_t count = 0;
    MutationOp op = MutationOp::kWrite;
    size_t intent_pos = 0;
    size_t complete_pos = kNever;
    int64_t result = 0;
    bool durable = false;
    bool is_write() const { return op == MutationOp::kWrite || op == MutationOp::kWriteFua; }
    uint64_t value() const { return is_write() ? seq : 0; }
    bool ok() const { return complete_pos != kNever && result == 0; }
  };
  struct SnapshotOp {
    uint32_t volume = 0;
    size_t begin_pos = 0;
    size_t done_pos = kNever;
    int64_t result = 0;
  };
  struct DeleteOp {
    size_t begin_pos = 0;
    size_t done_pos = kNever;
    int64_t result = 0;
  };
  struct KnownSnapshot {
    uint32_t volume = 0;
    std::vector<uint64_t> content;  // per block: 0 zeros, else the write's seq
  };
  // The values a block may hold: those of history[lo..hi), and the baseline if lo < 0.
  struct Allowed {
    int64_t lo = -1;
    int64_t hi = 0;
  };

  void reset_cycle();
  int volume_index(uint64_t id) const;
  void count_copy_on_write(const std::vector<int64_t>& snapshot_pos,
                           const std::vector<std::vector<int64_t>>& touched, CycleReport& report);
  std::string describe(uint64_t value) const;
  // Reads `name` and checks each block against allowed(b); returns what it found.
  std::vector<uint64_t> check_object(Pool& pool, const std::string& name, uint32_t vol,
                                     const std::vector<Allowed>* allowed,
                                     const std::vector<uint64_t>* exact, CycleReport& report,
                                     std::vector<std::string>& failures);
  bool check_block(const std::string& where, uint32_t vol, uint64_t lba, uint64_t found,
                   const Allowed& allowed, CycleReport* report, std::vector<std::string>& failures);

  std::vector<ModelVolume> volumes_;
  std::vector<std::vector<uint64_t>> baseline_;  // [volume][lba]
  std::map<std::string, KnownSnapshot> snapshots_;

  // The cycle being checked.
  std::vector<Mutation> mutations_;
  std::unordered_map<uint64_t, size_t> by_seq_;
  std::vector<std::vector<std::vector<uint32_t>>> history_;            // [volume][lba] -> mutations
  std::vector<std::vector<uint32_t>> completed_;                       // [volume], completion order
  std::vector<size_t> covered_;                                        // [volume]: flushed prefix
  std::unordered_map<uint64_t, std::pair<uint32_t, size_t>> flushes_;  // seq -> (vol, pos)
  std::map<uint64_t, SnapshotOp> creates_;                             // by the snapshot's seq
  std::map<uint64_t, DeleteOp> deletes_;                               // by the snapshot's seq
  size_t end_pos_ = 0;
  size_t durable_until_ = SIZE_MAX;  // the power cut's, or SIZE_MAX after a SIGKILL
};

}  // namespace pxd::crash
