// tests/crash/powercut_tool.cc: the engine side of the power-cut test (tests/vm/powercut.sh).
//
//   engine_powercut_tool create META_DIR POOL_FILE THICK
//       Makes the pool the child will run on: one pool file of 64 MiB (THICK=1: written
//       out at creation), 64 KiB chunks, three volumes of 4 MiB, as engine_crash_test does.
//   engine_powercut_tool verify META_DIR JOURNAL MARKS_FILE
//       Opens the pool on a replayed image of the filesystem (a power cut at some point of
//       the dm log-writes log) and checks it against the child's whole journal. MARKS_FILE
//       lists the child's marks ("pxd-flush-SEQ", one a line) found in the replayed prefix
//       of the log: the flushes named there, and every flush and FUA write the child had
//       journaled as complete before the last of them, completed before the cut, so what
//       they cover must be there. Anything else the child started may or may not have
//       landed (crash_model.h). Exit status 0 when it holds, 1 with the failures listed.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/units.h"
#include "engine/pool.h"
#include "tests/crash/crash_format.h"
#include "tests/crash/crash_model.h"

namespace pxd::crash {
namespace {

constexpr uint32_t kChunk = 64 * 1024;
constexpr uint64_t kPoolBytes = 64 * kMiB;
constexpr uint64_t kVolumeBytes = 4 * kMiB;
constexpr int kVolumes = 3;
constexpr size_t kNoneDurable = 0;  // record 0 is the start record: nothing completes there

int create(const std::string& meta_dir, const std::string& pool_file, bool thick) {
  PoolOptions opts;
  opts.devices.push_back({pool_file, kPoolBytes, thick});
  opts.chunk_size = kChunk;
  auto pool = Pool::create(meta_dir, opts);
  if (pool.has_error()) {
    std::fprintf(stderr, "Pool::create: %s\n", pool.error().to_string().c_str());
    return 1;
  }
  for (int i = 0; i < kVolumes; ++i) {
    VolumeSpec spec{"vol" + std::to_string(i), kVolumeBytes, 4096, {}, {}};
    auto info = pool.value()->create_volume(spec);
    if (info.has_error()) {
      std::fprintf(stderr, "create_volume: %s\n", info.error().to_string().c_str());
      return 1;
    }
  }
  Status st = pool.value()->sync();
  if (!st.is_ok()) {
    std::fprintf(stderr, "sync: %s\n", st.to_string().c_str());
    return 1;
  }
  return 0;
}

int verify(const std::string& meta_dir, const std::string& journal, const std::string& marks) {
  std::vector<std::string> failures;
  uint64_t torn_bytes = 0;
  std::vector<Record> records = read_journal(journal, &torn_bytes);
  if (torn_bytes != 0)
    failures.push_back("journal: " + std::to_string(torn_bytes) + " bytes after a bad record");

  // The last journal position the marks in the prefix vouch for.
  size_t durable_until = kNoneDurable;
  size_t mark_count = 0;
  std::ifstream in(marks);
  for (std::string line; std::getline(in, line);) {
    const std::string prefix = "pxd-flush-";
    if (line.rfind(prefix, 0) != 0) continue;
    const uint64_t seq = std::stoull(line.substr(prefix.size()));
    ++mark_count;
    bool found = false;
    for (size_t pos = 0; pos < records.size() && !found; ++pos) {
      if (records[pos].type == RecordType::kFlushDone && records[pos].seq == seq) {
        durable_until = std::max(durable_until, pos);
        found = true;
      }
    }
    if (!found) failures.push_back("mark " + line + ": no such completed flush in the journal");
  }

  // The extent journal is on tmpfs, which a power cut empties: the pool opens without the
  // child's (an empty directory of its own stands for the rebooted machine's /dev/shm).
  PoolOpenOptions options;
  options.journal.dir = meta_dir + ".shm";
  std::filesystem::remove_all(options.journal.dir);
  std::filesystem::create_directories(options.journal.dir);
  auto pool = Pool::open(meta_dir, options);
  if (pool.has_error()) {
    std::printf("FAIL: Pool::open after the power cut: %s\n", pool.error().to_string().c_str());
    return 1;
  }
  PoolUsage u = pool.value()->usage();
  if (u.used_bytes + u.free_bytes + u.reclaiming_bytes != u.capacity_bytes)
    failures.push_back("space: used " + std::to_string(u.used_bytes) + " + free " +
                       std::to_string(u.free_bytes) + " + reclaiming " +
                       std::to_string(u.reclaiming_bytes) + " != capacity " +
                       std::to_string(u.capacity_bytes));
  std::vector<ModelVolume> volumes;
  for (const ObjectInfo& info : pool.value()->list()) {
    if (!info.is_snapshot) volumes.push_back({info.name, info.id, info.size_bytes / kBlockBytes});
  }
  if (volumes.size() != kVolumes)
    failures.push_back("the pool has " + std::to_string(volumes.size()) + " volumes, not " +
                       std::to_string(kVolumes));

  CrashModel model(volumes);
  CycleReport report;
  model.replay(0, records, report, failures, durable_until);
  if (failures.empty()) model.verify(*pool.value(), report, failures);
  std::printf(
      "%zu marks (journal record %zu); %llu mutations, %llu snapshot creates and deletes, "
      "%llu durable at the cut, %llu blocks checked, %llu lost a completed but unflushed "
      "mutation, %llu hold a write in flight at the kill\n",
      mark_count, durable_until, static_cast<unsigned long long>(report.mutations),
      static_cast<unsigned long long>(report.snapshot_ops),
      static_cast<unsigned long long>(report.durable),
      static_cast<unsigned long long>(report.blocks_checked),
      static_cast<unsigned long long>(report.lost_completed),
      static_cast<unsigned long long>(report.in_flight_landed));
  for (const std::string& f : failures) std::printf("FAIL: %s\n", f.c_str());
  return failures.empty() ? 0 : 1;
}

}  // namespace
}  // namespace pxd::crash

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "create" && argc == 5)
    return pxd::crash::create(argv[2], argv[3], std::string(argv[4]) == "1");
  if (cmd == "verify" && argc == 5) return pxd::crash::verify(argv[2], argv[3], argv[4]);
  std::fprintf(stderr,
               "usage: engine_powercut_tool create META_DIR POOL_FILE THICK\n"
               "       engine_powercut_tool verify META_DIR JOURNAL MARKS_FILE\n");
  return 2;
}
