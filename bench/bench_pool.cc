#include "bench/bench_pool.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "bench/bench.h"

namespace pxd::bench {

BenchPool::BenchPool(const std::string& dir, uint64_t capacity, uint32_t chunk_size,
                     const std::string& data_dir, bool thick)
    : chunk_size_(chunk_size) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw BenchError("create " + dir + ": " + ec.message());
  PoolOptions opts;
  opts.chunk_size = chunk_size;
  // The device header takes the first MiB.
  opts.devices.push_back(
      {(data_dir.empty() ? dir : data_dir) + "/pool0.img", capacity + (1 << 20), thick});
  pool_ = check(Pool::create(dir + "/meta", opts), "create pool in " + dir);
}

std::shared_ptr<Volume> BenchPool::create_volume(const std::string& name, uint64_t size) {
  check(pool_->create_volume(VolumeSpec{name, size, 4096, {}, {}}), "create volume " + name);
  return check(pool_->open_volume(name), "open volume " + name);
}

void BenchPool::wait_for_reclaim(int seconds) {
  for (int i = 0; i < seconds * 1000 && pool_->usage().reclaiming_bytes != 0; ++i) ::usleep(1000);
}

std::string ram_dir(const std::string& fallback) {
  struct stat st;
  if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0)
    return "/dev/shm";
  return fallback;
}

MetadataFiles metadata_files(const std::string& meta_dir) {
  namespace fs = std::filesystem;
  MetadataFiles files;
  std::error_code ec;
  for (fs::directory_iterator it(meta_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code size_ec;
    if (!it->is_regular_file(size_ec)) continue;
    uint64_t size = it->file_size(size_ec);
    if (size_ec) continue;
    std::string ext = it->path().extension().string();
    (ext == ".log" ? files.wal : ext == ".sst" ? files.sst : files.other) += size;
  }
  return files;
}

}  // namespace pxd::bench
