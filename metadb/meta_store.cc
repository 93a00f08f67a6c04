#include "metadb/meta_store.h"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <utility>

#include "common/log.h"
#include "metadb/info_log.h"
#include "metadb/records.h"
#include "metadb/store_lock.h"
#include "metadb/sync_gate.h"

namespace pxd::metadb {
namespace {

Status from_rocksdb(const rocksdb::Status& s, std::string_view what) {
  std::string m(what);
  m += ": ";
  m += s.ToString();
  if (s.IsCorruption()) return corruption(std::move(m));
  if (s.IsNotSupported()) return unsupported(std::move(m));
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return busy(std::move(m));
  return io_error(std::move(m));
}

// Old info logs (LOG.old.*) kept beside the current one.
constexpr size_t kOldInfoLogs = 3;

// The read-only pre-check in open() must not write RocksDB's LOG file (the default logger
// rotates it on every open), so its messages go nowhere; failures still come back as the
// returned Status.
class DiscardLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char* /*format*/, va_list /*ap*/) override {}
};

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

rocksdb::Options make_options(const MetaStoreOptions& o) {
  rocksdb::Options opt;
  opt.create_if_missing = false;
  // Fail the open (or the write) on any checksum or consistency error instead of skipping
  // the damage: a silently dropped extent would expose another volume's data.
  opt.paranoid_checks = true;
  opt.write_buffer_size = o.write_buffer_bytes;
  // Every write() reaches the WAL file before returning, so sync=false writes survive a
  // process crash (the contract in meta_store.h).
  opt.manual_wal_flush = false;
  opt.max_open_files = 256;
  // A recycled WAL can hold a stale tail that point-in-time recovery must tell apart from
  // a torn write; fresh files avoid the question.
  opt.recycle_log_file_num = 0;
  opt.avoid_flush_during_shutdown = false;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(o.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  opt.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  // JSON records compress well; LZ4 is cheap enough to leave on. Fall back if this
  // librocksdb was built without it (the choice is per SST file, so reading is unaffected).
  auto supported = rocksdb::GetSupportedCompressions();
  bool lz4 =
      std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end();
  opt.compression = lz4 ? rocksdb::kLZ4Compression : rocksdb::kNoCompression;
  return opt;
}

Status locked_by(const std::string& dir, pid_t pid) {
  return busy("metadata store at " + dir + " is locked by process " + std::to_string(pid));
}

struct StoreState {
  PoolRecord pool;
  uint64_t next_id = 0;
  uint32_t version = kFormatVersion;
};

Result<std::string> get_required(rocksdb::DB* db, const std::string& key, std::string_view what) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), key, &value);
  if (s.IsNotFound()) return corruption(std::string(what) + " missing");
  if (!s.ok()) return from_rocksdb(s, what);
  return value;
}

// Reads the records every open store must have, checking the format version first so that
// a newer store is reported as such rather than as a garbled pool record.
Result<StoreState> load_state(rocksdb::DB* db) {
  PXD_TRY(std::string format, get_required(db, records::format_key(), "format record"));
  PXD_TRY(uint32_t version, records::decode_format(format));
  if (version > kFormatVersion) {
    return unsupported("metadata format version " + std::to_string(version) +
                       " is newer than this pxd supports (" + std::to_string(kFormatVersion) + ")");
  }
  StoreState state;
  state.version = version;
  PXD_TRY(std::string pool, get_required(db, records::pool_key(), "pool record"));
  PXD_TRY(state.pool, records::decode_pool(pool));
  PXD_TRY(std::string next_id, get_required(db, records::next_id_key(), "next-id record"));
  PXD_TRY(state.next_id, records::decode_next_id(next_id));
  return state;
}

// Replays the operations of one WriteBatch into another (RocksDB's own Append is internal).
class BatchCopier : public rocksdb::WriteBatch::Handler {
 public:
  explicit BatchCopier(rocksdb::WriteBatch* to) : to_(to) {}
  rocksdb::Status PutCF(uint32_t /*cf*/, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    return to_->Put(key, value);
  }
  rocksdb::Status DeleteCF(uint32_t /*cf*/, const rocksdb::Slice& key) override {
    return to_->Delete(key);
  }

 private:
  rocksdb::WriteBatch* to_;
};

}  // namespace

// The batch itself, plus the last pool and next id it puts, which write() copies into the
// store's cache once RocksDB has accepted the batch.
struct MetaBatch::Rep {
  rocksdb::WriteBatch batch;
  std::optional<PoolRecord> pool;
  std::optional<uint64_t> next_id;
};

MetaBatch::MetaBatch() : rep_(std::make_unique<Rep>()) {}
MetaBatch::~MetaBatch() = default;

// A moved-from batch is left empty but usable, so no method has to expect a missing Rep.
// (Allocation failure here terminates, as any allocation failure does in pxd.)
MetaBatch::MetaBatch(MetaBatch&& other) noexcept : rep_(std::make_unique<Rep>()) {
  std::swap(rep_, other.rep_);
}

MetaBatch& MetaBatch::operator=(MetaBatch&& other) noexcept {
  if (this != &other) {
    std::swap(rep_, other.rep_);
    other.clear();
  }
  return *this;
}

// Put and Delete on an in-memory WriteBatch fail only past WriteBatch::max_bytes, which
// MetaBatch never sets; their Status is ignored for that reason.

void MetaBatch::put_pool(const PoolRecord& pool) {
  (void)rep_->batch.Put(records::pool_key(), records::encode_pool(pool));
  rep_->pool = pool;
}

void MetaBatch::put_next_id(uint64_t next_id) {
  (void)rep_->batch.Put(records::next_id_key(), records::encode_next_id(next_id));
  rep_->next_id = next_id;
}

void MetaBatch::put_object(const ObjectRecord& object) {
  (void)rep_->batch.Put(records::object_key(object.id), records::encode_object(object));
}

void MetaBatch::delete_object(uint64_t id) {
  (void)rep_->batch.Delete(records::object_key(id));
}

void MetaBatch::put_extent(const ExtentKey& key, const ExtentValue& value) {
  (void)rep_->batch.Put(records::extent_key(key), records::encode_extent_value(value));
}

void MetaBatch::delete_extent(const ExtentKey& key) {
  (void)rep_->batch.Delete(records::extent_key(key));
}

void MetaBatch::put_dirty(uint64_t pool_chunk) {
  (void)rep_->batch.Put(records::dirty_key(pool_chunk), rocksdb::Slice());
}

void MetaBatch::delete_dirty(uint64_t pool_chunk) {
  (void)rep_->batch.Delete(records::dirty_key(pool_chunk));
}

void MetaBatch::put_reserved_run(const ReservedRun& run) {
  (void)rep_->batch.Put(records::reserved_run_key(run.id), records::encode_reserved_run(run));
}

void MetaBatch::delete_reserved_run(uint64_t run_id) {
  (void)rep_->batch.Delete(records::reserved_run_key(run_id));
}

void MetaBatch::put_journal_state(const JournalState& state) {
  (void)rep_->batch.Put(records::journal_state_key(), records::encode_journal_state(state));
}

void MetaBatch::append(MetaBatch&& other) {
  if (this == &other || other.empty()) return;
  if (empty()) {
    std::swap(rep_, other.rep_);
    other.clear();
    return;
  }
  BatchCopier copier(&rep_->batch);
  rocksdb::Status s = other.rep_->batch.Iterate(&copier);
  if (!s.ok()) {
    // A MetaBatch only ever holds puts and deletes in the default column family, which
    // the copier accepts; anything else means memory corruption.
    PXD_LOG(kError) << "MetaBatch::append: cannot replay batch: " << s.ToString();
    std::abort();
  }
  if (other.rep_->pool) rep_->pool = std::move(other.rep_->pool);
  if (other.rep_->next_id) rep_->next_id = other.rep_->next_id;
  other.clear();
}

size_t MetaBatch::count() const {
  return rep_->batch.Count();
}

void MetaBatch::clear() {
  rep_->batch.Clear();
  rep_->pool.reset();
  rep_->next_id.reset();
}

struct MetaStore::Rep {
  // Declared before db so that it is destroyed after it: see store_lock.h.
  StoreLock lock;
  // RocksDB's file system and the gate that orders writes and syncs (sync_gate.h):
  // declared before db, which uses them until it is gone.
  std::shared_ptr<SyncGate> gate;
  std::unique_ptr<rocksdb::Env> env;
  std::unique_ptr<rocksdb::DB> db;

  // Serializes the writes that change the cached pool or next id, so the cache ends in the
  // state of the last such batch RocksDB applied.
  std::mutex cache_mu;
  // Every pool record this store has held, the newest last. Old versions stay alive so
  // that a reference returned by pool() is never invalidated by a concurrent put_pool;
  // pool changes (adding a device) are rare enough for this to cost nothing.
  std::deque<PoolRecord> pool_versions;  // appended under cache_mu
  std::atomic<const PoolRecord*> pool{nullptr};
  std::atomic<uint64_t> next_id{0};
  // The first failed write or sync. RocksDB's WAL writer must not be used after it fails
  // (Debian's build asserts), and nothing written after it could be trusted anyway.
  std::mutex failure_mu;
  Status failure;  // GUARDED_BY(failure_mu)

  Status failed() {
    std::lock_guard<std::mutex> lock(failure_mu);
    return failure;
  }
  Status fail(Status s) {
    std::lock_guard<std::mutex> lock(failure_mu);
    if (failure.is_ok()) failure = s;
    return s;
  }

  Rep(StoreLock l, std::shared_ptr<SyncGate> g, std::unique_ptr<rocksdb::Env> e,
      std::unique_ptr<rocksdb::DB> d, StoreState state)
      : lock(std::move(l)), gate(std::move(g)), env(std::move(e)), db(std::move(d)) {
    pool_versions.push_back(std::move(state.pool));
    pool.store(&pool_versions.back());
    next_id.store(state.next_id);
  }

  ~Rep() {
    // A clean shutdown leaves everything durable, so that a later machine crash does not
    // lose writes acknowledged (with sync=false) before the close.
    rocksdb::Status s;
    if (failed().is_ok()) s = db->FlushWAL(/*sync=*/true);
    if (!s.ok()) {
      PXD_LOG(kWarn) << "metadata store: sync at close failed: " << s.ToString();
    }
    s = db->Close();
    if (!s.ok()) {
      PXD_LOG(kWarn) << "metadata store: close failed: " << s.ToString();
    }
    db.reset();
  }
};

MetaStore::MetaStore(std::string dir, std::unique_ptr<Rep> rep)
    : dir_(std::move(dir)), rep_(std::move(rep)) {}

MetaStore::~MetaStore() = default;

Result<std::unique_ptr<MetaStore>> MetaStore::create(const std::string& dir, const PoolRecord& pool,
                                                     const MetaStoreOptions& options) {
  const std::string current = dir + "/CURRENT";
  if (path_exists(current)) return already_exists("a metadata store already exists at " + dir);
  if (::mkdir(dir.c_str(), 0755) != 0) {
    if (errno != EEXIST) return errno_status(errno, "create directory " + dir);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return invalid_argument(dir + " exists and is not a directory");
    }
  }
  PXD_TRY(StoreLock lock, StoreLock::acquire(dir, /*create=*/true));
  // Checked again under the lock: a concurrent create() may have finished meanwhile.
  if (path_exists(current)) return already_exists("a metadata store already exists at " + dir);

  auto gate = std::make_shared<SyncGate>();
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(gate->file_system());
  rocksdb::Options opt = make_options(options);
  opt.env = env.get();
  opt.info_log = InfoLog::open(dir, kOldInfoLogs);
  opt.create_if_missing = true;
  opt.error_if_exists = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opt, dir, &raw);
  if (!s.ok()) return from_rocksdb(s, "create metadata store at " + dir);
  std::unique_ptr<rocksdb::DB> db(raw);

  // One synced batch: a crash leaves either no records or a complete, openable store.
  rocksdb::WriteBatch batch;
  (void)batch.Put(records::format_key(), records::encode_format(kFormatVersion));
  (void)batch.Put(records::pool_key(), records::encode_pool(pool));
  (void)batch.Put(records::next_id_key(), records::encode_next_id(1));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = db->Write(wo, &batch);
  if (!s.ok()) return from_rocksdb(s, "initialize metadata store at " + dir);

  auto rep = std::make_unique<Rep>(std::move(lock), std::move(gate), std::move(env), std::move(db),
                                   StoreState{pool, 1});
  return std::unique_ptr<MetaStore>(new MetaStore(dir, std::move(rep)));
}

Result<std::unique_ptr<MetaStore>> MetaStore::open(const std::string& dir,
                                                   const MetaStoreOptions& options) {
  // Checked before RocksDB runs: DB::Open would create the directory and its info log
  // even with create_if_missing=false.
  if (!path_exists(dir + "/CURRENT")) return not_found("no metadata store at " + dir);
  PXD_TRY(StoreLock lock, StoreLock::acquire(dir, /*create=*/false));
  // A tool outside pxd (ldb) holds only RocksDB's own lock. Asked now, because DB::Open
  // would rotate the info log before finding the lock taken.
  if (lock.held()) {
    if (auto pid = lock.posix_lock_holder()) return locked_by(dir, *pid);
  }

  // A read-write DB::Open rewrites the MANIFEST, starts a new WAL and may flush the old
  // one, so the format is checked first on a read-only instance, which writes nothing: a
  // store that this build must refuse is left exactly as it was.
  {
    rocksdb::Options opt = make_options(options);
    opt.info_log = std::make_shared<DiscardLogger>();
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(opt, dir, &raw);
    if (!s.ok()) return from_rocksdb(s, "open metadata store at " + dir);
    std::unique_ptr<rocksdb::DB> probe(raw);
    Result<StoreState> state = load_state(probe.get());
    (void)probe->Close();
    if (state.has_error()) return state.error().with_context(dir);
  }

  auto gate = std::make_shared<SyncGate>();
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(gate->file_system());
  rocksdb::Options opt = make_options(options);
  opt.env = env.get();
  opt.info_log = InfoLog::open(dir, kOldInfoLogs);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opt, dir, &raw);
  if (!s.ok()) {
    if (lock.held() && s.IsIOError()) {
      if (auto pid = lock.posix_lock_holder()) return locked_by(dir, *pid);
    }
    return from_rocksdb(s, "open metadata store at " + dir);
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  if (!lock.held()) {
    // The store had no LOCK file, so RocksDB just made one; take pxd's hold on it now.
    PXD_TRY(lock, StoreLock::acquire(dir, /*create=*/false));
  }
  // Read again from the instance that will serve: it is the one whose view is current.
  Result<StoreState> state = load_state(db.get());
  if (state.has_error()) return state.error().with_context(dir);
  if (state.value().version < kFormatVersion) {
    // Versions 1 and 2 differ only by having no reserved runs (1) and no journal state:
    // marking the store current is the whole upgrade. Synced, so that an older pxd refuses the
    // store from now on.
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::WriteBatch upgrade;
    (void)upgrade.Put(records::format_key(), records::encode_format(kFormatVersion));
    s = db->Write(wo, &upgrade);
    if (!s.ok()) return from_rocksdb(s, "upgrade metadata format of " + dir);
    state.value().version = kFormatVersion;
  }

  auto rep = std::make_unique<Rep>(std::move(lock), std::move(gate), std::move(env), std::move(db),
                                   std::move(state).value());
  return std::unique_ptr<MetaStore>(new MetaStore(dir, std::move(rep)));
}

Status MetaStore::write(MetaBatch& batch, bool sync) {
  if (batch.empty()) return sync ? this->sync() : Status::ok();
  MetaBatch::Rep& b = *batch.rep_;
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  wo.disableWAL = false;

  PXD_RETURN_IF_ERROR(rep_->failed());
  std::unique_lock<std::mutex> cache_lock(rep_->cache_mu, std::defer_lock);
  if (b.pool || b.next_id) cache_lock.lock();
  rep_->gate->begin_write();
  rocksdb::Status s = rep_->db->Write(wo, &b.batch);
  if (!s.ok()) {
    Status failed = rep_->fail(from_rocksdb(s, "metadata write"));
    rep_->gate->end_write();  // after the latch: a sync waiting for it must see the failure
    return failed;
  }
  rep_->gate->end_write();
  if (b.pool) {
    rep_->pool_versions.push_back(*b.pool);
    rep_->pool.store(&rep_->pool_versions.back(), std::memory_order_release);
  }
  if (b.next_id) rep_->next_id.store(*b.next_id, std::memory_order_release);
  return Status::ok();
}

Status MetaStore::sync() {
  rep_->gate->begin_sync();
  // Checked once no write is inside RocksDB: none can have failed unseen (sync_gate.h).
  Status status = rep_->failed();
  if (status.is_ok()) {
    rocksdb::Status s = rep_->db->FlushWAL(/*sync=*/true);
    if (!s.ok()) status = rep_->fail(from_rocksdb(s, "metadata sync"));
  }
  rep_->gate->end_sync();
  return status;
}

const PoolRecord& MetaStore::pool() const {
  return *rep_->pool.load(std::memory_order_acquire);
}

uint64_t MetaStore::next_id() const {
  return rep_->next_id.load(std::memory_order_acquire);
}

Result<std::optional<JournalState>> MetaStore::journal_state() const {
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), records::journal_state_key(), &value);
  if (s.IsNotFound()) return std::optional<JournalState>();
  if (!s.ok()) return from_rocksdb(s, "read the extent journal's state");
  PXD_TRY(JournalState state, records::decode_journal_state(value));
  return std::optional<JournalState>(state);
}

namespace {

// Visits every key of one family in key order. A fresh iterator with total_order_seek sees
// the whole family whatever prefix extractor a future version configures; fill_cache=false
// because these one-off scans would otherwise evict the blocks the hot path keeps cached.
Status scan_family(rocksdb::DB* db, char prefix,
                   const std::function<Status(std::string_view, std::string_view)>& visit) {
  rocksdb::ReadOptions ro;
  ro.total_order_seek = true;
  ro.fill_cache = false;
  const char upper_byte = static_cast<char>(prefix + 1);
  rocksdb::Slice upper(&upper_byte, 1);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  for (it->Seek(rocksdb::Slice(&prefix, 1)); it->Valid(); it->Next()) {
    PXD_RETURN_IF_ERROR(visit(it->key().ToStringView(), it->value().ToStringView()));
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "metadata scan");
  return Status::ok();
}

}  // namespace

Status MetaStore::for_each_object(const std::function<Status(ObjectRecord&&)>& visit) const {
  return scan_family(rep_->db.get(), records::kObjectPrefix,
                     [&](std::string_view key, std::string_view value) -> Status {
                       PXD_TRY(ObjectRecord object, records::decode_object(key, value));
                       return visit(std::move(object));
                     });
}

Status MetaStore::for_each_extent(
    const std::function<Status(const ExtentKey&, const ExtentValue&)>& visit) const {
  return scan_family(rep_->db.get(), records::kExtentPrefix,
                     [&](std::string_view key, std::string_view value) -> Status {
                       PXD_TRY(ExtentKey k, records::decode_extent_key(key));
                       PXD_TRY(ExtentValue v, records::decode_extent_value(k, value));
                       return visit(k, v);
                     });
}

Status MetaStore::for_each_dirty(const std::function<Status(uint64_t pool_chunk)>& visit) const {
  return scan_family(rep_->db.get(), records::kDirtyPrefix,
                     [&](std::string_view key, std::string_view value) -> Status {
                       PXD_TRY(uint64_t chunk, records::decode_dirty_key(key));
                       if (!value.empty()) {
                         return corruption("dirty chunk " + std::to_string(chunk) + ": value is " +
                                           std::to_string(value.size()) + " bytes, expected 0");
                       }
                       return visit(chunk);
                     });
}

Status MetaStore::for_each_reserved_run(
    const std::function<Status(const ReservedRun&)>& visit) const {
  return scan_family(rep_->db.get(), records::kReservedRunPrefix,
                     [&](std::string_view key, std::string_view value) -> Status {
                       PXD_TRY(uint64_t id, records::decode_reserved_run_key(key));
                       PXD_TRY(ReservedRun run, records::decode_reserved_run(id, value));
                       return visit(run);
                     });
}

uint64_t MetaStore::buffer_bytes() const {
  uint64_t bytes = 0;
  if (!rep_->db->GetIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &bytes)) return 0;
  return bytes;
}

Status MetaStore::flush_buffer() {
  rocksdb::Status s = rep_->db->Flush(rocksdb::FlushOptions());
  return s.ok() ? Status::ok() : from_rocksdb(s, "metadata buffer flush");
}

uint64_t MetaStore::disk_bytes() const {
  namespace fs = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  // Files come and go under compaction; one that vanishes mid-walk is simply not counted.
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code size_ec;
    if (!it->is_regular_file(size_ec)) continue;
    uint64_t size = it->file_size(size_ec);
    if (!size_ec) total += size;
  }
  return total;
}

}  // namespace pxd::metadb
