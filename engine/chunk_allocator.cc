#include "engine/chunk_allocator.h"

#include <algorithm>
#include <utility>

namespace pxd {

ChunkAllocator::ChunkAllocator(const std::vector<uint64_t>& device_chunk_counts, size_t max_reserve,
                               size_t initial_reserve)
    : max_reserve_batch_(std::clamp<size_t>(max_reserve, 64, 65536)),
      reserve_batch_(std::clamp<size_t>(initial_reserve, 64, max_reserve_batch_)) {
  for (uint64_t count : device_chunk_counts) {
    bases_.push_back(total_);
    total_ += count;
  }
  refs_.assign(total_, 0);
  referrers_.assign(total_, 0);
  free_bits_.assign((total_ + 63) / 64, 0);
}

std::pair<uint32_t, uint64_t> ChunkAllocator::locate(uint64_t chunk) const {
  auto it = std::upper_bound(bases_.begin(), bases_.end(), chunk);
  uint32_t dev = static_cast<uint32_t>(it - bases_.begin() - 1);
  return {dev, chunk - bases_[dev]};
}

Status ChunkAllocator::for_each_run(
    std::vector<uint64_t> chunks, uint64_t max_count,
    const std::function<Status(uint32_t, uint64_t, uint64_t)>& fn) const {
  std::sort(chunks.begin(), chunks.end());
  max_count = std::max<uint64_t>(max_count, 1);
  size_t i = 0;
  while (i < chunks.size()) {
    auto [dev, local] = locate(chunks[i]);
    size_t j = i + 1;
    while (j < chunks.size() && j - i < max_count && chunks[j] == chunks[j - 1] + 1 &&
           locate(chunks[j]).first == dev)
      ++j;
    PXD_RETURN_IF_ERROR(fn(dev, local, j - i));
    i = j;
  }
  return Status::ok();
}

bool ChunkAllocator::load_reference(uint64_t chunk, uint64_t referrer) {
  if (chunk >= total_) return false;
  if (refs_[chunk]++ == 0) ++referenced_;
  referrers_[chunk] ^= referrer;
  return true;
}

void ChunkAllocator::finish_load(const std::vector<uint64_t>& dirty_unreferenced) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t c = 0; c < total_; ++c) {
    if (refs_[c] == 0) set_free(c, true);
  }
  // Dirty chunks are not free until the reclaimer zeroes them.
  for (uint64_t c : dirty_unreferenced) {
    if (c < total_ && refs_[c] == 0) {
      set_free(c, false);
      ++reclaiming_;
    }
  }
}

void ChunkAllocator::set_free(uint64_t chunk, bool free) {
  uint64_t bit = 1ULL << (chunk % 64);
  uint64_t& word = free_bits_[chunk / 64];
  bool was = word & bit;
  if (was == free) return;
  if (free) {
    word |= bit;
    ++free_count_;
  } else {
    word &= ~bit;
    --free_count_;
  }
}

size_t ChunkAllocator::reserve_target() const {
  return reserve_batch_;
}

ChunkAllocator::AllocStatus ChunkAllocator::allocate(uint64_t* chunk, uint64_t referrer,
                                                     std::function<void()> on_refilled) {
  std::lock_guard<std::mutex> lock(mu_);
  if (reserve_.empty()) {
    if (free_count_ == 0 && !refill_running_) return AllocStatus::kNoSpace;
    // Callers had to wait: keep a deeper reserve from now on.
    reserve_batch_ = std::min(max_reserve_batch_, reserve_batch_ * 2);
    waiters_.push_back(std::move(on_refilled));
    return AllocStatus::kWait;
  }
  *chunk = reserve_.back();
  reserve_.pop_back();
  refs_[*chunk] = 1;
  referrers_[*chunk] = referrer;
  ++referenced_;
  return AllocStatus::kOk;
}

void ChunkAllocator::unallocate(uint64_t chunk) {
  std::lock_guard<std::mutex> lock(mu_);
  refs_[chunk] = 0;
  referrers_[chunk] = 0;
  --referenced_;
  reserve_.push_back(chunk);
}

uint32_t ChunkAllocator::add_reference(uint64_t chunk, uint64_t referrer) {
  std::lock_guard<std::mutex> lock(mu_);
  if (refs_[chunk]++ == 0) ++referenced_;
  referrers_[chunk] ^= referrer;
  return refs_[chunk];
}

ChunkAllocator::Dropped ChunkAllocator::drop_reference(uint64_t chunk, uint64_t referrer) {
  std::lock_guard<std::mutex> lock(mu_);
  Dropped d;
  d.left = --refs_[chunk];
  referrers_[chunk] ^= referrer;
  if (d.left == 0) {
    --referenced_;
    ++reclaiming_;
    referrers_[chunk] = 0;  // whatever a bad caller left, a free chunk starts clean
  } else if (d.left == 1) {
    d.last_referrer = referrers_[chunk];
  }
  return d;
}

uint32_t ChunkAllocator::references(uint64_t chunk) const {
  std::lock_guard<std::mutex> lock(mu_);
  return refs_[chunk];
}

bool ChunkAllocator::wants_refill() {
  std::lock_guard<std::mutex> lock(mu_);
  if (refill_running_) return false;
  bool need = !waiters_.empty() || reserve_.size() < reserve_target() / 2;
  // With no free chunk, a refill still runs when someone waits: it lets them see kNoSpace.
  if (!need || (free_count_ == 0 && waiters_.empty())) return false;
  refill_running_ = true;
  return true;
}

std::vector<uint64_t> ChunkAllocator::take_for_reserve() {
  std::lock_guard<std::mutex> lock(mu_);
  refill_running_ = true;
  grew_in_refill_ = false;
  std::vector<uint64_t> out;
  size_t target = reserve_target();
  size_t max = target > reserve_.size() ? target - reserve_.size() : 0;
  if (max == 0 && !waiters_.empty()) max = 1;
  size_t want = std::min<uint64_t>(max, free_count_);
  out.reserve(want);
  // Next fit: from the word of the cursor onward, wrapping once (the first word is seen
  // again at the end, for its chunks below the cursor). The start is fixed before the
  // scan, which moves the cursor.
  const uint64_t words = free_bits_.size();
  const uint64_t first_word = cursor_ / 64;
  for (uint64_t scanned = 0; out.size() < want && scanned <= words; ++scanned) {
    uint64_t w = (first_word + scanned) % words;
    while (free_bits_[w] != 0 && out.size() < want) {
      int bit = __builtin_ctzll(free_bits_[w]);
      uint64_t c = w * 64 + static_cast<uint64_t>(bit);
      set_free(c, false);
      ++in_refill_;
      out.push_back(c);
      cursor_ = c + 1 < total_ ? c + 1 : 0;
    }
  }
  // Hand out in ascending order: reserve_ is a stack, so push in reverse.
  std::reverse(out.begin(), out.end());
  return out;
}

void ChunkAllocator::add_to_reserve(const std::vector<uint64_t>& chunks) {
  std::vector<std::function<void()>> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!grew_in_refill_ && reserve_.size() < reserve_batch_ / 4) {
      reserve_batch_ = std::min(max_reserve_batch_, reserve_batch_ * 2);
      grew_in_refill_ = true;
    }
    reserve_.insert(reserve_.end(), chunks.begin(), chunks.end());
    in_refill_ -= chunks.size();
    if (!chunks.empty()) waiters.swap(waiters_);
  }
  // Each waiter retries allocate(): it gets a chunk, or waits for the refill's next piece.
  for (auto& w : waiters) w();
}

void ChunkAllocator::return_free(const std::vector<uint64_t>& chunks) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t c : chunks) set_free(c, true);
  in_refill_ -= chunks.size();
}

void ChunkAllocator::finish_reclaim(const std::vector<uint64_t>& chunks) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t c : chunks) {
    // A chunk referenced again cannot be here: only zero-count chunks are reclaimed.
    set_free(c, true);
    --reclaiming_;
  }
}

void ChunkAllocator::finish_refill() {
  std::vector<std::function<void()>> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    refill_running_ = false;
    waiters.swap(waiters_);
  }
  // Each waiter retries allocate(): it gets a chunk, kNoSpace, or waits again.
  for (auto& w : waiters) w();
}

bool ChunkAllocator::refill_running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refill_running_;
}

ChunkAllocator::Usage ChunkAllocator::usage() const {
  std::lock_guard<std::mutex> lock(mu_);
  Usage u;
  u.capacity = total_;
  u.referenced = referenced_;
  u.free = free_count_ + reserve_.size() + in_refill_;
  u.reclaiming = reclaiming_;
  return u;
}

std::vector<uint64_t> ChunkAllocator::reserve_snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reserve_;
}

}  // namespace pxd
