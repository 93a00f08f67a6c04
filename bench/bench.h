// bench/bench.h: what every pxbench mode shares: options, result rows and their report,
// scratch directories, process measurements, and how a run is interrupted.
//
// pxbench measures pxd against a peer in the same run on the same filesystem and prints
// one row per figure (see pxbench.cc for the modes). Errors in setup or I/O end the run
// with BenchError; SIGINT/SIGTERM end it with Interrupted. Both unwind, so every pool is
// closed and every scratch directory removed on the way out.
//
// Thread safety: single-threaded, except interrupted(), which a signal handler sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/status.h"

namespace pxd::bench {

struct BenchOptions {
  std::string dir = "/var/tmp";  // the filesystem measured: scratch goes in DIR/pxbench-XXXXXX
  bool quick = false;
  bool smoke = false;  // every case very briefly: checks that the benchmark runs
  bool json = false;   // one JSON object per line instead of a table
  double seconds = 0;  // time budget of each measured case; 0 = the mode's default
  uint64_t size = 0;   // volume and raw file size of the data-path cases; 0 = default
  std::string only;    // engine: run only the parts with a case whose name contains this
  std::string self;    // this executable, for the memory probe subprocess
};

// ---- failures ----

struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

void install_interrupt_handlers();
bool interrupted();
void throw_if_interrupted();

void check(const Status& status, const std::string& what);
template <class T>
T check(Result<T> result, const std::string& what) {
  if (result.has_error()) check(result.error(), what);
  return std::move(result).value();
}

// ---- results ----

enum class Goal { kNone, kRatioAtLeast, kPxdBelow };

struct Row {
  std::string bench;  // "engine", "chunk-size"
  std::string name;   // the case, e.g. "randread-4k-qd32"
  double pxd = 0;
  std::optional<double> baseline;
  std::string baseline_name;
  std::string unit;
  Goal goal = Goal::kNone;
  double goal_value = 0;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // more JSON fields

  std::optional<double> ratio() const;
  std::optional<bool> pass() const;
  std::string target_text() const;  // "ratio>=0.90", "<5 ms", "" when there is no target
};

// Collects rows. With json, each row is printed as it comes (so a long run shows progress
// and an interrupted one keeps what it measured); else print_table() prints them at the end.
class Report {
 public:
  explicit Report(bool json) : json_(json) {}
  void add(Row row);
  void print_table() const;
  void print_misses() const;
  const std::vector<Row>& rows() const { return rows_; }

 private:
  bool json_;
  std::vector<Row> rows_;
};

// Progress and remarks go to stderr, so stdout holds only the results.
void progress(const std::string& message);

// ---- scratch space ----

// A fresh directory `base`/`prefix`XXXXXX, removed with everything in it on destruction.
class ScratchDir {
 public:
  ScratchDir(const std::string& base, const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// `bytes` of non-zero pseudo-random data, aligned for O_DIRECT.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t bytes, uint64_t seed = 1);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// ---- measurements ----

double now_seconds();  // monotonic
uint64_t now_ns();     // monotonic
double cpu_seconds();  // user + system of the whole process, all threads
uint64_t rss_bytes();  // VmRSS from /proc/self/status
double percentile(std::vector<double> values, double p);   // p in [0, 100]
std::string describe_filesystem(const std::string& path);  // "ext4 on /dev/vda"

inline constexpr double kMiBf = 1024.0 * 1024.0;
inline constexpr double kGiBf = 1024.0 * kMiBf;

}  // namespace pxd::bench
