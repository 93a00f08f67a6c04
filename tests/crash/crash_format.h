// tests/crash/crash_format.h: what the crash test's child writes and the parent checks.
//
// Two formats, shared by the child (crash_child.cc) and the parent (engine_crash_test.cc,
// crash_model.cc):
//
//  * Block content. Every 4 KiB block the child writes names its volume, its LBA and the
//    sequence number of the request that wrote it, and carries a checksum over the whole
//    block, with filler derived from all three. So any block read back is classified as
//    zeros, a valid block of exactly one (volume, LBA, sequence), or garbage/torn; and a
//    valid block of another volume or LBA is foreign.
//
//  * The journal. The child appends fixed-size, checksummed records with O_APPEND, one
//    write(2) each: "intent" before it submits a mutation, "complete" after its callback
//    ran, "flush submitted/done", snapshot create/delete begin/done. The order of records
//    in the file is the order of those events as the child saw them, which is all the
//    parent needs to know which writes the durability contract covers at the kill. A
//    record that is cut short or fails its checksum ends the journal (a torn tail).
//
// Sequence numbers are global and only grow: each cycle's child starts at a base the
// parent hands it ((cycle + 1) << 32), and every request gets the next one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pxd::crash {

inline constexpr uint32_t kBlockBytes = 4096;
inline constexpr uint64_t kBlockMagic = 0x31424b4c43445850ULL;  // "PXDCLKB1"
inline constexpr size_t kBlockWords = kBlockBytes / 8;
inline constexpr size_t kChecksumWord = 4;

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline uint64_t block_checksum(const uint64_t* w) {
  uint64_t h = 0x6a09e667f3bcc909ULL;
  for (size_t i = 0; i < kBlockWords; ++i) {
    if (i != kChecksumWord) h = mix64(h ^ w[i]) + i;
  }
  return h;
}

// Fills `out` (4 KiB, 8-byte aligned) with the content of (volume, lba, seq).
inline void encode_block(std::byte* out, uint64_t volume, uint64_t lba, uint64_t seq) {
  auto* w = reinterpret_cast<uint64_t*>(out);
  w[0] = kBlockMagic;
  w[1] = volume;
  w[2] = lba;
  w[3] = seq;
  w[kChecksumWord] = 0;
  const uint64_t salt = mix64(volume * 0x100000001b3ULL ^ mix64(lba) ^ (seq << 1));
  for (size_t i = kChecksumWord + 1; i < kBlockWords; ++i) w[i] = mix64(salt + i);
  w[kChecksumWord] = block_checksum(w);
}

struct DecodedBlock {
  enum class Kind { kZeros, kValid, kGarbage };
  Kind kind = Kind::kGarbage;
  uint64_t volume = 0;
  uint64_t lba = 0;
  uint64_t seq = 0;
};

inline DecodedBlock decode_block(const std::byte* in) {
  const auto* w = reinterpret_cast<const uint64_t*>(in);
  DecodedBlock d;
  bool zeros = true;
  for (size_t i = 0; i < kBlockWords && zeros; ++i) zeros = w[i] == 0;
  if (zeros) {
    d.kind = DecodedBlock::Kind::kZeros;
    return d;
  }
  if (w[0] != kBlockMagic || w[kChecksumWord] != block_checksum(w)) return d;
  d.kind = DecodedBlock::Kind::kValid;
  d.volume = w[1];
  d.lba = w[2];
  d.seq = w[3];
  return d;
}

// ---- the journal ----

inline constexpr uint32_t kRecordMagic = 0x4c4e524a;  // "JRNL"

enum class RecordType : uint32_t {
  kStart = 1,      // child started: arg = cycle
  kReady,          // pool and volumes open, I/O starts
  kIntent,         // before submit: seq, volume, lba, count, arg = MutationOp
  kComplete,       // after the callback: seq, arg = result
  kFlushSubmit,    // before submit: seq, volume
  kFlushDone,      // after the callback: seq, volume, arg = result
  kSnapshotBegin,  // before create_snapshot: seq (name "snap-<seq>"), volume
  kSnapshotDone,   // after it returned: seq, arg = 0 or StatusCode, lba = object id
  kDeleteBegin,    // before remove: seq, arg = the snapshot's seq
  kDeleteDone,     // after it returned: seq, arg = 0 or StatusCode
  kError,          // the child saw something wrong: arg = code, other fields detail
};

enum class MutationOp : uint64_t { kWrite = 1, kWriteFua, kDiscard, kWriteZeroes };

// kError codes.
enum class ChildError : uint64_t {
  kIoFailed = 1,   // seq, volume, lba, count, spare = -result
  kReadMismatch,   // volume, lba, seq = expected, spare = found (UINT64_MAX: not ours)
  kControlFailed,  // seq, spare = StatusCode
};

struct Record {
  uint32_t magic = kRecordMagic;
  RecordType type = RecordType::kStart;
  uint64_t seq = 0;
  uint64_t volume = 0;
  uint64_t lba = 0;
  uint64_t count = 0;
  uint64_t arg = 0;
  uint64_t spare = 0;
  uint64_t checksum = 0;

  uint64_t compute_checksum() const {
    uint64_t words[7];
    std::memcpy(words, this, sizeof(words));
    uint64_t h = 0x3c6ef372fe94f82bULL;
    for (uint64_t w : words) h = mix64(h ^ w);
    return h;
  }
  void seal() { checksum = compute_checksum(); }
  bool valid() const { return magic == kRecordMagic && checksum == compute_checksum(); }
};
static_assert(sizeof(Record) == 64, "journal records are 64 bytes");

inline constexpr uint64_t seq_base_of_cycle(uint64_t cycle) {
  return (cycle + 1) << 32;
}

}  // namespace pxd::crash
