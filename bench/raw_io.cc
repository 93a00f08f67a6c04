#include "bench/raw_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench/bench.h"

namespace pxd::bench {

std::unique_ptr<RawFile> RawFile::create(const std::string& path, uint64_t bytes,
                                         RawLayout layout) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) throw BenchError("open " + path + " with O_DIRECT: " + std::strerror(errno));
  std::unique_ptr<RawFile> file(new RawFile(fd, bytes));
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0)
    throw BenchError("size " + path + ": " + std::strerror(errno));
  if (layout == RawLayout::kWritten) {
    int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    if (rc != 0) throw BenchError("preallocate " + path + ": " + std::strerror(rc));
    fill_sequential(*file, bytes, "fill " + path);
  }
  if (::fsync(fd) != 0) throw BenchError("fsync " + path + ": " + std::strerror(errno));
  return file;
}

RawFile::~RawFile() {
  ::close(fd_);
}

void RawFile::start(IoRing& ring, LoadSlot& slot) {
  const IoRequest& req = slot.req;
  auto len = static_cast<uint32_t>(req.length);
  if (req.op == IoOp::kRead) {
    ring.read(fd_, req.buffer, len, req.offset, &slot);
  } else {
    ring.write(fd_, req.buffer, len, req.offset, (req.flags & kIoFua) ? RWF_DSYNC : 0, &slot);
  }
}

std::vector<double> durable_append_ms(const std::string& dir, int count, size_t bytes) {
  std::string path = dir + "/durable-append.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw BenchError("open " + path + ": " + std::strerror(errno));
  std::string record(bytes, 'r');
  std::vector<double> ms;
  for (int i = 0; i < count && !interrupted(); ++i) {
    double t0 = now_seconds();
    if (::write(fd, record.data(), record.size()) != static_cast<ssize_t>(record.size()) ||
        ::fdatasync(fd) != 0) {
      int err = errno;
      ::close(fd);
      throw BenchError("append to " + path + ": " + std::strerror(err));
    }
    ms.push_back((now_seconds() - t0) * 1e3);
  }
  ::close(fd);
  ::unlink(path.c_str());
  throw_if_interrupted();
  return ms;
}

}  // namespace pxd::bench
