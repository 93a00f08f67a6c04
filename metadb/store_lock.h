// metadb/store_lock.h: pxd's exclusive hold on a metadata store directory (private).
//
// RocksDB locks DIR/LOCK with a POSIX record lock, but only inside DB::Open, after it has
// already rotated its info log; and MetaStore::open() reads the store read-only before that
// to check the format without writing anything. An flock(2) on the same file, taken first
// and held for the store's lifetime, makes both steps exclusive. flock and POSIX locks are
// independent on Linux, and flock conflicts between open files even within one process, so
// a second MetaStore on the same directory in this process is refused too.
//
// Closing any descriptor of DIR/LOCK drops every POSIX lock this process holds on it,
// RocksDB's included. REQUIRES: a StoreLock outlives the rocksdb::DB it guards.
//
// Thread safety: a value owned by one thread at a time.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/status.h"

namespace pxd::metadb {

class StoreLock {
 public:
  StoreLock() = default;
  StoreLock(StoreLock&& other) noexcept;
  StoreLock& operator=(StoreLock&& other) noexcept;
  ~StoreLock();

  // Takes the lock on DIR/LOCK, creating the file if `create`. Without `create`, a missing
  // file gives an unheld lock (held() is false) rather than writing to the directory.
  // kBusy if another open file (this process or another) holds it.
  static Result<StoreLock> acquire(const std::string& dir, bool create);

  bool held() const { return fd_ >= 0; }
  // The pid of another process holding a POSIX lock on the file (RocksDB's lock, taken by
  // a tool such as ldb rather than by pxd), if any. REQUIRES: held().
  std::optional<pid_t> posix_lock_holder() const;

 private:
  explicit StoreLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace pxd::metadb
