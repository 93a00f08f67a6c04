#include "tests/stress/model.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace pxd::stress {

std::vector<std::string> Model::names(bool snapshots) const {
  std::vector<std::string> out;
  for (const auto& [name, obj] : objects_) {
    if (obj.snapshot == snapshots) out.push_back(name);
  }
  return out;
}

void Model::create_volume(const std::string& name, uint64_t size) {
  ModelObject obj;
  obj.data.assign(size, 0);
  objects_.emplace(name, std::move(obj));
}

void Model::create_snapshot(const std::string& volume, const std::string& name) {
  ModelObject& vol = objects_.at(volume);
  ModelObject snap;
  snap.snapshot = true;
  snap.volume = volume;
  snap.data = vol.data;
  snap.chunks = vol.chunks;
  for (const auto& [ci, id] : snap.chunks) ref(id);
  vol.snapshots.push_back(name);
  objects_.emplace(name, std::move(snap));
}

void Model::clone(const std::string& source, const std::string& name) {
  const ModelObject& src = objects_.at(source);
  ModelObject obj;
  obj.origin = source;
  obj.data = src.data;
  obj.chunks = src.chunks;
  for (const auto& [ci, id] : obj.chunks) ref(id);
  objects_.emplace(name, std::move(obj));
}

void Model::restore(const std::string& volume, const std::string& snapshot) {
  ModelObject& vol = objects_.at(volume);
  const ModelObject& snap = objects_.at(snapshot);
  for (const auto& [ci, id] : snap.chunks) ref(id);
  for (const auto& [ci, id] : vol.chunks) unref(id);
  vol.chunks = snap.chunks;
  // The volume keeps its (possibly grown) size; what the snapshot never had reads zero.
  uint64_t size = vol.size();
  vol.data = snap.data;
  vol.data.resize(size, 0);
}

void Model::remove(const std::string& name) {
  auto it = objects_.find(name);
  for (const auto& [ci, id] : it->second.chunks) unref(id);
  if (it->second.snapshot) {
    auto& list = objects_.at(it->second.volume).snapshots;
    list.erase(std::find(list.begin(), list.end(), name));
  }
  objects_.erase(it);
  for (auto& [other, obj] : objects_) {
    if (obj.origin == name) obj.origin.clear();
  }
}

void Model::grow(const std::string& name, uint64_t new_size) {
  objects_.at(name).data.resize(new_size, 0);
}

void Model::unref(uint64_t identity) {
  auto it = refs_.find(identity);
  if (--it->second == 0) refs_.erase(it);
}

uint32_t Model::references(uint64_t identity) const {
  auto it = refs_.find(identity);
  return it == refs_.end() ? 0 : it->second;
}

void Model::touch_chunk(ModelObject& obj, uint64_t ci, bool allocate_if_unmapped) {
  auto it = obj.chunks.find(ci);
  if (it == obj.chunks.end()) {
    if (!allocate_if_unmapped) return;  // zeroing part of an unmapped chunk: nothing to do
    uint64_t id = fresh_identity();
    obj.chunks[ci] = id;
    ref(id);
    return;
  }
  if (references(it->second) == 1) return;  // owned alone: changed in place
  uint64_t id = fresh_identity();           // shared: copied first
  unref(it->second);
  it->second = id;
  ref(id);
}

void Model::write(const std::string& name, uint64_t offset, uint64_t length, const uint8_t* data) {
  ModelObject& obj = objects_.at(name);
  if (obj.snapshot || offset + length > obj.size()) throw std::logic_error("bad model write");
  for (uint64_t ci = offset / chunk_size_; ci * chunk_size_ < offset + length; ++ci)
    touch_chunk(obj, ci, true);
  std::memcpy(obj.data.data() + offset, data, length);
}

void Model::zero(const std::string& name, uint64_t offset, uint64_t length) {
  ModelObject& obj = objects_.at(name);
  if (obj.snapshot || offset + length > obj.size()) throw std::logic_error("bad model zero");
  const uint64_t end = offset + length;
  for (uint64_t ci = offset / chunk_size_; ci * chunk_size_ < end; ++ci) {
    uint64_t chunk_start = ci * chunk_size_;
    uint64_t chunk_end = std::min(chunk_start + chunk_size_, obj.size());
    bool whole = offset <= chunk_start && end >= chunk_end;
    if (whole) {
      auto it = obj.chunks.find(ci);
      if (it != obj.chunks.end()) {
        unref(it->second);
        obj.chunks.erase(it);
      }
    } else {
      touch_chunk(obj, ci, false);
    }
  }
  std::memset(obj.data.data() + offset, 0, length);
}

void Model::set_chunk(const std::string& name, uint64_t chunk_index, uint64_t identity) {
  ModelObject& obj = objects_.at(name);
  auto it = obj.chunks.find(chunk_index);
  if (it != obj.chunks.end()) {
    unref(it->second);
    obj.chunks.erase(it);
  }
  if (identity != kUnmapped) {
    obj.chunks[chunk_index] = identity;
    ref(identity);
  }
}

uint64_t Model::exclusive_chunks(const std::string& name) const {
  uint64_t n = 0;
  for (const auto& [ci, id] : objects_.at(name).chunks) n += references(id) == 1;
  return n;
}

uint64_t Model::shared_chunks(const std::string& name) const {
  return objects_.at(name).chunks.size() - exclusive_chunks(name);
}

uint64_t Model::chunk_budget() const {
  uint64_t n = 0;
  for (const auto& [name, obj] : objects_) n += (obj.size() + chunk_size_ - 1) / chunk_size_;
  return n;
}

}  // namespace pxd::stress
