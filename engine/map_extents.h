// engine/map_extents.h: builds a Volume::map_extents() answer from a chunk map.
//
// Both volume kinds keep a ChunkMap keyed by chunk index. A query over a range with few
// mapped chunks (a huge sparse volume) walks the map's keys instead of every chunk index,
// so the cost is min(chunks in range, mapped chunks) either way.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/volume.h"

namespace pxd {

// REQUIRES: `chunks` does not change during the call (the caller holds its lock).
template <typename ChunkMap>
void map_chunk_extents(const ChunkMap& chunks, uint64_t chunk_size, uint64_t volume_size,
                       uint64_t offset, uint64_t length, std::vector<VolumeExtent>& out) {
  if (offset >= volume_size) return;
  const uint64_t end = offset + std::min(length, volume_size - offset);
  if (end <= offset) return;
  const uint64_t first = offset / chunk_size;
  const uint64_t last = (end - 1) / chunk_size;
  auto emit = [&](uint64_t ci, bool allocated) {
    uint64_t lo = std::max(offset, ci * chunk_size);
    uint64_t hi = std::min(end, (ci + 1) * chunk_size);
    append_extent(out, lo, hi - lo, allocated);
  };
  if (last - first + 1 <= chunks.size() * 4) {
    for (uint64_t ci = first; ci <= last; ++ci) emit(ci, chunks.count(ci) != 0);
    return;
  }
  std::vector<uint64_t> mapped;
  chunks.for_each([&](uint64_t ci, const auto&) {
    if (ci >= first && ci <= last) mapped.push_back(ci);
  });
  std::sort(mapped.begin(), mapped.end());
  uint64_t at = offset;
  for (uint64_t ci : mapped) {
    uint64_t lo = std::max(offset, ci * chunk_size);
    append_extent(out, at, lo - at, false);
    emit(ci, true);
    at = std::min(end, (ci + 1) * chunk_size);
  }
  append_extent(out, at, end - at, false);
}

}  // namespace pxd
