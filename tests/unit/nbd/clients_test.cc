// tests/unit/nbd/clients_test.cc: the NBD server against the tools people use.
//
// nbdinfo, nbdsh, nbdcopy (libnbd-bin), qemu-img and qemu-io (qemu-utils) and fio's nbd
// engine, each run as a real process against an in-process Server, checking what the
// tool reports and what lands in the volume.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "tests/integration/process.h"
#include "tests/unit/nbd/nbd_client.h"
#include "tests/unit/nbd/nbd_fixture.h"

namespace pxd::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kVolBytes = 32 * kMiB;

// Debian's tools, with Debian's python3 for nbdsh whatever else is first on PATH.
RunResult tool(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 60s) {
  RunResult r = run(argv, {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, timeout);
  std::string line;
  for (const auto& a : argv) line += a + " ";
  INFO("command: " << line);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  CHECK_FALSE(r.timed_out);
  return r;
}

void check_ok(const RunResult& r) {
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
}

// A file of `size` bytes: data in the ranges of `data` (pattern by seed), holes elsewhere.
void make_sparse_file(const std::string& path, uint64_t size,
                      const std::vector<std::pair<uint64_t, uint64_t>>& data) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  uint8_t seed = 1;
  for (auto [offset, length] : data) {
    auto bytes = pattern(length, seed++);
    REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
            static_cast<ssize_t>(bytes.size()));
  }
  ::close(fd);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST_CASE("nbdinfo sees the export, its flags, its map, and the list of exports") {
  NbdFixture f;
  f.create("other", 8 * kMiB);
  f.snapshot("vol", "snap");
  {
    NbdClient c(f.uri());
    REQUIRE(c.connected());
    REQUIRE(c.pwrite(pattern(kTestChunk, 3), 4 * kTestChunk) == 0);
  }
  auto r = tool({"nbdinfo", "--json", f.uri()});
  check_ok(r);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  REQUIRE(j["exports"].size() == 1);
  auto e = j["exports"][0];
  CHECK(e["export-size"] == kVolBytes);
  CHECK(e["is_read_only"] == false);
  CHECK(e["can_multi_conn"] == true);
  CHECK(e["can_flush"] == true);
  CHECK(e["can_fua"] == true);
  CHECK(e["can_trim"] == true);
  CHECK(e["can_zero"] == true);
  CHECK(e["can_df"] == true);
  CHECK(e["block_size_minimum"] == 4096);
  CHECK(e["block_size_maximum"] == 32 * kMiB);
  CHECK(j["protocol"] == "newstyle-fixed");
  bool has_allocation = false;
  for (auto& ctx : e["contexts"]) has_allocation = has_allocation || ctx == "base:allocation";
  CHECK(has_allocation);

  r = tool({"nbdinfo", "--json", f.uri("snap")});
  check_ok(r);
  j = nlohmann::json::parse(r.out, nullptr, false);
  CHECK(j["exports"][0]["is_read_only"] == true);

  // --map: hole, the written chunk, hole.
  r = tool({"nbdinfo", "--map", "--json", f.uri()});
  check_ok(r);
  j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE(j.size() == 3);
  CHECK(j[0]["offset"] == 0);
  CHECK(j[0]["length"] == 4 * kTestChunk);
  CHECK(j[0]["type"] == 3);
  CHECK(j[1]["offset"] == 4 * kTestChunk);
  CHECK(j[1]["length"] == kTestChunk);
  CHECK(j[1]["type"] == 0);
  CHECK(j[2]["type"] == 3);
  r = tool({"nbdinfo", "--map", "--totals", f.uri()});
  check_ok(r);
  CHECK(r.out.find("data") != std::string::npos);
  CHECK(r.out.find("hole,zero") != std::string::npos);

  // --list: every volume and snapshot.
  r = tool({"nbdinfo", "--list", "--json", "nbd+unix://?socket=" + f.socket()});
  check_ok(r);
  j = nlohmann::json::parse(r.out, nullptr, false);
  std::vector<std::string> names;
  for (auto& x : j["exports"]) names.push_back(x["export-name"]);
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"other", "snap", "vol"});

  // A missing export: nbdinfo fails and says which.
  r = tool({"nbdinfo", f.uri("missing")});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("missing") != std::string::npos);
}

TEST_CASE("nbdsh drives every command from libnbd's Python binding") {
  NbdFixture f;
  const std::string script = R"(
import nbd
assert h.get_size() == 32 * 1024 * 1024
assert h.can_multi_conn() and h.can_fua() and h.can_trim() and h.can_zero()
h.pwrite(b'\xab' * 65536, 0, nbd.CMD_FLAG_FUA)
h.pwrite(b'\xcd' * 65536, 65536)
h.flush()
assert h.pread(65536, 0) == b'\xab' * 65536
h.trim(65536, 0)
assert h.pread(65536, 0) == bytes(65536)
h.zero(65536, 65536, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(65536, 65536) == bytes(65536)
seen = []
def f(meta, offset, entries, err):
    seen.extend(entries)
h.block_status(131072, 0, f)
# the trimmed chunk is a hole, the NO_HOLE-zeroed one is still allocated
assert seen == [65536, 3, 65536, 0], seen
print("nbdsh ok")
)";
  auto r = tool({"nbdsh", "--base-allocation", "-u", f.uri(), "-c", script});
  check_ok(r);
  CHECK(r.out.find("nbdsh ok") != std::string::npos);
}

TEST_CASE("nbdcopy copies a sparse image in and out over several connections; holes stay") {
  NbdFixture f;
  const std::string src = f.dir / "src.img", out = f.dir / "out.img";
  make_sparse_file(src, kVolBytes,
                   {{0, 1 * kMiB}, {5 * kMiB + 4096, 300 * 1024}, {20 * kMiB, 3 * kMiB}});
  check_ok(tool({"nbdcopy", "--connections=4", "--requests=16", src, f.uri()}));
  check_ok(tool({"nbdcopy", "--connections=4", f.uri(), out}));
  CHECK(read_file(src) == read_file(out));
  // Holes of the source are holes of the volume: nothing beyond the data's chunks was
  // allocated.
  auto r = tool({"nbdinfo", "--map", "--totals", "--json", f.uri()});
  check_ok(r);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  uint64_t data = 0;
  for (auto& t : j)
    if (t["type"] == 0) data += t["size"].get<uint64_t>();
  CHECK(data >= 1 * kMiB + 300 * 1024 + 3 * kMiB);
  CHECK(data <= 1 * kMiB + 2 * kTestChunk + 300 * 1024 + 3 * kMiB);
}

TEST_CASE("qemu-img converts into the volume, compares it and maps it") {
  NbdFixture f;
  const std::string src = f.dir / "src.img", qcow = f.dir / "src.qcow2";
  make_sparse_file(src, kVolBytes, {{2 * kMiB, 1 * kMiB}, {30 * kMiB, 512 * 1024}});
  check_ok(tool({"qemu-img", "convert", "-f", "raw", "-O", "qcow2", src, qcow}));
  check_ok(tool({"qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", qcow, f.uri()}));
  check_ok(tool({"qemu-img", "compare", "-f", "raw", "-F", "raw", src, f.uri()}));
  auto r = tool({"qemu-img", "map", "--output=json", "-f", "raw", f.uri()});
  check_ok(r);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE(j.is_array());
  uint64_t data = 0;
  for (auto& e : j) {
    if (e["data"] == true) {
      data += e["length"].get<uint64_t>();
      CHECK(e["zero"] == false);
    } else {
      CHECK(e["zero"] == true);
    }
  }
  CHECK(data == 1 * kMiB + 512 * 1024);
  // A changed byte makes compare fail.
  {
    NbdClient c(f.uri());
    REQUIRE(c.pwrite(pattern(4096, 99), 10 * kMiB) == 0);
  }
  r = tool({"qemu-img", "compare", "-f", "raw", "-F", "raw", src, f.uri()});
  CHECK(r.exit_code == 1);
}

TEST_CASE("qemu-io: write with FUA, flush, discard, write -z with and without unmap") {
  NbdFixture f;
  auto r = tool({"qemu-io", "-f", "raw", f.uri(),
                 "-c", "write -P 0xab 0 256k",
                 "-c", "write -f -P 0xcd 256k 64k",
                 "-c", "flush",
                 "-c", "read -P 0xab 0 256k",
                 "-c", "read -P 0xcd 256k 64k",
                 "-c", "discard 0 128k",
                 "-c", "read -P 0 0 128k",
                 "-c", "write -z 128k 64k",
                 "-c", "read -P 0 128k 64k",
                 "-c", "write -z -u 192k 64k",
                 "-c", "read -P 0 192k 64k",
                 "-c", "aio_write -P 0x11 1M 64k",
                 "-c", "aio_write -P 0x22 2M 64k",
                 "-c", "aio_flush",
                 "-c", "read -P 0x11 1M 64k",
                 "-c", "read -P 0x22 2M 64k"});
  check_ok(r);
  CHECK(r.out.find("Pattern verification failed") == std::string::npos);
  CHECK(r.out.find("failed") == std::string::npos);
  // write -z without -u leaves the range allocated; with -u it may be a hole.
  NbdClient c(f.uri(), [](nbd_handle* h) {
    nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
  });
  REQUIRE(c.connected());
  auto e = c.block_status(4 * kTestChunk, 0);
  REQUIRE(e.size() == 3);
  CHECK(e[0].length == 2 * kTestChunk);  // discarded
  CHECK(e[0].flags == 3);
  CHECK(e[1].length == kTestChunk);      // write -z: zeros written
  CHECK(e[1].flags == 0);
  CHECK(e[2].length == kTestChunk);      // write -z -u: unmapped
  CHECK(e[2].flags == 3);
}

TEST_CASE("fio's nbd engine with four connections at once, verified by crc32c") {
  NbdFixture f(256 * kMiB);
  f.create("fio", 64 * kMiB);
  auto r = tool({"fio", "--name=nbd", "--ioengine=nbd", "--uri=" + f.uri("fio"),
                 "--rw=randwrite", "--bs=4k", "--iodepth=32", "--numjobs=4", "--size=16m",
                 "--offset_increment=16m", "--verify=crc32c", "--verify_fatal=1",
                 "--do_verify=1", "--group_reporting", "--output-format=json"},
                120s);
  check_ok(r);
  // fio may print notes before its JSON.
  auto j = nlohmann::json::parse(r.out.substr(std::min(r.out.find('{'), r.out.size())), nullptr,
                                 false);
  REQUIRE_MESSAGE(!j.is_discarded(), r.out);
  auto job = j["jobs"][0];
  CHECK(job["error"] == 0);
  CHECK(job["write"]["io_bytes"].get<uint64_t>() == 64 * kMiB);
  CHECK(job["read"]["io_bytes"].get<uint64_t>() == 64 * kMiB);  // the verify pass

  r = tool({"fio", "--name=nbd", "--ioengine=nbd", "--uri=" + f.uri("fio"), "--rw=randrw",
            "--bs=64k", "--iodepth=8", "--numjobs=2", "--size=32m", "--offset_increment=32m",
            "--verify=crc32c", "--verify_fatal=1", "--group_reporting",
            "--output-format=json"},
           120s);
  check_ok(r);
}

}  // namespace
}  // namespace pxd::testing
