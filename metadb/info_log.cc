#include "metadb/info_log.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <vector>

namespace pxd::metadb {

std::shared_ptr<rocksdb::Logger> InfoLog::open(const std::string& dir, size_t keep_old) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path log = fs::path(dir) / "LOG";
  if (fs::exists(log, ec)) {
    struct timeval now;
    ::gettimeofday(&now, nullptr);
    const uint64_t micros = static_cast<uint64_t>(now.tv_sec) * 1000000 + now.tv_usec;
    fs::rename(log, fs::path(dir) / ("LOG.old." + std::to_string(micros)), ec);
  }
  // Old logs sort by age: their suffixes have the same number of digits for centuries.
  std::vector<fs::path> old;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind("LOG.old.", 0) == 0) old.push_back(entry.path());
  }
  std::sort(old.begin(), old.end());
  for (size_t i = 0; i + keep_old < old.size(); ++i) fs::remove(old[i], ec);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  return std::shared_ptr<rocksdb::Logger>(new InfoLog(fd));
}

InfoLog::~InfoLog() {
  if (fd_ >= 0) ::close(fd_);
}

void InfoLog::Logv(const char* format, va_list ap) {
  if (fd_ < 0) return;
  char line[1024];
  struct timeval now;
  ::gettimeofday(&now, nullptr);
  struct tm t;
  ::localtime_r(&now.tv_sec, &t);
  int n =
      std::snprintf(line, sizeof(line), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld %lx ",
                    t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                    static_cast<long>(now.tv_usec), static_cast<unsigned long>(::pthread_self()));
  if (n < 0) return;
  size_t len = static_cast<size_t>(n);
  va_list copy;
  va_copy(copy, ap);
  int m = std::vsnprintf(line + len, sizeof(line) - len, format, copy);
  va_end(copy);
  if (m < 0) return;
  len = std::min(len + static_cast<size_t>(m), sizeof(line) - 2);  // long lines are cut
  if (line[len - 1] != '\n') line[len++] = '\n';
  // A failed write loses this line only; the next one tries again.
  ssize_t written = ::write(fd_, line, len);
  (void)written;
}

}  // namespace pxd::metadb
