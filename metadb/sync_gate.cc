#include "metadb/sync_gate.h"

#include <string_view>

namespace pxd::metadb {
namespace {

bool is_wal(std::string_view name) {
  return name.size() > 4 && name.substr(name.size() - 4) == ".log";
}

class GatedWalFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  GatedWalFile(std::unique_ptr<rocksdb::FSWritableFile> file, std::shared_ptr<SyncGate> gate,
               std::string name)
      : FSWritableFileOwnerWrapper(std::move(file)),
        gate_(std::move(gate)),
        name_(std::move(name)) {}

  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    gate_->on_wal_sync(name_);
    return target()->Sync(options, dbg);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    gate_->on_wal_sync(name_);
    return target()->Fsync(options, dbg);
  }

 private:
  std::shared_ptr<SyncGate> gate_;
  std::string name_;
};

class GatedFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  explicit GatedFileSystem(std::shared_ptr<SyncGate> gate)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), gate_(std::move(gate)) {}
  const char* Name() const override { return "PxdSyncGate"; }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, result, dbg);
    if (s.ok() && is_wal(name)) {
      gate_->on_wal_created(name);
      *result = std::make_unique<GatedWalFile>(std::move(*result), gate_, name);
    }
    return s;
  }
  // WAL files are never recycled (MetaStore sets recycle_log_file_num = 0), so
  // ReuseWritableFile needs no wrapping.

 private:
  std::shared_ptr<SyncGate> gate_;
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> SyncGate::file_system() {
  return std::make_shared<GatedFileSystem>(shared_from_this());
}

void SyncGate::begin_write() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !holding_; });
  ++writes_;
}

void SyncGate::end_write() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--writes_ == 0) cv_.notify_all();
}

void SyncGate::begin_sync() {
  sync_mu_.lock();
  std::unique_lock<std::mutex> lock(mu_);
  holding_ = true;
  syncer_ = std::this_thread::get_id();
  cv_.wait(lock, [&] { return writes_ == 0; });
}

void SyncGate::end_sync() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    holding_ = false;
    syncer_ = std::thread::id();
  }
  cv_.notify_all();
  sync_mu_.unlock();
}

void SyncGate::on_wal_created(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  newest_wal_ = name;
}

void SyncGate::on_wal_sync(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Only the gated sync's own call counts (a write with sync=true syncs from its thread).
    if (!holding_ || syncer_ != std::this_thread::get_id() || name != newest_wal_) return;
    holding_ = false;
  }
  cv_.notify_all();
}

}  // namespace pxd::metadb
