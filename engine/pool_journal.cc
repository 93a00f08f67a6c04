// The extent journal's part of opening a pool: replaying what a crash left in it, and
// starting it afresh. See engine/extent_journal.h and doc/engine.md, "Fresh allocation".
#include <algorithm>

#include "common/log.h"
#include "engine/extent_journal.h"
#include "engine/pool.h"
#include "engine/pool_state.h"

namespace pxd {

Status Pool::replay_journal(const std::string& path, metadb::MetaBatch& batch,
                            std::vector<uint64_t>& unreferenced,
                            const std::vector<metadb::ReservedRun>& runs) {
  PXD_TRY(auto journal_state, state_->store().journal_state());
  if (!journal_state) return Status::ok();
  PXD_TRY(auto records, ExtentJournal::read(path, journal_state->key));
  std::erase_if(records,
                [&](const JournalRecord& r) { return r.sequence <= journal_state->applied; });
  if (records.empty()) return Status::ok();
  std::sort(records.begin(), records.end(),
            [](const JournalRecord& a, const JournalRecord& b) { return a.sequence < b.sequence; });
  auto reserved = [&](uint64_t chunk) {
    for (const auto& run : runs) {
      if (chunk >= run.first_chunk && chunk - run.first_chunk < run.count) return true;
    }
    return false;
  };
  ChunkAllocator& alloc = state_->allocator();
  const uint64_t cs = state_->chunk_size();
  std::vector<uint64_t> replayed;
  for (const JournalRecord& r : records) {
    auto object = objects_.find(r.tree);
    Tree* tree = state_->tree(r.tree);
    std::string why;
    if (object == objects_.end() || object->second.kind != metadb::ObjectKind::kVolume || !tree) {
      why = "its volume is gone";
    } else if (r.chunk_index >= (object->second.size_bytes + cs - 1) / cs) {
      why = "it lies beyond the volume's end";
    } else if (r.pool_chunk >= alloc.capacity_chunks() || !reserved(r.pool_chunk)) {
      why = "its pool chunk was not reserved";
    } else if (alloc.references(r.pool_chunk) != 0) {
      why = "its pool chunk is in use";
    } else if (tree->live.find(r.chunk_index)) {
      why = "the volume maps that chunk already";
    } else if (r.birth < tree->generation) {
      why = "it is older than the volume's newest snapshot";
    }
    if (!why.empty()) {
      PXD_LOG(kWarn) << "extent journal: not replaying record " << r.sequence << " (volume "
                     << r.tree << ", chunk " << r.chunk_index << ", pool chunk " << r.pool_chunk
                     << "): " << why;
      continue;
    }
    // A snapshot queued after the write never reached the store if the record did not: the
    // write belongs to the generation the store has.
    const uint32_t birth = tree->generation;
    alloc.load_reference(r.pool_chunk, r.tree);
    tree->add_live(r.chunk_index, LiveEntry{r.pool_chunk, birth});
    batch.put_extent({r.tree, r.chunk_index, birth}, {r.pool_chunk, metadb::kLiveGeneration});
    replayed.push_back(r.pool_chunk);
  }
  std::sort(replayed.begin(), replayed.end());
  std::erase_if(unreferenced, [&](uint64_t c) {
    return std::binary_search(replayed.begin(), replayed.end(), c);
  });
  PXD_LOG(kInfo) << "extent journal: replayed " << replayed.size() << " of " << records.size()
                 << " extents the store did not have";
  return Status::ok();
}

void Pool::start_journal(const std::string& path, uint32_t slots,
                         const metadb::JournalState& state) {
  if (slots == 0) {
    ExtentJournal::remove(path);
    return;
  }
  auto journal = ExtentJournal::create(path, slots, state.key);
  if (journal.has_error()) {
    PXD_LOG(kWarn) << "running without the extent journal: " << journal.error();
    return;
  }
  state_->writer().attach_journal(std::move(journal).value(), state);
}

}  // namespace pxd
