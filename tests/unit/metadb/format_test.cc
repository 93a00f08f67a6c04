// The on-disk format as doc/format.md states it, and what open() and the scans do with a
// store that breaks it. Damage is planted with raw RocksDB writes on a closed store.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "metadb/meta_store.h"
#include "metadb_test_util.h"

namespace pxd::metadb {
namespace {

using testing::be;
using testing::le;
using testing::raw_delete;
using testing::raw_put;
using testing::sample_pool;
using testing::sample_volume;
using testing::snapshot_files;
using testing::TempDir;

const std::string kMagic = "pxd-metadb";

void make_store(const std::string& dir) {
  auto r = MetaStore::create(dir, sample_pool());
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
}

std::unique_ptr<MetaStore> must_open(const std::string& dir) {
  auto r = MetaStore::open(dir);
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  return std::move(r).value();
}

std::set<std::string> json_fields(const std::string& text) {
  std::set<std::string> out;
  const auto object = nlohmann::json::parse(text);  // items() does not extend its lifetime
  for (const auto& [key, value] : object.items()) out.insert(key);
  return out;
}

TEST_CASE("keys and values are laid out as doc/format.md says") {
  TempDir tmp;
  {
    auto store = MetaStore::create(tmp.store(), sample_pool()).value();
    MetaBatch batch;
    ObjectRecord object = sample_volume(17);
    object.labels = {{"app", "db"}};
    batch.put_object(object);
    batch.put_extent({3, 5, 2}, {9, kLiveGeneration});
    batch.put_extent({0x0102030405060708, 0x1112131415161718, 0x21222324}, {0x0a0b, 7});
    batch.put_dirty(258);
    batch.put_reserved_run({5, 0x0102, 300});
    JournalState journal;
    for (size_t i = 0; i < journal.key.size(); ++i) journal.key[i] = static_cast<uint8_t>(0xa0 + i);
    journal.applied = 0x0102030405;
    batch.put_journal_state(journal);
    batch.put_next_id(18);
    REQUIRE(store->write(batch, true).is_ok());
  }
  auto raw = testing::raw_contents(tmp.store());
  std::map<std::string, std::string> want_fixed = {
      {"F", kMagic + le(3, 4)},
      {"I", le(18, 8)},
      {"J", std::string("\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf", 16) +
                le(0x0102030405, 8)},
      {"E" + be(3, 8) + be(5, 8) + be(2, 4), le(9, 8) + le(0xffffffff, 4)},
      {"E" + std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8) +
           std::string("\x11\x12\x13\x14\x15\x16\x17\x18", 8) + std::string("\x21\x22\x23\x24", 4),
       std::string("\x0b\x0a\0\0\0\0\0\0", 8) + std::string("\x07\0\0\0", 4)},
      {"D" + be(258, 8), ""},
      {"R" + be(5, 8), le(0x0102, 8) + le(300, 8)},
  };
  for (const auto& [key, value] : want_fixed) {
    INFO("key of " << key.size() << " bytes starting '" << key[0] << "'");
    REQUIRE(raw.count(key) == 1);
    CHECK(raw[key] == value);
  }
  const std::string object_key = "O" + be(17, 8);
  REQUIRE(raw.count(object_key) == 1);
  REQUIRE(raw.count("P") == 1);
  CHECK(raw.size() == want_fixed.size() + 2);

  CHECK(json_fields(raw[object_key]) ==
        std::set<std::string>{"id", "kind", "name", "size_bytes", "block_size", "labels",
                              "attributes", "created_unix", "tree", "generation", "origin"});
  auto object = nlohmann::json::parse(raw[object_key]);
  CHECK(object["kind"] == 1);
  CHECK(object["labels"]["app"] == "db");
  CHECK(raw[object_key].find('\n') == std::string::npos);  // compact

  CHECK(json_fields(raw["P"]) ==
        std::set<std::string>{"uuid", "chunk_size", "devices", "created_unix"});
  auto pool = nlohmann::json::parse(raw["P"]);
  CHECK(pool["devices"][1]["path"] == "/dev/nvme0n1");
  CHECK(pool["devices"][1]["chunk_count"] == (1ull << 40));
  CHECK(!pool["devices"][1].contains("thick"));  // written only when true
}

TEST_CASE("a device's thick flag is written only when true, and read as false when missing") {
  TempDir tmp;
  PoolRecord pool = sample_pool();
  pool.devices[0].thick = true;
  { auto store = MetaStore::create(tmp.store(), pool).value(); }
  auto raw = testing::raw_contents(tmp.store());
  auto devices = nlohmann::json::parse(raw["P"])["devices"];
  CHECK(devices[0]["thick"] == true);
  CHECK(!devices[1].contains("thick"));
  CHECK(must_open(tmp.store())->pool() == pool);
  // A record from before the field: no device is thick.
  raw_put(
      tmp.store(), "P",
      R"({"uuid":"u","chunk_size":65536,"created_unix":0,"devices":[{"path":"/p","chunk_count":3}]})");
  CHECK(!must_open(tmp.store())->pool().devices[0].thick);
}

TEST_CASE("a newer format version is kUnsupported and changes no file") {
  TempDir tmp;
  make_store(tmp.store());
  raw_put(tmp.store(), "F", kMagic + le(99, 4));
  auto before = snapshot_files(tmp.store());
  auto r = MetaStore::open(tmp.store());
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kUnsupported);
  CHECK(r.error().message().find(
            "metadata format version 99 is newer than this pxd supports (3)") != std::string::npos);
  CHECK(snapshot_files(tmp.store()) == before);
}

TEST_CASE("a version 1 store opens, keeps its records, and is marked version 3") {
  TempDir tmp;
  {
    auto store = MetaStore::create(tmp.store(), sample_pool()).value();
    MetaBatch batch;
    batch.put_object(sample_volume(17));
    batch.put_extent({17, 5, 1}, {9, kLiveGeneration});
    batch.put_dirty(4);
    REQUIRE(store->write(batch, true).is_ok());
  }
  raw_put(tmp.store(), "F", kMagic + le(1, 4));  // what a version 1 pxd wrote
  auto before = testing::raw_contents(tmp.store());
  { auto store = must_open(tmp.store()); }
  auto after = testing::raw_contents(tmp.store());
  CHECK(after["F"] == kMagic + le(3, 4));
  after["F"] = before["F"];
  CHECK(after == before);
}

TEST_CASE("a missing or garbled format record is kCorruption and changes no file") {
  TempDir tmp;
  make_store(tmp.store());
  struct Case {
    const char* what;
    std::optional<std::string> value;  // nullopt: delete the record
    const char* message;
  };
  const Case cases[] = {
      {"missing", std::nullopt, "format record missing"},
      {"short", "garbage", "format record: value is 7 bytes, expected 14"},
      {"wrong magic", "pxd-metadX" + le(1, 4), "format record: magic"},
      {"version 0", kMagic + le(0, 4), "format record: version 0"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    if (c.value) {
      raw_put(tmp.store(), "F", *c.value);
    } else {
      raw_delete(tmp.store(), "F");
    }
    auto before = snapshot_files(tmp.store());
    auto r = MetaStore::open(tmp.store());
    REQUIRE(r.has_error());
    CHECK(r.error().code() == StatusCode::kCorruption);
    CHECK_MESSAGE(r.error().message().find(c.message) != std::string::npos, r.error().message());
    CHECK(snapshot_files(tmp.store()) == before);
  }
  raw_put(tmp.store(), "F", kMagic + le(1, 4));
  must_open(tmp.store());
}

TEST_CASE("a garbled pool or next-id record fails open with kCorruption naming it") {
  TempDir tmp;
  make_store(tmp.store());
  const std::pair<std::string, std::string> cases[] = {
      {"{}", "pool record: field 'uuid' missing"},
      {"[1,2]", "pool record: value is not a JSON object"},
      {R"({"uuid":"u","chunk_size":1,"created_unix":0,"devices":{}})",
       "pool record: field 'devices' is not an array"},
      {R"({"uuid":"u","chunk_size":1,"created_unix":0,"devices":[{"path":"/p"}]})",
       "pool record: device 0: field 'chunk_count' missing"},
      {R"({"uuid":"u","chunk_size":1,"created_unix":0,"devices":[{"path":"/p","chunk_count":1,"thick":1}]})",
       "pool record: device 0: field 'thick' is not true or false"},
      {R"({"uuid":"u","chunk_size":4294967296,"created_unix":0,"devices":[]})",
       "pool record: field 'chunk_size' is not a 32-bit integer"},
  };
  for (const auto& [value, message] : cases) {
    CAPTURE(value);
    raw_put(tmp.store(), "P", value);
    auto r = MetaStore::open(tmp.store());
    REQUIRE(r.has_error());
    CHECK(r.error().code() == StatusCode::kCorruption);
    CHECK_MESSAGE(r.error().message().find(message) != std::string::npos, r.error().message());
  }
  raw_put(tmp.store(), "P", R"({"uuid":"u","chunk_size":1,"created_unix":-1,"devices":[]})");
  raw_put(tmp.store(), "I", "1234567");
  auto r = MetaStore::open(tmp.store());
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kCorruption);
  CHECK(r.error().message().find("next-id record: value is 7 bytes, expected 8") !=
        std::string::npos);
}

TEST_CASE("the extent journal's state round-trips; a garbled one is kCorruption naming it") {
  TempDir tmp;
  make_store(tmp.store());
  CHECK_FALSE(must_open(tmp.store())->journal_state().value().has_value());
  JournalState state;
  state.key[0] = 7;
  state.key[15] = 0xff;
  state.applied = UINT64_MAX - 1;
  {
    auto store = must_open(tmp.store());
    MetaBatch batch;
    batch.put_journal_state(state);
    REQUIRE(store->write(batch, true).is_ok());
  }
  CHECK(must_open(tmp.store())->journal_state().value() == state);
  raw_put(tmp.store(), "J", std::string(23, 'x'));
  auto r = must_open(tmp.store())->journal_state();
  REQUIRE(r.has_error());
  CHECK(r.error().code() == StatusCode::kCorruption);
  CHECK_MESSAGE(r.error().message().find("extent journal state: value is 23 bytes, expected 24") !=
                    std::string::npos,
                r.error().message());
}

TEST_CASE("a garbled object record ends the scan with kCorruption naming the object") {
  TempDir tmp;
  make_store(tmp.store());
  const std::string good =
      R"({"id":17,"kind":2,"name":"s","size_bytes":1,"block_size":512,"labels":{},)"
      R"("attributes":{},"created_unix":0,"tree":1,"generation":3,"origin":0)";
  const std::pair<std::string, std::string> cases[] = {
      {"{not json", "object 17: value is not valid JSON"},
      {"\"a string\"", "object 17: value is not a JSON object"},
      {R"({"id":17,"kind":1})", "object 17: field 'name' missing"},
      {good + R"(,"size_bytes":"big"})", "object 17: field 'size_bytes' is not an unsigned"},
      {good + R"(,"size_bytes":-1})", "object 17: field 'size_bytes' is not an unsigned"},
      {good + R"(,"size_bytes":1.5})", "object 17: field 'size_bytes' is not an unsigned"},
      {good + R"(,"kind":3})", "object 17: field 'kind' is 3, not a known object kind"},
      {good + R"(,"kind":0})", "object 17: field 'kind' is 0"},
      {good + R"(,"id":18})", "object 17: field 'id' is 18"},
      {good + R"(,"labels":{"a":1}})", "object 17: field 'labels' is not an object of strings"},
      {good + R"(,"labels":[]})", "object 17: field 'labels' is not an object"},
      {good + R"(,"created_unix":9223372036854775808})", "object 17: field 'created_unix'"},
      {good + R"(,"generation":4294967296})", "object 17: field 'generation'"},
  };
  for (const auto& [value, message] : cases) {
    CAPTURE(value);
    raw_put(tmp.store(), "O" + be(17, 8), value);
    auto store = must_open(tmp.store());  // objects are checked by the scan, not by open
    int visited = 0;
    Status s = store->for_each_object([&](ObjectRecord&&) {
      ++visited;
      return Status::ok();
    });
    CHECK(s.code() == StatusCode::kCorruption);
    CHECK_MESSAGE(s.message().rfind(message, 0) == 0, s.message());
    CHECK(visited == 0);
  }

  // Fields this build does not know are ignored: a newer writer may add some.
  raw_put(tmp.store(), "O" + be(17, 8), good + R"(,"replicas":3,"created_unix":-7})");
  auto objects = testing::all_objects(*must_open(tmp.store()));
  REQUIRE(objects.size() == 1);
  CHECK(objects[0].kind == ObjectKind::kSnapshot);
  CHECK(objects[0].created_unix == -7);
  CHECK(objects[0].generation == 3);
}

TEST_CASE("a malformed extent or dirty record ends the scan with kCorruption naming it") {
  TempDir tmp;
  make_store(tmp.store());
  const std::string extent_key = "E" + be(3, 8) + be(5, 8) + be(2, 4);
  raw_put(tmp.store(), extent_key, le(9, 7));
  {
    auto store = must_open(tmp.store());
    Status s =
        store->for_each_extent([](const ExtentKey&, const ExtentValue&) { return Status::ok(); });
    CHECK(s.code() == StatusCode::kCorruption);
    CHECK(s.message() == "extent (tree 3, chunk 5, birth 2): value is 7 bytes, expected 12");
  }
  raw_put(tmp.store(), extent_key, le(9, 8) + le(0, 4));
  raw_put(tmp.store(), "E" + be(3, 8), le(9, 8) + le(0, 4));
  {
    auto store = must_open(tmp.store());
    int visited = 0;
    Status s = store->for_each_extent([&](const ExtentKey&, const ExtentValue&) {
      ++visited;
      return Status::ok();
    });
    CHECK(s.code() == StatusCode::kCorruption);
    CHECK(s.message() == "extent key '450000000000000003' (hex): expected 21 bytes");
    CHECK(visited == 0);  // the short key sorts first
  }
  raw_delete(tmp.store(), "E" + be(3, 8));
  raw_put(tmp.store(), "D" + be(9, 8), "x");
  auto store = must_open(tmp.store());
  CHECK(testing::all_extents(*store).size() == 1);
  Status s = store->for_each_dirty([](uint64_t) { return Status::ok(); });
  CHECK(s.code() == StatusCode::kCorruption);
  CHECK(s.message() == "dirty chunk 9: value is 1 bytes, expected 0");
  store.reset();
  raw_delete(tmp.store(), "D" + be(9, 8));

  struct Case {
    std::string value;
    std::string message;
  };
  for (const Case& c : {
           Case{le(1, 8), "reserved run 7: value is 8 bytes, expected 16"},
           Case{le(1, 8) + le(0, 8), "reserved run 7: count is 0"},
           Case{le(UINT64_MAX, 8) + le(2, 8),
                "reserved run 7: chunks 18446744073709551615 + 2 overflow"},
       }) {
    raw_put(tmp.store(), "R" + be(7, 8), c.value);
    auto again = must_open(tmp.store());
    Status r = again->for_each_reserved_run([](const ReservedRun&) { return Status::ok(); });
    CHECK(r.code() == StatusCode::kCorruption);
    CHECK(r.message() == c.message);
  }
  raw_put(tmp.store(), "R" + be(7, 8), le(3, 8) + le(2, 8));
  std::vector<ReservedRun> runs;
  CHECK(must_open(tmp.store())
            ->for_each_reserved_run([&](const ReservedRun& r) {
              runs.push_back(r);
              return Status::ok();
            })
            .is_ok());
  CHECK(runs == std::vector<ReservedRun>{{7, 3, 2}});
}

TEST_CASE("damage RocksDB detects is kCorruption") {
  TempDir tmp;
  make_store(tmp.store());
  namespace fs = std::filesystem;
  std::string manifest;
  for (const auto& entry : fs::directory_iterator(tmp.store())) {
    if (entry.path().filename().string().rfind("MANIFEST-", 0) == 0) manifest = entry.path();
  }
  REQUIRE_FALSE(manifest.empty());
  {
    // Overwrite the records after the first block header with garbage of the same size.
    std::fstream f(manifest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(7);
    auto size = fs::file_size(manifest);
    std::string junk(size > 7 ? size - 7 : 0, '\xa5');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto before = snapshot_files(tmp.store());
  auto r = MetaStore::open(tmp.store());
  REQUIRE(r.has_error());
  CHECK_MESSAGE(r.error().code() == StatusCode::kCorruption, r.error().to_string());
  CHECK(snapshot_files(tmp.store()) == before);
}

}  // namespace
}  // namespace pxd::metadb
