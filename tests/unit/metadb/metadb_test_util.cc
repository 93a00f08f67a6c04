#include "metadb_test_util.h"

#include <doctest/doctest.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace pxd::metadb::testing {

TempDir::TempDir() {
  char tmpl[] = "/tmp/pxd-metadb-test-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

PoolRecord sample_pool() {
  PoolRecord pool;
  pool.uuid = "0f8e3c1a-5b7d-4e2f-9a6c-1d2e3f4a5b6c";
  pool.chunk_size = 1 << 20;
  pool.devices = {{"/var/lib/pxd/pool.img", 10240}, {"/dev/nvme0n1", 1ull << 40}};
  pool.created_unix = 1700000000;
  return pool;
}

ObjectRecord sample_volume(uint64_t id) {
  ObjectRecord o;
  o.id = id;
  o.kind = ObjectKind::kVolume;
  o.name = "vol-" + std::to_string(id);
  o.size_bytes = 10ull << 30;
  o.block_size = 4096;
  o.tree = id;
  o.generation = 1;
  o.created_unix = 1700000000 + static_cast<int64_t>(id);
  return o;
}

std::vector<ObjectRecord> all_objects(const MetaStore& store) {
  std::vector<ObjectRecord> out;
  Status s = store.for_each_object([&](ObjectRecord&& o) {
    out.push_back(std::move(o));
    return Status::ok();
  });
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  return out;
}

std::vector<std::pair<ExtentKey, ExtentValue>> all_extents(const MetaStore& store) {
  std::vector<std::pair<ExtentKey, ExtentValue>> out;
  Status s = store.for_each_extent([&](const ExtentKey& k, const ExtentValue& v) {
    out.emplace_back(k, v);
    return Status::ok();
  });
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  return out;
}

std::vector<uint64_t> all_dirty(const MetaStore& store) {
  std::vector<uint64_t> out;
  Status s = store.for_each_dirty([&](uint64_t chunk) {
    out.push_back(chunk);
    return Status::ok();
  });
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  return out;
}

std::map<std::string, std::string> snapshot_files(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream contents;
    contents << in.rdbuf();
    files[entry.path().filename().string()] = contents.str();
  }
  return files;
}

namespace {

std::unique_ptr<rocksdb::DB> raw_open(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = false;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  return std::unique_ptr<rocksdb::DB>(db);
}

}  // namespace

void raw_put(const std::string& dir, const std::string& key, const std::string& value) {
  auto db = raw_open(dir);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  REQUIRE(db->Put(wo, key, value).ok());
  REQUIRE(db->Close().ok());
}

void raw_delete(const std::string& dir, const std::string& key) {
  auto db = raw_open(dir);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  REQUIRE(db->Delete(wo, key).ok());
  REQUIRE(db->Close().ok());
}

std::map<std::string, std::string> raw_contents(const std::string& dir) {
  auto db = raw_open(dir);
  std::map<std::string, std::string> out;
  {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next())
      out[it->key().ToString()] = it->value().ToString();
    REQUIRE(it->status().ok());
  }
  REQUIRE(db->Close().ok());
  return out;
}

std::string be(uint64_t v, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
  return out;
}

std::string le(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  return out;
}

}  // namespace pxd::metadb::testing
