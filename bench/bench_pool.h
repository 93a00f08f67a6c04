// bench/bench_pool.h: a pxd pool in a scratch directory, for the benchmarks.
//
// Metadata in DIR/meta, one sparse pool file DATA_DIR/pool0.img (DATA_DIR defaults to DIR)
// holding `capacity` bytes of chunks plus the device header. Volumes opened through it
// must be released before it is destroyed: declare the BenchPool before the handles.
//
// Why the data may live elsewhere: a case that maps one 4 KiB block per chunk leaves one
// filesystem extent per chunk in the sparse pool file, and deleting a file of a million
// extents on a filesystem mounted with `discard` takes minutes (one discard per extent).
// Cases that measure metadata rather than data put the pool file on /dev/shm.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/pool.h"

namespace pxd::bench {

class BenchPool {
 public:
  // A thick pool file is written whole at creation (PoolDeviceSpec::thick).
  BenchPool(const std::string& dir, uint64_t capacity, uint32_t chunk_size = kDefaultChunkSize,
            const std::string& data_dir = "", bool thick = false);
  Pool& pool() { return *pool_; }
  Pool* operator->() { return pool_.get(); }
  uint32_t chunk_size() const { return chunk_size_; }
  // Creates a volume of `size` bytes (block size 4096) and opens it.
  std::shared_ptr<Volume> create_volume(const std::string& name, uint64_t size);
  // Waits (at most `seconds`) until freed chunks have been zeroed and are free again.
  void wait_for_reclaim(int seconds = 5);

 private:
  uint32_t chunk_size_;
  std::unique_ptr<Pool> pool_;
};

// /dev/shm if it is usable, else `fallback`.
std::string ram_dir(const std::string& fallback);

// Sizes of metadata store files by kind, for reading what metadata_bytes is made of.
struct MetadataFiles {
  uint64_t wal = 0;    // *.log: the write-ahead log, not yet flushed to tables
  uint64_t sst = 0;    // *.sst: tables
  uint64_t other = 0;  // MANIFEST, OPTIONS, the info LOG
};
MetadataFiles metadata_files(const std::string& meta_dir);

}  // namespace pxd::bench
