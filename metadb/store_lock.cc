#include "metadb/store_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace pxd::metadb {

StoreLock::StoreLock(StoreLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

StoreLock& StoreLock::operator=(StoreLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

StoreLock::~StoreLock() {
  if (fd_ >= 0) ::close(fd_);
}

Result<StoreLock> StoreLock::acquire(const std::string& dir, bool create) {
  const std::string path = dir + "/LOCK";
  // O_RDONLY when not creating: flock needs no write access, and open() must not be able to
  // change anything in a store it then refuses.
  int flags = create ? (O_RDWR | O_CREAT) : O_RDONLY;
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == ENOENT && !create) return StoreLock();
    return errno_status(errno, "open " + path);
  }
  StoreLock lock(fd);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      return busy("metadata store at " + dir + " is already open (in this or another process)");
    }
    return errno_status(errno, "flock " + path);
  }
  return lock;
}

std::optional<pid_t> StoreLock::posix_lock_holder() const {
  struct flock query = {};
  query.l_type = F_WRLCK;
  query.l_whence = SEEK_SET;
  query.l_start = 0;
  query.l_len = 0;
  // F_GETLK only reports locks of other processes and takes none, so it cannot disturb
  // RocksDB's lock the way a second F_SETLK/close pair would.
  if (::fcntl(fd_, F_GETLK, &query) != 0 || query.l_type == F_UNLCK) return std::nullopt;
  return query.l_pid;
}

}  // namespace pxd::metadb
