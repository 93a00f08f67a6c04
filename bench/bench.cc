#include "bench/bench.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

namespace pxd::bench {
namespace {

std::atomic<bool> g_interrupted{false};  // the one global: a signal handler needs it

extern "C" void on_signal(int) {
  g_interrupted.store(true, std::memory_order_relaxed);
}

double round_to(double v, int decimals) {
  double f = std::pow(10.0, decimals);
  return std::round(v * f) / f;
}

// Enough digits to compare, few enough to read.
std::string format_number(double v) {
  char buf[64];
  double a = std::fabs(v);
  if (a >= 1000) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else if (a >= 10) {
    std::snprintf(buf, sizeof(buf), "%.1f", v);
  } else if (a >= 0.1 || a == 0) {
    std::snprintf(buf, sizeof(buf), "%.3f", v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.2g", v);
  }
  return buf;
}

double json_number(double v) {
  double a = std::fabs(v);
  return round_to(v, a >= 100 ? 1 : a >= 1 ? 3 : 6);
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool interrupted() {
  return g_interrupted.load(std::memory_order_relaxed);
}

void throw_if_interrupted() {
  if (interrupted()) throw Interrupted();
}

void check(const Status& status, const std::string& what) {
  if (!status.is_ok()) throw BenchError(what + ": " + status.to_string());
}

std::optional<double> Row::ratio() const {
  if (!baseline || *baseline == 0) return std::nullopt;
  return pxd / *baseline;
}

std::optional<bool> Row::pass() const {
  switch (goal) {
    case Goal::kNone:
      return std::nullopt;
    case Goal::kRatioAtLeast: {
      auto r = ratio();
      if (!r) return std::nullopt;
      return *r >= goal_value;
    }
    case Goal::kPxdBelow:
      return pxd < goal_value;
  }
  return std::nullopt;
}

std::string Row::target_text() const {
  char buf[64];
  switch (goal) {
    case Goal::kNone:
      return "";
    case Goal::kRatioAtLeast:
      std::snprintf(buf, sizeof(buf), "ratio>=%.2f", goal_value);
      return buf;
    case Goal::kPxdBelow:
      std::snprintf(buf, sizeof(buf), "<%g %s", goal_value, unit.c_str());
      return buf;
  }
  return "";
}

void Report::add(Row row) {
  if (json_) {
    nlohmann::ordered_json j;
    j["bench"] = row.bench;
    j["case"] = row.name;
    j["pxd"] = json_number(row.pxd);
    j["baseline"] = row.baseline ? nlohmann::ordered_json(json_number(*row.baseline)) : nullptr;
    j["baseline_name"] = row.baseline_name;
    auto r = row.ratio();
    j["ratio"] = r ? nlohmann::ordered_json(round_to(*r, 3)) : nullptr;
    j["unit"] = row.unit;
    if (row.goal != Goal::kNone) {
      j["target"] = row.target_text();
      auto p = row.pass();
      j["pass"] = p ? nlohmann::ordered_json(*p) : nullptr;
    }
    for (auto& [k, v] : row.extra.items()) j[k] = v;
    std::cout << j.dump() << std::endl;
  }
  rows_.push_back(std::move(row));
}

void Report::print_table() const {
  std::vector<std::vector<std::string>> cells;
  cells.push_back(
      {"bench", "case", "pxd", "baseline", "baseline_name", "ratio", "unit", "target", ""});
  for (const Row& row : rows_) {
    auto r = row.ratio();
    auto p = row.pass();
    cells.push_back({row.bench, row.name, format_number(row.pxd),
                     row.baseline ? format_number(*row.baseline) : "-",
                     row.baseline ? row.baseline_name : "-", r ? format_number(*r) : "-", row.unit,
                     row.target_text(), p ? (*p ? "PASS" : "MISS") : ""});
  }
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  for (const auto& line : cells) {
    std::string out;
    for (size_t i = 0; i < line.size(); ++i) {
      bool numeric = i == 2 || i == 3 || i == 5;
      std::string cell = line[i];
      std::string pad(width[i] - cell.size(), ' ');
      out += numeric ? pad + cell : cell + pad;
      if (i + 1 < line.size()) out += "  ";
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::cout << out << "\n";
  }
  std::cout.flush();
}

void Report::print_misses() const {
  for (const Row& row : rows_) {
    auto p = row.pass();
    if (p && !*p) progress("MISS: " + row.bench + " " + row.name + " (" + row.target_text() + ")");
  }
}

void progress(const std::string& message) {
  static const double start = now_seconds();
  char stamp[32];
  std::snprintf(stamp, sizeof(stamp), "[%6.1fs] ", now_seconds() - start);
  std::cerr << "pxbench: " << stamp << message << std::endl;
}

ScratchDir::ScratchDir(const std::string& base, const std::string& prefix) {
  std::string tmpl = base + "/" + prefix + "XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr)
    throw BenchError("cannot create a scratch directory in " + base + ": " + std::strerror(errno));
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

AlignedBuffer::AlignedBuffer(size_t bytes, uint64_t seed) : size_(bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, bytes ? bytes : 4096) != 0) throw std::bad_alloc();
  data_ = static_cast<std::byte*>(p);
  // splitmix64 from a seed drawn with mt19937_64: fast enough for 32 MiB of buffers.
  uint64_t state = std::mt19937_64(seed)();
  auto* words = reinterpret_cast<uint64_t*>(data_);
  for (size_t i = 0; i < bytes / 8; ++i) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    words[i] = (z ^ (z >> 31)) | 1;  // never an all-zero word
  }
}

AlignedBuffer::~AlignedBuffer() {
  std::free(data_);
}

double now_seconds() {
  return static_cast<double>(now_ns()) / 1e9;
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

uint64_t rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // kB
  }
  throw BenchError("no VmRSS in /proc/self/status");
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

std::string describe_filesystem(const std::string& path) {
  // The mount whose directory is the longest prefix of `path`.
  std::error_code ec;
  std::string real = std::filesystem::canonical(path, ec).string();
  if (ec) real = path;
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, type, best_dev, best_type;
  size_t best = 0;
  std::string rest;
  while (in >> dev >> dir >> type && std::getline(in, rest)) {
    bool prefix = real.compare(0, dir.size(), dir) == 0 &&
                  (real.size() == dir.size() || dir == "/" || real[dir.size()] == '/');
    if (prefix && dir.size() >= best) {
      best = dir.size();
      best_dev = dev;
      best_type = type;
    }
  }
  return best_type.empty() ? "unknown" : best_type + " on " + best_dev;
}

}  // namespace pxd::bench
