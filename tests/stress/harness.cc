#include "tests/stress/harness.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace pxd::stress {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

void fill_pattern(uint8_t* out, uint64_t offset, uint64_t length, uint64_t counter) {
  // Offsets and lengths are block multiples, so words never straddle the range.
  for (uint64_t i = 0; i < length; i += 8) {
    uint64_t word = splitmix64((counter << 40) ^ (offset + i));
    std::memcpy(out + i, &word, 8);
  }
}

std::string describe_difference(const uint8_t* expected, const uint8_t* actual, uint64_t length,
                                uint64_t offset) {
  if (std::memcmp(expected, actual, length) == 0) return "";
  uint64_t first = length, count = 0;
  for (uint64_t i = 0; i < length; ++i) {
    if (expected[i] != actual[i]) {
      if (first == length) first = i;
      ++count;
    }
  }
  if (count == 0) return "";
  std::ostringstream out;
  out << "first difference at offset " << offset + first << " (block " << (offset + first) / 4096
      << "): expected 0x" << std::hex << static_cast<int>(expected[first]) << ", read 0x"
      << static_cast<int>(actual[first]) << std::dec << "; " << count << " of " << length
      << " bytes differ";
  return out.str();
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool run_batch(IoRing& ring, std::vector<BatchItem>& items, size_t depth) {
  if (depth == 0) depth = items.size();
  std::vector<IoRequest> reqs(items.size());
  size_t next = 0, in_flight = 0, completed = 0;
  struct Ctx {
    BatchItem* item;
    size_t* in_flight;
    size_t* completed;
  };
  std::vector<Ctx> ctx(items.size());
  auto submit_more = [&] {
    while (next < items.size() && in_flight < depth) {
      BatchItem& item = items[next];
      IoRequest& req = reqs[next];
      ctx[next] = Ctx{&item, &in_flight, &completed};
      req.op = item.op;
      req.flags = item.flags;
      req.offset = item.offset;
      req.length = item.length;
      req.buffer = item.buffer;
      req.user = &ctx[next];
      req.done = [](IoRequest* r, int res) {
        auto* c = static_cast<Ctx*>(r->user);
        c->item->result = res;
        c->item->completed_ns = now_ns();
        --*c->in_flight;
        ++*c->completed;
      };
      ++in_flight;
      ++next;
      item.submitted_ns = now_ns();
      item.volume->submit(ring, &req);
      if (item.result != 1) item.done_inside_submit = true;
    }
  };
  submit_more();
  int idle_rounds = 0;
  while (completed < items.size()) {
    int rc = ring.run_once(true, 1000);
    if (rc < 0) return false;
    idle_rounds = rc == 0 ? idle_rounds + 1 : 0;
    if (idle_rounds == 60) {
      // A request that never completes: the requests live on this stack frame, so the only
      // safe way out is to stop the process, saying why.
      std::fprintf(stderr, "stress: %zu of %zu requests did not complete in 60 s\n",
                   items.size() - completed, items.size());
      std::abort();
    }
    submit_more();
  }
  return true;
}

Harness::Harness(uint64_t pool_bytes, uint32_t chunk_size) {
  PoolOptions opts;
  opts.devices.push_back({dir_ / "pool0.img", pool_bytes});
  opts.chunk_size = chunk_size;
  auto r = Pool::create(dir_ / "meta", opts);
  REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
  pool_ = std::move(r).value();
}

Harness::~Harness() {
  handles_.clear();
  pool_.reset();
}

Volume& Harness::handle(const std::string& name) {
  auto it = handles_.find(name);
  if (it != handles_.end()) return *it->second;
  auto v = pool_->open_volume(name);
  REQUIRE_MESSAGE(v.has_value(), "open_volume(" << name << "): " << v.error().to_string());
  return *(handles_[name] = v.value());
}

std::string Harness::reopen() {
  handles_.clear();
  pool_.reset();
  auto r = Pool::open(dir_ / "meta");
  if (r.has_error()) return r.error().to_string();
  pool_ = std::move(r).value();
  return "";
}

}  // namespace pxd::stress
