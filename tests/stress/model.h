// tests/stress/model.h: what the engine should contain, kept the simplest possible way.
//
// Every volume and snapshot is a flat byte vector. Beside the bytes, the model tracks which
// pool chunk each object maps at each chunk index, as an abstract chunk identity: a write
// to a chunk nobody else maps changes it in place, a write to a shared or unmapped chunk
// takes a fresh identity (copy-on-write or allocation), a discard of a whole chunk unmaps
// it. The number of distinct identities is then exactly the pool's used chunks, and an
// object's exclusive bytes are its identities that no other object maps. The stress test
// compares both with the engine's usage() and inspect().
//
// Thread safety: none; the test's main thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace pxd::stress {

inline constexpr uint64_t kBlock = 4096;

struct ModelObject {
  bool snapshot = false;
  std::string volume;                   // snapshot: the volume it was taken of
  std::vector<std::string> snapshots;   // volume: its snapshots, oldest first
  std::string origin;                   // clone: its source while that exists
  std::vector<uint8_t> data;            // size_bytes() == data.size()
  std::map<uint64_t, uint64_t> chunks;  // chunk index -> chunk identity
  uint64_t size() const { return data.size(); }
};

class Model {
 public:
  explicit Model(uint64_t chunk_size) : chunk_size_(chunk_size) {}

  uint64_t chunk_size() const { return chunk_size_; }
  bool exists(const std::string& name) const { return objects_.count(name) != 0; }
  const ModelObject& at(const std::string& name) const { return objects_.at(name); }
  const std::map<std::string, ModelObject>& objects() const { return objects_; }
  std::vector<std::string> names(bool snapshots) const;

  void create_volume(const std::string& name, uint64_t size);
  // Both the snapshot and the clone see the source's bytes and chunks at this instant.
  void create_snapshot(const std::string& volume, const std::string& name);
  void clone(const std::string& source, const std::string& name);
  void restore(const std::string& volume, const std::string& snapshot);
  void remove(const std::string& name);
  void grow(const std::string& name, uint64_t new_size);

  // Block I/O on a volume. `data` is `length` bytes.
  void write(const std::string& name, uint64_t offset, uint64_t length, const uint8_t* data);
  // kDiscard and kWriteZeroes: zeros; whole chunks in the range are unmapped.
  void zero(const std::string& name, uint64_t offset, uint64_t length);

  // Chunk identities, for the concurrent capture in model_test.cc, which learns from the
  // bytes it reads back which writes a snapshot taken during I/O saw.
  uint64_t fresh_identity() { return next_identity_++; }
  // Sets (or with kUnmapped, removes) one chunk of an object's map, and its bytes.
  static constexpr uint64_t kUnmapped = UINT64_MAX;
  void set_chunk(const std::string& name, uint64_t chunk_index, uint64_t identity);
  void set_bytes(const std::string& name, std::vector<uint8_t> data) {
    objects_.at(name).data = std::move(data);
  }

  uint64_t used_chunks() const { return refs_.size(); }
  uint32_t references(uint64_t identity) const;
  // Chunks of `name` no other object maps, and the others.
  uint64_t exclusive_chunks(const std::string& name) const;
  uint64_t shared_chunks(const std::string& name) const;

  // Total of every object's size rounded up to chunks: a bound on used chunks.
  uint64_t chunk_budget() const;

 private:
  void ref(uint64_t identity) { ++refs_[identity]; }
  void unref(uint64_t identity);
  // Before bytes of chunk `ci` of a volume change (not a whole-chunk unmap).
  void touch_chunk(ModelObject& obj, uint64_t ci, bool allocate_if_unmapped);

  uint64_t chunk_size_;
  std::map<std::string, ModelObject> objects_;
  std::unordered_map<uint64_t, uint32_t> refs_;  // identity -> objects mapping it
  uint64_t next_identity_ = 1;
};

}  // namespace pxd::stress
