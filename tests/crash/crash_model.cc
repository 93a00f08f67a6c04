#include "tests/crash/crash_model.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <set>

#include "tests/support/sync_io.h"

namespace pxd::crash {
namespace {

constexpr size_t kMaxFailures = 40;
constexpr uint64_t kReadBytes = 1 << 20;

void fail(std::vector<std::string>& failures, std::string message) {
  if (failures.size() < kMaxFailures) failures.push_back(std::move(message));
}

std::string snapshot_name(uint64_t seq) {
  return "snap-" + std::to_string(seq);
}

}  // namespace

std::vector<Record> read_journal(const std::string& path, uint64_t* torn_bytes) {
  std::vector<Record> records;
  *torn_bytes = 0;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return records;
  std::vector<char> data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    data.insert(data.end(), buf, buf + n);
  }
  ::close(fd);
  size_t off = 0;
  for (; off + sizeof(Record) <= data.size(); off += sizeof(Record)) {
    Record r;
    std::memcpy(&r, data.data() + off, sizeof(r));
    if (!r.valid()) break;
    records.push_back(r);
  }
  *torn_bytes = data.size() - off;
  return records;
}

CrashModel::CrashModel(std::vector<ModelVolume> volumes) : volumes_(std::move(volumes)) {
  for (const auto& v : volumes_) baseline_.emplace_back(v.blocks, 0);
  reset_cycle();
}

void CrashModel::reset_cycle() {
  mutations_.clear();
  by_seq_.clear();
  history_.assign(volumes_.size(), {});
  for (size_t v = 0; v < volumes_.size(); ++v) history_[v].assign(volumes_[v].blocks, {});
  completed_.assign(volumes_.size(), {});
  covered_.assign(volumes_.size(), 0);
  flushes_.clear();
  creates_.clear();
  deletes_.clear();
  end_pos_ = 0;
}

int CrashModel::volume_index(uint64_t id) const {
  for (size_t i = 0; i < volumes_.size(); ++i) {
    if (volumes_[i].id == id) return static_cast<int>(i);
  }
  return -1;
}

std::string CrashModel::describe(uint64_t value) const {
  if (value == 0) return "zeros";
  std::string s = "seq " + std::to_string(value);
  auto it = by_seq_.find(value);
  if (it == by_seq_.end()) return s + " (an earlier cycle)";
  const Mutation& m = mutations_[it->second];
  s += m.op == MutationOp::kWriteFua ? " (FUA write" : " (write";
  s += m.complete_pos == kNever ? ", in flight at the kill" : ", completed";
  return s + (m.durable ? ", durable)" : ")");
}

void CrashModel::replay(uint64_t cycle, const std::vector<Record>& records, CycleReport& report,
                        std::vector<std::string>& failures, size_t durable_until) {
  reset_cycle();
  end_pos_ = records.size();
  durable_until_ = durable_until;
  // Killed before its first record: nothing to replay, the baseline must hold as it is.
  if (records.empty()) return;
  if (records[0].type != RecordType::kStart || records[0].arg != cycle) {
    fail(failures,
         "journal: does not start with the start record of cycle " + std::to_string(cycle));
    return;
  }
  // For the copy-on-write statistic: per volume, where its newest snapshot was taken (0:
  // before this cycle), and per chunk, where a mutation of it last completed.
  constexpr uint64_t kChunkBlocks = 16;
  std::vector<int64_t> snapshot_pos(volumes_.size(), -1);
  std::vector<std::vector<int64_t>> touched(volumes_.size());
  for (uint32_t v = 0; v < volumes_.size(); ++v) {
    touched[v].assign(volumes_[v].blocks / kChunkBlocks, -1);
    for (const auto& [name, snap] : snapshots_) {
      if (snap.volume == v) snapshot_pos[v] = 0;
    }
  }
  for (size_t pos = 0; pos < records.size(); ++pos) {
    const Record& r = records[pos];
    const std::string at = "journal record " + std::to_string(pos) + ": ";
    switch (r.type) {
      case RecordType::kStart:
        break;
      case RecordType::kReady:
        report.ready = true;
        break;
      case RecordType::kIntent: {
        int vol = volume_index(r.volume);
        if (vol < 0 || r.count == 0 || r.lba + r.count > volumes_[vol].blocks ||
            by_seq_.count(r.seq)) {
          fail(failures, at + "bad intent for seq " + std::to_string(r.seq));
          return;
        }
        Mutation m;
        m.seq = r.seq;
        m.volume = static_cast<uint32_t>(vol);
        m.lba = r.lba;
        m.count = static_cast<uint32_t>(r.count);
        m.op = static_cast<MutationOp>(r.arg);
        m.intent_pos = pos;
        const uint32_t index = static_cast<uint32_t>(mutations_.size());
        for (uint64_t b = r.lba; b < r.lba + r.count; ++b) {
          auto& list = history_[vol][b];
          // The child never has two requests on one block in flight: the model's per-block
          // order is the journal's.
          if (!list.empty() && mutations_[list.back()].complete_pos == kNever) {
            fail(failures, at + "seq " + std::to_string(r.seq) + " overlaps seq " +
                               std::to_string(mutations_[list.back()].seq) + " still in flight");
            return;
          }
          list.push_back(index);
        }
        by_seq_[m.seq] = index;
        mutations_.push_back(m);
        ++report.mutations;
        break;
      }
      case RecordType::kComplete: {
        auto it = by_seq_.find(r.seq);
        if (it == by_seq_.end() || mutations_[it->second].complete_pos != kNever) {
          fail(failures, at + "completion of unknown seq " + std::to_string(r.seq));
          return;
        }
        Mutation& m = mutations_[it->second];
        m.complete_pos = pos;
        m.result = static_cast<int64_t>(r.arg);
        if (m.ok()) {
          for (uint64_t c = m.lba / kChunkBlocks; c <= (m.lba + m.count - 1) / kChunkBlocks; ++c)
            touched[m.volume][c] = static_cast<int64_t>(pos);
          completed_[m.volume].push_back(it->second);
          if (m.op == MutationOp::kWriteFua && pos <= durable_until) m.durable = true;
        }
        break;
      }
      case RecordType::kFlushSubmit: {
        int vol = volume_index(r.volume);
        if (vol < 0) {
          fail(failures, at + "flush of an unknown volume");
          return;
        }
        flushes_[r.seq] = {static_cast<uint32_t>(vol), pos};
        break;
      }
      case RecordType::kFlushDone: {
        auto it = flushes_.find(r.seq);
        if (it == flushes_.end()) {
          fail(failures, at + "completion of an unknown flush");
          return;
        }
        auto [vol, submit_pos] = it->second;
        flushes_.erase(it);
        ++report.flushes_done;
        if (r.arg != 0 || pos > durable_until) break;
        // Everything of this volume completed before the flush was submitted is durable.
        auto& done = completed_[vol];
        size_t& covered = covered_[vol];
        while (covered < done.size() && mutations_[done[covered]].complete_pos < submit_pos)
          mutations_[done[covered++]].durable = true;
        break;
      }
      case RecordType::kSnapshotBegin: {
        int vol = volume_index(r.volume);
        if (vol < 0) {
          fail(failures, at + "snapshot of an unknown volume");
          return;
        }
        creates_[r.seq] = SnapshotOp{static_cast<uint32_t>(vol), pos};
        snapshot_pos[vol] = static_cast<int64_t>(pos);
        ++report.snapshot_ops;
        break;
      }
      case RecordType::kSnapshotDone:
        if (!creates_.count(r.seq)) {
          fail(failures, at + "end of an unknown snapshot create");
          return;
        }
        creates_[r.seq].done_pos = pos;
        creates_[r.seq].result = static_cast<int64_t>(r.arg);
        break;
      case RecordType::kDeleteBegin:
        deletes_[r.arg] = DeleteOp{pos};
        ++report.snapshot_ops;
        break;
      case RecordType::kDeleteDone: {
        bool found = false;
        for (auto& [target, op] : deletes_) {
          if (records[op.begin_pos].seq == r.seq) {
            op.done_pos = pos;
            op.result = static_cast<int64_t>(r.arg);
            found = true;
          }
        }
        if (!found) {
          fail(failures, at + "end of an unknown snapshot delete");
          return;
        }
        break;
      }
      case RecordType::kError:
        fail(failures, at + "the child reported an error (code " + std::to_string(r.arg) +
                           ", seq " + std::to_string(r.seq) + ", volume " +
                           std::to_string(r.volume) + ", lba " + std::to_string(r.lba) +
                           ", detail " + std::to_string(r.spare) + ")");
        break;
      default:
        fail(failures, at + "unknown record type");
        return;
    }
  }
  for (const Mutation& m : mutations_) {
    if (m.complete_pos == kNever) ++report.in_flight;
    if (m.durable) ++report.durable;
  }
  report.flushes_in_flight = flushes_.size();
  count_copy_on_write(snapshot_pos, touched, report);
  for (const auto& [seq, op] : creates_) report.snapshot_op_in_flight |= op.done_pos == kNever;
  for (const auto& [seq, op] : deletes_) report.snapshot_op_in_flight |= op.done_pos == kNever;
}

void CrashModel::count_copy_on_write(const std::vector<int64_t>& snapshot_pos,
                                     const std::vector<std::vector<int64_t>>& touched,
                                     CycleReport& report) {
  constexpr uint64_t kChunkBlocks = 16;
  for (const Mutation& m : mutations_) {
    if (m.complete_pos != kNever || !m.is_write()) continue;
    for (uint64_t c = m.lba / kChunkBlocks; c <= (m.lba + m.count - 1) / kChunkBlocks; ++c) {
      if (snapshot_pos[m.volume] <= touched[m.volume][c]) continue;
      bool mapped = touched[m.volume][c] >= 0;
      for (uint64_t b = c * kChunkBlocks; b < (c + 1) * kChunkBlocks && !mapped; ++b)
        mapped = baseline_[m.volume][b] != 0;
      if (mapped) {
        ++report.copy_on_write_in_flight;
        break;
      }
    }
  }
}

bool CrashModel::check_block(const std::string& where, uint32_t vol, uint64_t lba, uint64_t found,
                             const Allowed& allowed, CycleReport* report,
                             std::vector<std::string>& failures) {
  const auto& list = history_[vol][lba];
  int64_t match = -2;  // index in list of the newest allowed mutation with this value
  if (allowed.lo < 0 && baseline_[vol][lba] == found) match = -1;
  for (int64_t i = std::max<int64_t>(allowed.lo, 0); i < allowed.hi; ++i) {
    if (mutations_[list[i]].value() == found) match = i;
  }
  if (match != -2) {
    if (report) {
      int64_t last_completed = -1;
      for (int64_t i = 0; i < static_cast<int64_t>(list.size()); ++i) {
        if (mutations_[list[i]].ok()) last_completed = i;
      }
      if (match < last_completed) ++report->lost_completed;
      if (match >= 0 && mutations_[list[match]].complete_pos == kNever) ++report->in_flight_landed;
    }
    return true;
  }
  std::string expect;
  if (allowed.lo < 0) {
    expect = "the baseline (" + describe(baseline_[vol][lba]) + ")";
  } else {
    const Mutation& d = mutations_[list[allowed.lo]];
    expect = "the last durable " + std::string(d.is_write() ? "write " : "discard/zeroes ") +
             "seq " + std::to_string(d.seq);
  }
  if (allowed.hi > std::max<int64_t>(allowed.lo, 0)) expect += " or something started after it";
  fail(failures, where + " block " + std::to_string(lba) + ": found " + describe(found) +
                     ", expected " + expect + " [" + std::to_string(list.size()) +
                     " mutations this cycle]");
  return false;
}

std::vector<uint64_t> CrashModel::check_object(Pool& pool, const std::string& name, uint32_t vol,
                                               const std::vector<Allowed>* allowed,
                                               const std::vector<uint64_t>* exact,
                                               CycleReport& report,
                                               std::vector<std::string>& failures) {
  const ModelVolume& mv = volumes_[vol];
  std::vector<uint64_t> found(mv.blocks, 0);
  // Says so when the kill interrupted the snapshot's delete (where a bug hid before).
  std::string label = name;
  if (name.rfind("snap-", 0) == 0) {
    auto it = deletes_.find(std::stoull(name.substr(5)));
    if (it != deletes_.end() && it->second.done_pos == kNever)
      label += " (its delete was in progress at the kill)";
  }
  auto handle = pool.open_volume(name);
  if (handle.has_error()) {
    fail(failures, "open " + name + ": " + handle.error().to_string());
    return found;
  }
  testing::SyncIo io;
  testing::AlignedBuf buf(kReadBytes);
  const uint64_t per_read = kReadBytes / kBlockBytes;
  for (uint64_t first = 0; first < mv.blocks; first += per_read) {
    const uint64_t n = std::min(per_read, mv.blocks - first);
    int rc = io.run(*handle.value(), IoOp::kRead, first * kBlockBytes, n * kBlockBytes, buf.data);
    if (rc != 0) {
      fail(failures, "read " + name + ": " + std::strerror(-rc));
      return found;
    }
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t lba = first + i;
      const std::string& where = label;
      DecodedBlock d = decode_block(buf.data + i * kBlockBytes);
      ++report.blocks_checked;
      if (d.kind == DecodedBlock::Kind::kGarbage) {
        fail(failures, where + " block " + std::to_string(lba) + ": torn or garbage content");
        continue;
      }
      if (d.kind == DecodedBlock::Kind::kValid) {
        if (d.volume != mv.id || d.lba != lba) {
          fail(failures, where + " block " + std::to_string(lba) + ": foreign data (volume id " +
                             std::to_string(d.volume) + ", block " + std::to_string(d.lba) +
                             ", seq " + std::to_string(d.seq) + ")");
          continue;
        }
        found[lba] = d.seq;
      }
      if (exact) {
        if (found[lba] != (*exact)[lba])
          fail(failures, where + " block " + std::to_string(lba) + ": a snapshot changed: found " +
                             describe(found[lba]) + ", it held " + describe((*exact)[lba]));
      } else {
        check_block(where, vol, lba, found[lba], (*allowed)[lba],
                    name == mv.name ? &report : nullptr, failures);
      }
    }
  }
  return found;
}

void CrashModel::verify(Pool& pool, CycleReport& report, std::vector<std::string>& failures) {
  const size_t failures_before = failures.size();
  std::map<std::string, ObjectInfo> present;
  for (ObjectInfo& info : pool.list()) present[info.name] = std::move(info);

  // Volumes: the last durable value, or anything started after it.
  std::vector<std::vector<uint64_t>> new_baseline;
  for (uint32_t v = 0; v < volumes_.size(); ++v) {
    if (!present.count(volumes_[v].name)) {
      fail(failures, "volume " + volumes_[v].name + " is gone");
      return;
    }
    std::vector<Allowed> allowed(volumes_[v].blocks);
    for (uint64_t b = 0; b < volumes_[v].blocks; ++b) {
      const auto& list = history_[v][b];
      allowed[b].hi = static_cast<int64_t>(list.size());
      for (int64_t i = 0; i < allowed[b].hi; ++i) {
        if (mutations_[list[i]].durable) allowed[b].lo = i;
      }
    }
    new_baseline.push_back(
        check_object(pool, volumes_[v].name, v, &allowed, nullptr, report, failures));
  }

  // Snapshots: which must, may, or must not exist.
  std::map<std::string, KnownSnapshot> next;
  std::set<std::string> may_exist;
  // A create or delete is certain once it returned, unless a power cut struck after the
  // last point that vouches for it (durable_until_: it may or may not have reached the disk).
  auto certain = [&](size_t done_pos) { return done_pos != kNever && done_pos <= durable_until_; };
  auto deleted = [&](uint64_t seq, bool* maybe) {
    auto it = deletes_.find(seq);
    *maybe = it != deletes_.end() && !certain(it->second.done_pos);
    return it != deletes_.end() && certain(it->second.done_pos) && it->second.result == 0;
  };
  auto expect_presence = [&](const std::string& name, bool must, bool maybe) {
    bool is = present.count(name) && present[name].is_snapshot;
    if (must && !maybe && !is) fail(failures, "snapshot " + name + " is missing");
    if (!must && !maybe && is) fail(failures, "snapshot " + name + " exists but should not");
    may_exist.insert(name);
    return is;
  };
  for (const auto& [name, known] : snapshots_) {
    bool maybe = false;
    bool gone = deleted(std::stoull(name.substr(5)), &maybe);
    if (!expect_presence(name, !gone, maybe)) continue;
    if (present[name].volume != volumes_[known.volume].name)
      fail(failures, "snapshot " + name + " now belongs to " + present[name].volume);
    std::vector<uint64_t> found =
        check_object(pool, name, known.volume, nullptr, &known.content, report, failures);
    next[name] = KnownSnapshot{known.volume, std::move(found)};
  }
  for (const auto& [seq, op] : creates_) {
    const std::string name = snapshot_name(seq);
    bool maybe_deleted = false;
    bool gone = deleted(seq, &maybe_deleted);
    bool created = certain(op.done_pos) && op.result == 0;
    bool maybe =
        maybe_deleted || (!certain(op.done_pos) && (op.done_pos == kNever || op.result == 0));
    if (!expect_presence(name, created && !gone, maybe)) continue;
    if (present[name].volume != volumes_[op.volume].name)
      fail(failures, "snapshot " + name + " belongs to " + present[name].volume);
    // Per block: a value current at some instant of the create call, no older than what
    // was durable when the call began.
    const uint32_t v = op.volume;
    std::vector<Allowed> allowed(volumes_[v].blocks);
    for (uint64_t b = 0; b < volumes_[v].blocks; ++b) {
      const auto& list = history_[v][b];
      int64_t completed_before = 0;
      while (completed_before < static_cast<int64_t>(list.size()) &&
             mutations_[list[completed_before]].complete_pos < op.begin_pos)
        ++completed_before;
      for (int64_t i = 0; i < completed_before; ++i) {
        if (mutations_[list[i]].durable) allowed[b].lo = i;
      }
      int64_t hi = completed_before;
      while (hi < static_cast<int64_t>(list.size()) &&
             mutations_[list[hi]].intent_pos < op.done_pos)
        ++hi;
      allowed[b].hi = hi;
    }
    std::vector<uint64_t> found = check_object(pool, name, v, &allowed, nullptr, report, failures);
    next[name] = KnownSnapshot{v, std::move(found)};
  }
  for (const auto& [name, info] : present) {
    if (info.is_snapshot && !may_exist.count(name))
      fail(failures, "snapshot " + name + " was never created");
  }

  if (failures.size() == failures_before) {
    baseline_ = std::move(new_baseline);
    snapshots_ = std::move(next);
  }
}

}  // namespace pxd::crash
