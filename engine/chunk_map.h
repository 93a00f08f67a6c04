// engine/chunk_map.h: a compact map from chunk index to a small value. Every mapped chunk
// of every volume has an entry in one (a tree's live map), and so does every chunk an
// opened snapshot sees, so the bytes per entry are pxd's memory per GiB of data.
//
// Chunk indexes are grouped by 64 (index >> 6). A group is one allocation: a 64-bit mask
// of the indexes present and their values in index order, sized to the values present
// (1, 2, 4, then in steps of 4). Groups are found through an open-addressing table of (group
// number, group). A densely mapped volume costs about sizeof(V) + 1 bytes per entry (a node-based
// hash map costs 50-64); a sparse one, with one entry per group, about sizeof(V) + 40.
//
// Not thread-safe: the owner locks. A pointer from find() or emplace() stays valid until
// the next emplace(), erase() or erase_if() on the map. Iteration order is unspecified.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace pxd {

template <typename V>
class ChunkMap {
  static_assert(std::is_trivially_copyable_v<V> && std::is_trivially_destructible_v<V>,
                "values are moved with memcpy and realloc");

 public:
  ChunkMap() = default;
  ChunkMap(const ChunkMap&) = delete;
  ChunkMap& operator=(const ChunkMap&) = delete;
  ChunkMap(ChunkMap&& other) noexcept { take(other); }
  ChunkMap& operator=(ChunkMap&& other) noexcept {
    if (this != &other) {
      clear();
      take(other);
    }
    return *this;
  }
  ~ChunkMap() { clear(); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t count(uint64_t ci) const { return find(ci) ? 1 : 0; }

  const V* find(uint64_t ci) const {
    const Group* g = group_of(ci >> kGroupShift);
    if (!g) return nullptr;
    const uint64_t bit = bit_of(ci);
    return (g->present & bit) ? g->values() + rank(g->present, bit) : nullptr;
  }
  V* find(uint64_t ci) { return const_cast<V*>(std::as_const(*this).find(ci)); }

  // Adds (ci, value) unless ci is present; returns the entry and whether it was added.
  std::pair<V*, bool> emplace(uint64_t ci, const V& value) {
    const uint64_t key = ci >> kGroupShift;
    Slot* slot = slot_of(key);
    if (!slot) {
      if ((groups_ + 1) * 4 > capacity_ * 3) rehash(capacity_ ? capacity_ * 2 : kMinSlots);
      slot = insert_slot(key, new_group(1));
      ++groups_;
    }
    Group* g = slot->group;
    const uint64_t bit = bit_of(ci);
    const size_t r = rank(g->present, bit);
    if (g->present & bit) return {g->values() + r, false};
    const size_t n = std::popcount(g->present);
    if (n == g->capacity) {
      g = resize_group(g, n < 4 ? n * 2 : n + 4);
      slot->group = g;
    }
    V* values = g->values();
    std::memmove(values + r + 1, values + r, (n - r) * sizeof(V));
    std::memcpy(values + r, &value, sizeof(V));
    g->present |= bit;
    ++size_;
    return {values + r, true};
  }

  bool erase(uint64_t ci) {
    Slot* slot = slot_of(ci >> kGroupShift);
    if (!slot || !remove_value(slot->group, bit_of(ci))) return false;
    if (slot->group->present == 0) {
      std::free(slot->group);
      remove_slot(static_cast<size_t>(slot - slots_));
      --groups_;
    } else {
      slot->group = shrink_group(slot->group);
    }
    return true;
  }

  // f(uint64_t ci, V& value) for every entry; f must not add or erase entries.
  template <typename F>
  void for_each(F&& f) {
    for (size_t i = 0; i < capacity_; ++i) {
      Group* g = slots_[i].group;
      if (!g) continue;
      const uint64_t base = slots_[i].key << kGroupShift;
      V* v = g->values();
      for (uint64_t bits = g->present; bits; bits &= bits - 1)
        f(base + std::countr_zero(bits), *v++);
    }
  }
  template <typename F>
  void for_each(F&& f) const {
    const_cast<ChunkMap*>(this)->for_each(
        [&](uint64_t ci, V& v) { f(ci, static_cast<const V&>(v)); });
  }

  // Erases every entry for which pred(uint64_t ci, V& value) is true. pred may change
  // entries (found with find()), but not add or erase them. Returns how many went.
  template <typename F>
  size_t erase_if(F&& pred) {
    size_t erased = 0;
    bool emptied = false;
    for (size_t i = 0; i < capacity_; ++i) {
      Group* g = slots_[i].group;
      if (!g) continue;
      const uint64_t base = slots_[i].key << kGroupShift;
      for (uint64_t bits = g->present; bits; bits &= bits - 1) {
        const uint64_t bit = bits & -bits;
        V& v = g->values()[rank(g->present, bit)];
        if (!pred(base + std::countr_zero(bits), v)) continue;
        remove_value(g, bit);
        ++erased;
      }
      if (g->present == 0) {
        emptied = true;
      } else {
        slots_[i].group = shrink_group(g);
      }
    }
    // Backward-shift deletion could move a slot behind the scan; rebuilding is simpler.
    if (emptied) {
      for (size_t i = 0; i < capacity_; ++i) {
        Group* g = slots_[i].group;
        if (g && g->present == 0) {
          std::free(g);
          slots_[i].group = nullptr;
          --groups_;
        }
      }
      rehash(groups_ ? slots_for(groups_) : 0);
    }
    return erased;
  }

  void clear() {
    for (size_t i = 0; i < capacity_; ++i) std::free(slots_[i].group);
    std::free(slots_);
    slots_ = nullptr;
    capacity_ = 0;
    groups_ = 0;
    size_ = 0;
  }

  // Heap bytes held (requested sizes; malloc adds a few bytes per allocation).
  size_t memory_bytes() const {
    size_t bytes = capacity_ * sizeof(Slot);
    for (size_t i = 0; i < capacity_; ++i)
      if (const Group* g = slots_[i].group) bytes += group_bytes(g->capacity);
    return bytes;
  }

 private:
  static constexpr unsigned kGroupShift = 6;
  static constexpr size_t kMinSlots = 8;
  static constexpr uint64_t kHashMultiplier = 0x9E3779B97F4A7C15ULL;  // 2^64 / golden ratio

  struct Group {
    uint64_t present;
    uint32_t capacity;  // values allocated
    uint32_t unused;
    V* values() { return reinterpret_cast<V*>(this + 1); }
    const V* values() const { return reinterpret_cast<const V*>(this + 1); }
  };
  static_assert(alignof(V) <= alignof(Group));
  struct Slot {
    uint64_t key = 0;
    Group* group = nullptr;  // null: empty
  };

  static uint64_t bit_of(uint64_t ci) { return uint64_t{1} << (ci & ((1u << kGroupShift) - 1)); }
  static size_t rank(uint64_t present, uint64_t bit) { return std::popcount(present & (bit - 1)); }
  static size_t group_bytes(size_t capacity) { return sizeof(Group) + capacity * sizeof(V); }
  static size_t slots_for(size_t groups) { return std::bit_ceil(std::max(kMinSlots, groups * 2)); }

  static Group* new_group(uint32_t capacity) {
    auto* g = static_cast<Group*>(std::malloc(group_bytes(capacity)));
    if (!g) throw std::bad_alloc();
    g->present = 0;
    g->capacity = capacity;
    return g;
  }
  static Group* resize_group(Group* g, size_t capacity) {
    auto* moved = static_cast<Group*>(std::realloc(g, group_bytes(capacity)));
    if (!moved) throw std::bad_alloc();
    moved->capacity = static_cast<uint32_t>(capacity);
    return moved;
  }
  // Gives back room that erases left, keeping some so that churn does not realloc.
  static Group* shrink_group(Group* g) {
    const size_t n = std::popcount(g->present);
    if (g->capacity - n < 8) return g;
    return resize_group(g, (n + 3) & ~size_t{3});
  }
  bool remove_value(Group* g, uint64_t bit) {
    if (!(g->present & bit)) return false;
    const size_t r = rank(g->present, bit);
    const size_t n = std::popcount(g->present);
    V* values = g->values();
    std::memmove(values + r, values + r + 1, (n - r - 1) * sizeof(V));
    g->present &= ~bit;
    --size_;
    return true;
  }

  size_t home(uint64_t key) const {
    return static_cast<size_t>((key * kHashMultiplier) >> (64 - std::countr_zero(capacity_)));
  }
  const Group* group_of(uint64_t key) const {
    const Slot* s = const_cast<ChunkMap*>(this)->slot_of(key);
    return s ? s->group : nullptr;
  }
  Slot* slot_of(uint64_t key) {
    if (capacity_ == 0) return nullptr;
    for (size_t i = home(key);; i = (i + 1) & (capacity_ - 1)) {
      Slot& s = slots_[i];
      if (!s.group) return nullptr;
      if (s.key == key) return &s;
    }
  }
  Slot* insert_slot(uint64_t key, Group* g) {
    size_t i = home(key);
    while (slots_[i].group) i = (i + 1) & (capacity_ - 1);
    slots_[i] = Slot{key, g};
    return &slots_[i];
  }
  // Linear probing's deletion without tombstones: pull back each later entry of the run
  // whose home is not in (hole, its position].
  void remove_slot(size_t hole) {
    const size_t mask = capacity_ - 1;
    for (size_t j = (hole + 1) & mask; slots_[j].group; j = (j + 1) & mask) {
      const size_t h = home(slots_[j].key);
      const bool stays = hole < j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (stays) continue;
      slots_[hole] = slots_[j];
      hole = j;
    }
    slots_[hole] = Slot{};
  }
  void rehash(size_t capacity) {
    Slot* old = slots_;
    const size_t old_capacity = capacity_;
    slots_ = nullptr;
    capacity_ = capacity;
    if (capacity) {
      slots_ = static_cast<Slot*>(std::calloc(capacity, sizeof(Slot)));
      if (!slots_) {
        slots_ = old;
        capacity_ = old_capacity;
        throw std::bad_alloc();
      }
    }
    for (size_t i = 0; i < old_capacity; ++i)
      if (old[i].group) insert_slot(old[i].key, old[i].group);
    std::free(old);
  }
  void take(ChunkMap& other) {
    slots_ = std::exchange(other.slots_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    groups_ = std::exchange(other.groups_, 0);
    size_ = std::exchange(other.size_, 0);
  }

  Slot* slots_ = nullptr;
  size_t capacity_ = 0;  // a power of two, or 0
  size_t groups_ = 0;
  size_t size_ = 0;
};

}  // namespace pxd
