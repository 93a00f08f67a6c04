// tests/unit/metadb/metadb_test_util.h: fixtures shared by the metadb tests.
//
// Each test gets a private directory under /tmp, removed when it ends. The raw RocksDB
// helpers bypass MetaStore to plant the damage a real store could suffer (bit rot, a newer
// pxd's records), which MetaStore itself can never write.
#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "metadb/meta_store.h"

namespace pxd::metadb::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // A not-yet-existing directory inside this one, for create() to make.
  std::string store() const { return path_ + "/meta"; }

 private:
  std::string path_;
};

PoolRecord sample_pool();
ObjectRecord sample_volume(uint64_t id);

// Every record of one family, in scan order. Fails the test on a scan error.
std::vector<ObjectRecord> all_objects(const MetaStore& store);
std::vector<std::pair<ExtentKey, ExtentValue>> all_extents(const MetaStore& store);
std::vector<uint64_t> all_dirty(const MetaStore& store);

// File name -> contents for every file in `dir`.
std::map<std::string, std::string> snapshot_files(const std::string& dir);

// Raw RocksDB access to a closed store.
void raw_put(const std::string& dir, const std::string& key, const std::string& value);
void raw_delete(const std::string& dir, const std::string& key);
std::map<std::string, std::string> raw_contents(const std::string& dir);

// Big-endian / little-endian byte strings, to spell out expected keys and values.
std::string be(uint64_t v, int bytes);
std::string le(uint64_t v, int bytes);

}  // namespace pxd::metadb::testing
