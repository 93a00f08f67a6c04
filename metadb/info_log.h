// metadb/info_log.h: RocksDB's human-readable info log (`LOG` in the store directory).
//
// RocksDB's own file logger keeps the error of a failed write and, on the next line it is
// asked to log, fails an assertion that Debian's librocksdb keeps: a metadata disk that
// returns EIO (or a full one) would abort pxd instead of turning its pool read-only. This
// logger writes each line with one write(2) and ignores failures. It keeps RocksDB's file
// names: at open, the previous LOG becomes LOG.old.<microseconds since 1970>, and only the
// newest old logs are kept.
//
// Thread safety: RocksDB calls it from any thread; each line is one write(2) on an
// O_APPEND descriptor.
#pragma once

#include <rocksdb/env.h>

#include <cstdarg>
#include <memory>
#include <string>

namespace pxd::metadb {

class InfoLog final : public rocksdb::Logger {
 public:
  // Rotates `dir`/LOG as described above, keeping `keep_old` old logs, and opens a new one.
  // If the file cannot be created, lines are dropped (RocksDB's errors still reach the
  // caller as statuses).
  static std::shared_ptr<rocksdb::Logger> open(const std::string& dir, size_t keep_old);
  ~InfoLog() override;

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;

 private:
  explicit InfoLog(int fd) : fd_(fd) {}
  const int fd_;
};

}  // namespace pxd::metadb
