#include "engine/pool_device.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/units.h"

namespace pxd {
namespace {

// FALLOC_FL_WRITE_ZEROES (Linux 6.17): allocates the range as written zeros, where the
// filesystem and the device can (EOPNOTSUPP elsewhere).
constexpr int kFallocWriteZeroes = 0x80;

// Header block layout (little-endian), padded to 4096 bytes. Do not change.
constexpr char kMagic[8] = {'P', 'X', 'D', 'P', 'O', 'O', 'L', '1'};
struct RawHeader {
  char magic[8];
  uint32_t version;
  uint32_t device_index;
  char pool_uuid[40];
  uint32_t chunk_size;
  uint32_t reserved;
  uint64_t chunk_count;
};
static_assert(sizeof(RawHeader) <= 4096);

struct AlignedBuffer {
  void* p = nullptr;
  explicit AlignedBuffer(size_t n) {
    if (posix_memalign(&p, 4096, n) == 0) std::memset(p, 0, n);
  }
  ~AlignedBuffer() { free(p); }
};

Status pwrite_all(int fd, const void* buf, size_t len, uint64_t off, const std::string& path) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_status(n < 0 ? errno : EIO, "write " + path);
    p += n;
    len -= static_cast<size_t>(n);
    off += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<PoolDevice>> PoolDevice::open_fd(const std::string& path, bool create,
                                                        uint64_t file_size) {
  std::unique_ptr<PoolDevice> dev(new PoolDevice());
  dev->path_ = path;
  int flags = O_RDWR | O_DIRECT | O_CLOEXEC;
  struct stat st;
  bool exists = ::stat(path.c_str(), &st) == 0;
  if (!exists && !create) return not_found("pool device " + path + " does not exist");
  if (!exists) flags |= O_CREAT | O_EXCL;
  if (exists && S_ISBLK(st.st_mode)) flags |= O_EXCL;  // refuse a device mounted elsewhere
  dev->fd_ = ::open(path.c_str(), flags, 0600);
  if (dev->fd_ < 0) return errno_status(errno, "open pool device " + path);
  if (::fstat(dev->fd_, &st) != 0) return errno_status(errno, "stat " + path);
  dev->block_device_ = S_ISBLK(st.st_mode);
  if (!dev->block_device_ && !S_ISREG(st.st_mode))
    return invalid_argument("pool device " + path + " is neither a file nor a block device");
  if (dev->block_device_) {
    int sector = 512;
    if (::ioctl(dev->fd_, BLKSSZGET, &sector) == 0 && sector > 0)
      dev->dio_alignment_ = static_cast<uint32_t>(sector);
  } else {
    if (!exists) {
      if (::ftruncate(dev->fd_, static_cast<off_t>(file_size)) != 0)
        return errno_status(errno, "size pool file " + path);
    }
    struct statx stx;
    if (::statx(dev->fd_, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align > 0) {
      dev->dio_alignment_ = std::max(stx.stx_dio_offset_align, stx.stx_dio_mem_align);
    }
  }
  return dev;
}

Result<std::unique_ptr<PoolDevice>> PoolDevice::create(const std::string& path, uint64_t file_size,
                                                       DeviceHeader header,
                                                       const DeviceProgress& progress) {
  if (!is_power_of_two(header.chunk_size) || header.chunk_size < 64 * kKiB)
    return invalid_argument("chunk size must be a power of two of at least 64 KiB");
  struct stat st;
  bool existed = ::stat(path.c_str(), &st) == 0;
  if (!existed && file_size == 0)
    return invalid_argument("pool file " + path + " does not exist and no size was given");
  PXD_TRY(auto dev, open_fd(path, true, file_size));
  if (header.thick && dev->block_device_)
    return invalid_argument("pool device " + path +
                            " is a block device: only a pool file can be made thick");
  uint64_t bytes = 0;
  if (dev->block_device_) {
    if (::ioctl(dev->fd_, BLKGETSIZE64, &bytes) != 0) return errno_status(errno, "size of " + path);
  } else {
    if (::fstat(dev->fd_, &st) != 0) return errno_status(errno, "stat " + path);
    bytes = static_cast<uint64_t>(st.st_size);
  }
  if (bytes < kDeviceHeaderBytes + header.chunk_size)
    return invalid_argument("pool device " + path + " is too small (" + format_size(bytes) +
                            "): it must hold at least one chunk after the 1 MiB header");
  if (existed) {
    AlignedBuffer buf(4096);
    ssize_t n = ::pread(dev->fd_, buf.p, 4096, 0);
    if (n == 4096 && std::memcmp(buf.p, kMagic, sizeof(kMagic)) == 0)
      return already_exists("pool device " + path + " already belongs to a pxd pool");
  }
  header.chunk_count = (bytes - kDeviceHeaderBytes) / header.chunk_size;
  dev->header_ = header;
  const uint64_t data_bytes = header.chunk_count * header.chunk_size;
  if (dev->block_device_) {
    uint64_t range[2] = {0, bytes};
    if (::ioctl(dev->fd_, BLKZEROOUT, range) != 0)
      return errno_status(errno, "zero block device " + path);
  } else if (header.thick) {
    // Reserve all of it first (ENOSPC now, not halfway), then have every block written.
    if (::fallocate(dev->fd_, 0, kDeviceHeaderBytes, static_cast<off_t>(data_bytes)) != 0 &&
        errno != EOPNOTSUPP)
      return errno_status(errno, "allocate pool file " + path);
    if (::fallocate(dev->fd_, kFallocWriteZeroes, kDeviceHeaderBytes,
                    static_cast<off_t>(data_bytes)) == 0) {
      if (progress) progress(data_bytes, data_bytes);
    } else {
      if (errno != EOPNOTSUPP && errno != EINVAL && errno != ENODEV)
        return errno_status(errno, "write zeros over pool file " + path);
      PXD_RETURN_IF_ERROR(dev->write_zeros(kDeviceHeaderBytes, data_bytes, progress));
    }
  } else if (existed) {
    // Whatever an existing file held must not show through chunks never written.
    PXD_RETURN_IF_ERROR(dev->zero_range(
        kDeviceHeaderBytes, data_bytes,
        {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE}));
  }
  AlignedBuffer buf(4096);
  auto* raw = static_cast<RawHeader*>(buf.p);
  std::memcpy(raw->magic, kMagic, sizeof(kMagic));
  raw->version = 1;
  raw->device_index = header.device_index;
  std::snprintf(raw->pool_uuid, sizeof(raw->pool_uuid), "%s", header.pool_uuid.c_str());
  raw->chunk_size = header.chunk_size;
  raw->chunk_count = header.chunk_count;
  PXD_RETURN_IF_ERROR(pwrite_all(dev->fd_, buf.p, 4096, 0, path));
  PXD_RETURN_IF_ERROR(dev->sync());
  return dev;
}

Result<std::unique_ptr<PoolDevice>> PoolDevice::open(const std::string& path,
                                                     const DeviceHeader& expected) {
  PXD_TRY(auto dev, open_fd(path, false, 0));
  AlignedBuffer buf(4096);
  ssize_t n = ::pread(dev->fd_, buf.p, 4096, 0);
  if (n != 4096) return corruption("pool device " + path + ": cannot read its header");
  const auto* raw = static_cast<const RawHeader*>(buf.p);
  if (std::memcmp(raw->magic, kMagic, sizeof(kMagic)) != 0)
    return corruption("pool device " + path + " has no pxd pool header");
  std::string uuid(raw->pool_uuid, strnlen(raw->pool_uuid, sizeof(raw->pool_uuid)));
  if (uuid != expected.pool_uuid)
    return corruption("pool device " + path + " belongs to pool " + uuid + ", not " +
                      expected.pool_uuid);
  if (raw->device_index != expected.device_index || raw->chunk_size != expected.chunk_size ||
      raw->chunk_count != expected.chunk_count)
    return corruption("pool device " + path +
                      ": header (index, chunk size, chunk count) does not match the metadata");
  dev->header_ = expected;
  return dev;
}

PoolDevice::~PoolDevice() {
  if (fd_ >= 0) ::close(fd_);
}

Status PoolDevice::write_zeros(uint64_t offset, uint64_t length, const DeviceProgress& progress) {
  constexpr size_t kBuf = 8 << 20;
  constexpr uint64_t kReportEvery = 1ULL << 30;
  AlignedBuffer buf(kBuf);
  const uint64_t total = length;
  uint64_t since_report = 0;
  while (length > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(length, kBuf));
    PXD_RETURN_IF_ERROR(pwrite_all(fd_, buf.p, n, offset, path_));
    offset += n;
    length -= n;
    since_report += n;
    if (progress && (since_report >= kReportEvery || length == 0)) {
      progress(total - length, total);
      since_report = 0;
    }
  }
  return Status::ok();
}

Status PoolDevice::zero_range(uint64_t offset, uint64_t length, std::initializer_list<int> modes) {
  for (int mode : modes) {
    if (::fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) == 0)
      return Status::ok();
    if (errno != EOPNOTSUPP && errno != EINVAL && errno != ENODEV)
      return errno_status(errno, "zero chunks of " + path_);
  }
  return write_zeros(offset, length);
}

Status PoolDevice::zero_chunks(uint64_t local_chunk, uint64_t count) {
  const uint64_t off = chunk_offset(local_chunk);
  const uint64_t len = count * header_.chunk_size;
  // A thick file keeps its blocks: write-zeroes keeps them written; zero-range (ext4, xfs)
  // keeps them allocated but unwritten, so the next first write there converts them.
  if (header_.thick)
    return zero_range(off, len, {kFallocWriteZeroes, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE});
  // Block devices honour PUNCH_HOLE only where the hardware guarantees zeroes after it;
  // ZERO_RANGE then writes zeroes efficiently; plain writes are the last resort.
  return zero_range(
      off, len,
      {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE});
}

Status PoolDevice::preallocate_chunks(uint64_t local_chunk, uint64_t count) {
  if (block_device_ || header_.thick || preallocate_unsupported_ || count == 0) return Status::ok();
  // Only while the filesystem can still hold the whole file: preallocation then takes
  // nothing the pool's capacity does not already claim. An overcommitted sparse file keeps
  // allocating only what is written (a 4 KiB write into a preallocated chunk would keep
  // the whole chunk).
  struct stat st;
  struct statfs fs;
  if (::fstat(fd_, &st) != 0) return errno_status(errno, "stat " + path_);
  if (::fstatfs(fd_, &fs) != 0) return errno_status(errno, "statfs " + path_);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t backed = static_cast<uint64_t>(st.st_blocks) * 512;
  const uint64_t unbacked = size > backed ? size - backed : 0;
  const uint64_t available = static_cast<uint64_t>(fs.f_bavail) * static_cast<uint64_t>(fs.f_bsize);
  if (available < unbacked + kPreallocateHeadroom) return Status::ok();
  if (::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(chunk_offset(local_chunk)),
                  static_cast<off_t>(count * header_.chunk_size)) == 0)
    return Status::ok();
  if (errno == EOPNOTSUPP) {
    preallocate_unsupported_ = true;
    return Status::ok();
  }
  return errno_status(errno, "preallocate chunks of " + path_);
}

Status PoolDevice::release_chunks(uint64_t local_chunk, uint64_t count) {
  if (block_device_ || header_.thick || punch_unsupported_ || count == 0) return Status::ok();
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(chunk_offset(local_chunk)),
                  static_cast<off_t>(count * header_.chunk_size)) == 0)
    return Status::ok();
  if (errno == EOPNOTSUPP) {
    punch_unsupported_ = true;
    return Status::ok();
  }
  return errno_status(errno, "release chunks of " + path_);
}

Status PoolDevice::sync() {
  if (::fsync(fd_) != 0) return errno_status(errno, "fsync " + path_);
  return Status::ok();
}

}  // namespace pxd
