// engine/pool_device.h: one backing file or block device of a pool.
//
// Layout: the first kDeviceHeaderBytes hold a header (magic, pool uuid, device index, chunk
// size, chunk count; see doc/format.md) so that a device from another pool, or in the
// wrong slot, is refused at open. Chunk i of the device starts at
// kDeviceHeaderBytes + i * chunk_size. The device is opened O_DIRECT; data I/O goes
// through the caller's IoRing, control-path I/O (header, zeroing) is synchronous.
//
// Thread safety: immutable after open; the fd is shared by every ring.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace pxd {

inline constexpr uint64_t kDeviceHeaderBytes = 1 << 20;
// Pool files are preallocated only while their filesystem could still hold all of the
// file's unallocated space and this much more.
inline constexpr uint64_t kPreallocateHeadroom = 1ULL << 30;

struct DeviceHeader {
  std::string pool_uuid;
  uint32_t device_index = 0;
  uint32_t chunk_size = 0;
  uint64_t chunk_count = 0;
  // A thick pool file: written whole at creation, never punched (see create()). Kept in
  // the pool record, not in the header on the device.
  bool thick = false;
};

// Bytes initialized so far and in all, while create() writes a thick file.
using DeviceProgress = std::function<void(uint64_t done, uint64_t total)>;

class PoolDevice {
 public:
  // Prepares `path` as device `header.device_index` of a new pool. A missing path becomes
  // a sparse file of `file_size` bytes; an existing regular file or block device is used
  // whole (file_size 0) and must not already carry a pxd header. header.chunk_count is
  // computed here. Free chunks must read as zeros, so whatever the device held goes:
  // block devices are zeroed (BLKZEROOUT), an existing file's chunks are punched.
  //
  // header.thick (files only) writes zeros over the whole file instead, so the filesystem
  // allocates all of it now: first writes into fresh chunks are then overwrites, which
  // costs the filesystem nothing (a sparse file allocates blocks, or converts unwritten
  // extents, in its journal on every first write). Chunks freed later are zeroed without
  // giving their space back (write-zeroes where the filesystem has it, else zero-range,
  // which keeps them allocated but unwritten). `progress` hears how far the writing is
  // (at least once, at the end).
  static Result<std::unique_ptr<PoolDevice>> create(const std::string& path, uint64_t file_size,
                                                    DeviceHeader header,
                                                    const DeviceProgress& progress = {});
  // Opens a device of an existing pool and checks its header against `expected`.
  static Result<std::unique_ptr<PoolDevice>> open(const std::string& path,
                                                  const DeviceHeader& expected);
  ~PoolDevice();

  const std::string& path() const { return path_; }
  uint32_t index() const { return header_.device_index; }
  int fd() const { return fd_; }
  uint64_t chunk_count() const { return header_.chunk_count; }
  uint32_t chunk_size() const { return header_.chunk_size; }
  bool is_block_device() const { return block_device_; }
  bool thick() const { return header_.thick; }
  // Smallest offset/length/buffer alignment O_DIRECT accepts on this device.
  uint32_t direct_io_alignment() const { return dio_alignment_; }
  uint64_t chunk_offset(uint64_t local_chunk) const {
    return kDeviceHeaderBytes + local_chunk * header_.chunk_size;
  }

  // Makes [local_chunk, local_chunk + count) read as zeros (hole punch, falling back to
  // writing zeros; a thick file keeps its space). Not durable until sync().
  Status zero_chunks(uint64_t local_chunk, uint64_t count);
  // Has the filesystem allocate (unwritten, reading as zeros) the space of
  // [local_chunk, local_chunk + count) of a pool file, so that first writes there do not
  // allocate blocks on the I/O path. Content does not change. A no-op on block devices,
  // on filesystems without fallocate, and when the file is overcommitted: when its
  // filesystem could not hold the rest of the file plus kPreallocateHeadroom (a sparse
  // file then keeps allocating only what is written). Fails only on an I/O error or an
  // unexpected fallocate error. A no-op on thick files, which are allocated whole.
  Status preallocate_chunks(uint64_t local_chunk, uint64_t count);
  // Gives back to the filesystem the space of pool-file chunks that were preallocated but
  // never written (they read as zeros before and after). Punches holes only: a no-op on
  // block devices, thick files and where holes cannot be punched. Not durable until
  // sync().
  Status release_chunks(uint64_t local_chunk, uint64_t count);
  Status sync();

 private:
  PoolDevice() = default;
  static Result<std::unique_ptr<PoolDevice>> open_fd(const std::string& path, bool create,
                                                     uint64_t file_size);
  Status write_zeros(uint64_t offset, uint64_t length, const DeviceProgress& progress = {});
  // Makes [offset, offset + length) read as zeros by the first of `modes` (fallocate) that
  // the device supports, else by writing zeros.
  Status zero_range(uint64_t offset, uint64_t length, std::initializer_list<int> modes);

  std::string path_;
  int fd_ = -1;
  bool block_device_ = false;
  bool preallocate_unsupported_ = false;  // only the metadata thread preallocates
  bool punch_unsupported_ = false;        // likewise, only it releases
  uint32_t dio_alignment_ = 512;
  DeviceHeader header_;
};

}  // namespace pxd
