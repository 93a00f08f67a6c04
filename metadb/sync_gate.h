// metadb/sync_gate.h: lets a WAL sync run beside writes without tripping RocksDB.
//
// MetaStore::sync() (RocksDB's SyncWAL) may run on one thread while write() runs on
// another: RocksDB supports that, and it is what lets the metadata thread keep writing
// while a sync waits for the disk. One case is not safe with Debian's librocksdb, which
// keeps assertions: if a WAL *write* fails, the log file's writer remembers the error, and
// a sync that then reaches that file asserts (a failed *sync* followed by writes only
// returns errors). MetaStore latches the first failure and touches RocksDB no more, but a
// write can fail inside RocksDB just before a concurrent sync looks at the file.
//
// So a sync starts only when no write is inside RocksDB, and holds new writes back until
// it has passed that check on the newest WAL file, which is the only one writes append to:
// the wrapped file system sees the sync reach that file's Sync(). Older WAL files (only
// present right after a memtable switch) are synced first, so writes wait for them; the
// newest one's own sync, the long part, runs beside the writes.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <rocksdb/file_system.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace pxd::metadb {

class SyncGate : public std::enable_shared_from_this<SyncGate> {
 public:
  // The default file system, with the WAL files (`*.log`) it creates reporting their syncs
  // here. Give it to RocksDB (rocksdb::NewCompositeEnv) for the instance that writes.
  std::shared_ptr<rocksdb::FileSystem> file_system();

  // Around every DB::Write: waits while a sync is starting.
  void begin_write();
  void end_write();
  // Around every SyncWAL: one at a time; waits for the writes inside RocksDB to finish,
  // and holds new ones until the sync reaches the newest WAL file or end_sync().
  void begin_sync();
  void end_sync();

  // Called by the wrapped WAL files as RocksDB creates them and, past its error check, as
  // it syncs them.
  void on_wal_created(const std::string& name);
  void on_wal_sync(const std::string& name);

 private:
  std::mutex sync_mu_;  // held from begin_sync() to end_sync()
  std::mutex mu_;
  std::condition_variable cv_;
  int writes_ = 0;          // GUARDED_BY(mu_): inside RocksDB
  bool holding_ = false;    // GUARDED_BY(mu_): new writes wait
  std::thread::id syncer_;  // GUARDED_BY(mu_): the thread in begin_sync()..end_sync()
  std::string newest_wal_;  // GUARDED_BY(mu_)
};

}  // namespace pxd::metadb
