// tests/unit/nbd/protocol_test.cc: the NBD server against libnbd, command by command.
//
// Each case connects real libnbd handles to an in-process Server over a private pool and
// checks what a client sees: the negotiated flags and block sizes, data, the allocation
// map, errors. libnbd's own client-side checks are switched off where a case needs to
// send what a careless client would (out of range, misaligned, unknown flags).
#include <doctest/doctest.h>
#include <libnbd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "tests/unit/nbd/nbd_client.h"
#include "tests/unit/nbd/nbd_fixture.h"
#include "tests/unit/nbd/test_volumes.h"

namespace pxd::testing {
namespace {

constexpr uint64_t kVolBytes = 32 * kMiB;

void no_client_checks(nbd_handle* h) { nbd_set_strict_mode(h, 0); }

TEST_CASE("a volume is served read-write with every flag and its block sizes") {
  NbdFixture f;
  NbdClient c(f.uri(), [](nbd_handle* h) {
    nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
  });
  REQUIRE_MESSAGE(c.connected(), c.connect_error());
  CHECK(nbd_get_size(c.h()) == static_cast<int64_t>(kVolBytes));
  CHECK(nbd_is_read_only(c.h()) == 0);
  CHECK(nbd_can_flush(c.h()) == 1);
  CHECK(nbd_can_fua(c.h()) == 1);
  CHECK(nbd_can_trim(c.h()) == 1);
  CHECK(nbd_can_zero(c.h()) == 1);
  CHECK(nbd_can_multi_conn(c.h()) == 1);
  CHECK(nbd_can_df(c.h()) == 1);
  CHECK(nbd_can_fast_zero(c.h()) == 0);
  CHECK(nbd_can_cache(c.h()) == 0);
  CHECK(nbd_get_structured_replies_negotiated(c.h()) == 1);
  CHECK(nbd_can_meta_context(c.h(), LIBNBD_CONTEXT_BASE_ALLOCATION) == 1);
  CHECK(nbd_get_block_size(c.h(), LIBNBD_SIZE_MINIMUM) == 4096);
  CHECK(nbd_get_block_size(c.h(), LIBNBD_SIZE_PREFERRED) == 4096);
  CHECK(nbd_get_block_size(c.h(), LIBNBD_SIZE_MAXIMUM) == 32 * 1024 * 1024);
  CHECK(std::string(nbd_get_protocol(c.h())) == "newstyle-fixed");
  CHECK(f.server->connections() == 1);
}

TEST_CASE("a 512-byte-block volume advertises 512 as its minimum") {
  NbdFixture f;
  f.create("small", 4 * kMiB, 512);
  NbdClient c(f.uri("small"));
  REQUIRE(c.connected());
  CHECK(nbd_get_block_size(c.h(), LIBNBD_SIZE_MINIMUM) == 512);
  auto data = pattern(512, 3);
  CHECK(c.pwrite(data, 512 * 7) == 0);
  CHECK(c.read(512 * 7, 512) == data);
}

TEST_CASE("reads and writes round-trip, with and without FUA and structured replies") {
  NbdFixture f;
  for (bool structured : {true, false}) {
    CAPTURE(structured);
    NbdClient c(f.uri(), [structured](nbd_handle* h) {
      nbd_set_request_structured_replies(h, structured);
    });
    REQUIRE(c.connected());
    CHECK(nbd_get_structured_replies_negotiated(c.h()) == (structured ? 1 : 0));
    CHECK(nbd_can_df(c.h()) == (structured ? 1 : 0));
    auto a = pattern(1 * kMiB, structured ? 1 : 2);
    auto b = pattern(64 * 1024, structured ? 5 : 6);
    CHECK(c.pwrite(a, 3 * kMiB) == 0);
    CHECK(c.pwrite(b, 8 * kMiB + 4096, LIBNBD_CMD_FLAG_FUA) == 0);
    CHECK(c.flush() == 0);
    CHECK(c.read(3 * kMiB, a.size()) == a);
    CHECK(c.read(8 * kMiB + 4096, b.size()) == b);
    // The largest payload the server advertises, in one request.
    auto big = pattern(32 * kMiB, structured ? 9 : 10);
    CHECK(c.pwrite(big, 0) == 0);
    CHECK(c.read(0, big.size()) == big);
    if (structured) {
      // DF: the whole read in one data chunk.
      std::vector<uint8_t> buf(1 * kMiB);
      int chunks = 0;
      nbd_chunk_callback cb = {
          [](void* user, const void*, size_t, uint64_t, unsigned status, int*) {
            if (status == LIBNBD_READ_DATA) ++*static_cast<int*>(user);
            return 0;
          },
          &chunks, nullptr};
      CHECK(nbd_pread_structured(c.h(), buf.data(), buf.size(), 0, cb, LIBNBD_CMD_FLAG_DF) == 0);
      CHECK(chunks == 1);
      CHECK(std::equal(buf.begin(), buf.end(), big.begin()));
    }
  }
}

TEST_CASE("unwritten ranges read as zeros and block status shows them as holes") {
  NbdFixture f;
  NbdClient c(f.uri(), [](nbd_handle* h) {
    nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
  });
  REQUIRE(c.connected());
  CHECK(all_bytes(c.read(5 * kMiB, 128 * 1024), 0));
  auto e = c.block_status(kVolBytes, 0);
  REQUIRE_MESSAGE(e.size() == 1, c.last_error());
  CHECK(e[0].length == kVolBytes);
  CHECK(e[0].flags == (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO));

  // One chunk written in the middle: hole, data, hole.
  CHECK(c.pwrite(pattern(4096, 1), 2 * kTestChunk + 8192) == 0);
  e = c.block_status(kVolBytes, 0);
  REQUIRE(e.size() == 3);
  CHECK(e[0].length == 2 * kTestChunk);
  CHECK(e[0].flags == 3);
  CHECK(e[1].length == kTestChunk);
  CHECK(e[1].flags == 0);
  CHECK(e[2].length == kVolBytes - 3 * kTestChunk);
  CHECK(e[2].flags == 3);

  // A query inside the data chunk, and REQ_ONE.
  e = c.block_status(4096, 2 * kTestChunk + 8192);
  REQUIRE(e.size() == 1);
  CHECK(e[0].length == 4096);
  CHECK(e[0].flags == 0);
  e = c.block_status(kVolBytes, 0, LIBNBD_CMD_FLAG_REQ_ONE);
  REQUIRE(e.size() == 1);
  CHECK(e[0].length == 2 * kTestChunk);

  // A client that ignores the block size still gets exact answers; past the end, EINVAL.
  NbdClient loose(f.uri(), [](nbd_handle* h) {
    nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
    no_client_checks(h);
  });
  e = loose.block_status(100, 2 * kTestChunk - 50);
  REQUIRE_MESSAGE(e.size() == 2, loose.last_error());
  CHECK(e[0].length == 50);
  CHECK(e[0].flags == 3);
  CHECK(e[1].length == 50);
  CHECK(e[1].flags == 0);
  int err = 0;
  loose.block_status(8192, kVolBytes - 4096, 0, &err);
  CHECK(err == EINVAL);
}

TEST_CASE("block status without a negotiated context is refused with EINVAL") {
  NbdFixture f;
  NbdClient c(f.uri(), no_client_checks);
  REQUIRE(c.connected());
  CHECK(nbd_can_meta_context(c.h(), LIBNBD_CONTEXT_BASE_ALLOCATION) == 0);
  int err = 0;
  c.block_status(4096, 0, 0, &err);
  CHECK(err == EINVAL);
  CHECK(c.read(0, 4096).size() == 4096);  // the connection goes on
}

TEST_CASE("trim and write-zeroes read back as zeros; NO_HOLE keeps the range allocated") {
  NbdFixture f;
  NbdClient c(f.uri(), [](nbd_handle* h) {
    nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
  });
  REQUIRE(c.connected());
  const uint64_t chunk = kTestChunk;
  auto fill = pattern(8 * chunk, 4);
  REQUIRE(c.pwrite(fill, 0) == 0);

  SUBCASE("TRIM of whole chunks gives them back") {
    CHECK(c.trim(2 * chunk, chunk, LIBNBD_CMD_FLAG_FUA) == 0);
    CHECK(all_bytes(c.read(chunk, 2 * chunk), 0));
    auto e = c.block_status(8 * chunk, 0);
    REQUIRE(e.size() == 3);
    CHECK(e[1].length == 2 * chunk);
    CHECK(e[1].flags == 3);
  }
  SUBCASE("WRITE_ZEROES may punch holes") {
    CHECK(c.zero(3 * chunk, 4 * chunk) == 0);
    CHECK(all_bytes(c.read(4 * chunk, 3 * chunk), 0));
    auto e = c.block_status(8 * chunk, 0);
    REQUIRE(e.size() == 3);
    CHECK(e[1].flags == 3);
  }
  SUBCASE("WRITE_ZEROES with NO_HOLE writes zeros and leaves everything allocated") {
    CHECK(c.zero(3 * chunk, 4 * chunk, LIBNBD_CMD_FLAG_NO_HOLE | LIBNBD_CMD_FLAG_FUA) == 0);
    CHECK(all_bytes(c.read(4 * chunk, 3 * chunk), 0));
    auto e = c.block_status(8 * chunk, 0);
    REQUIRE(e.size() == 1);
    CHECK(e[0].flags == 0);
    // And over a hole: the range becomes allocated, reading zeros.
    CHECK(c.zero(9 * kMiB, 10 * kMiB, LIBNBD_CMD_FLAG_NO_HOLE) == 0);
    e = c.block_status(9 * kMiB, 10 * kMiB);
    REQUIRE(e.size() == 1);
    CHECK(e[0].flags == 0);
    CHECK(all_bytes(c.read(10 * kMiB, 1 * kMiB), 0));
  }
  SUBCASE("partial chunks are zeroed in place") {
    CHECK(c.zero(8192, chunk + 4096) == 0);
    CHECK(all_bytes(c.read(chunk + 4096, 8192), 0));
    auto rest = c.read(chunk + 4096 + 8192, 4096);
    CHECK(std::equal(rest.begin(), rest.end(), fill.begin() + chunk + 4096 + 8192));
  }
  // Larger than the maximum payload: TRIM and WRITE_ZEROES take any length.
  CHECK(c.zero(kVolBytes, 0) == 0);
  CHECK(all_bytes(c.read(0, 1 * kMiB), 0));
}

TEST_CASE("a snapshot is served read-only with its snapshot-time content") {
  NbdFixture f;
  {
    NbdClient c(f.uri());
    REQUIRE(c.connected());
    REQUIRE(c.pwrite(pattern(64 * 1024, 1), 0) == 0);
    REQUIRE(c.flush() == 0);
  }
  f.snapshot("vol", "snap");
  NbdClient c(f.uri());
  REQUIRE(c.connected());
  REQUIRE(c.pwrite(pattern(64 * 1024, 2), 0) == 0);

  NbdClient s(f.uri("snap"), no_client_checks);
  REQUIRE(s.connected());
  CHECK(nbd_is_read_only(s.h()) == 1);
  CHECK(nbd_can_trim(s.h()) == 0);
  CHECK(nbd_can_zero(s.h()) == 0);
  CHECK(nbd_can_flush(s.h()) == 1);
  CHECK(s.read(0, 64 * 1024) == pattern(64 * 1024, 1));
  CHECK(s.pwrite(pattern(4096, 3), 0) == EPERM);
  CHECK(s.trim(4096, 0) == EPERM);
  CHECK(s.zero(4096, 0) == EPERM);
  CHECK(s.flush() == 0);
  CHECK(s.read(0, 64 * 1024) == pattern(64 * 1024, 1));
}

TEST_CASE("bad requests get the protocol's errors and the connection goes on") {
  NbdFixture f;
  NbdClient c(f.uri(), no_client_checks);
  REQUIRE(c.connected());
  std::vector<uint8_t> buf(4096);
  CHECK(c.pread(buf, kVolBytes) == EINVAL);                    // past the end
  CHECK(c.pwrite(buf, 2048) == EINVAL);                        // misaligned
  CHECK(c.pwrite(buf, kVolBytes) == ENOSPC);                   // write past the end
  CHECK(c.zero(8192, kVolBytes - 4096) == ENOSPC);             // zeroes past the end
  CHECK(c.trim(8192, kVolBytes - 4096) == EINVAL);             // trim past the end
  std::vector<uint8_t> odd(1000);
  CHECK(c.pread(odd, 0) == EINVAL);                            // length not a block multiple
  CHECK(c.pread(buf, 100) == EINVAL);                          // offset not a block multiple
  std::vector<uint8_t> over(32 * kMiB + 4096);
  CHECK(c.pread(over, 0) == EINVAL);                           // over the maximum payload
  CHECK(c.pread(buf, 0, LIBNBD_CMD_FLAG_FAST_ZERO) == EINVAL); // a flag READ does not take
  CHECK(c.zero(4096, 0, LIBNBD_CMD_FLAG_FAST_ZERO) == EINVAL); // not advertised
  CHECK(c.pread(buf, UINT64_MAX - 4095) == EINVAL);            // offset + length overflows
  CHECK(c.pwrite(pattern(4096, 7), 4096) == 0);
  CHECK(c.read(4096, 4096) == pattern(4096, 7));

  NbdClient simple(f.uri(), [](nbd_handle* h) {
    nbd_set_request_structured_replies(h, false);
    nbd_set_strict_mode(h, 0);
  });
  REQUIRE(simple.connected());
  CHECK(simple.pread(buf, kVolBytes) == EINVAL);
  CHECK(simple.read(4096, 4096) == pattern(4096, 7));
}

TEST_CASE("option haggling: INFO, LIST, LIST_META_CONTEXT, unknown exports, ABORT") {
  NbdFixture f;
  f.create("second", 8 * kMiB);
  f.snapshot("vol", "snap");
  nbd_handle* h = nbd_create();
  REQUIRE(h);
  nbd_set_opt_mode(h, true);
  REQUIRE(nbd_connect_uri(h, f.uri("second").c_str()) == 0);
  CHECK(nbd_aio_is_negotiating(h) == 1);

  std::vector<std::string> names;
  nbd_list_callback list_cb = {
      [](void* user, const char* name, const char*) {
        static_cast<std::vector<std::string>*>(user)->push_back(name);
        return 0;
      },
      &names, nullptr};
  CHECK(nbd_opt_list(h, list_cb) == 3);
  CHECK(names == std::vector<std::string>{"second", "snap", "vol"});

  // INFO on a snapshot, then on the volume: the handle stays in negotiation.
  REQUIRE(nbd_set_export_name(h, "snap") == 0);
  REQUIRE(nbd_opt_info(h) == 0);
  CHECK(nbd_get_size(h) == static_cast<int64_t>(kVolBytes));
  CHECK(nbd_is_read_only(h) == 1);
  REQUIRE(nbd_set_export_name(h, "second") == 0);
  REQUIRE(nbd_opt_info(h) == 0);
  CHECK(nbd_get_size(h) == static_cast<int64_t>(8 * kMiB));
  CHECK(nbd_is_read_only(h) == 0);

  // An export that does not exist.
  REQUIRE(nbd_set_export_name(h, "nope") == 0);
  CHECK(nbd_opt_info(h) == -1);
  CHECK(nbd_aio_is_negotiating(h) == 1);

  std::vector<std::string> contexts;
  nbd_context_callback ctx_cb = {
      [](void* user, const char* name) {
        static_cast<std::vector<std::string>*>(user)->push_back(name);
        return 0;
      },
      &contexts, nullptr};
  REQUIRE(nbd_set_export_name(h, "vol") == 0);
  CHECK(nbd_opt_list_meta_context(h, ctx_cb) == 1);
  CHECK(contexts == std::vector<std::string>{"base:allocation"});
  contexts.clear();
  REQUIRE(nbd_add_meta_context(h, "qemu:dirty-bitmap:x") == 0);
  CHECK(nbd_opt_list_meta_context(h, ctx_cb) == 0);  // a context this server does not have
  CHECK(contexts.empty());
  REQUIRE(nbd_add_meta_context(h, "base:") == 0);
  CHECK(nbd_opt_list_meta_context(h, ctx_cb) == 1);  // the namespace alone lists its contexts
  CHECK(contexts == std::vector<std::string>{"base:allocation"});

  CHECK(nbd_opt_abort(h) == 0);
  CHECK(nbd_aio_is_closed(h) == 1);
  nbd_close(h);

  // GO on an export that does not exist fails with the server's message.
  NbdClient missing(f.uri("nope"));
  CHECK_FALSE(missing.connected());
  CHECK_MESSAGE(missing.connect_error().find("no export named 'nope'") != std::string::npos,
                missing.connect_error());
}

TEST_CASE("32 requests in flight on one connection run in the engine at once") {
  PoolFixture pf(256 * kMiB);
  pf.create("vol", 32 * kMiB);
  WrappedExports<GateVolume> exports(*pf.pool, 32u);
  nbd::ServerOptions options;
  options.unix_path = pf.dir / "nbd.sock";
  auto server = nbd::Server::start(options, exports);
  REQUIRE(server.has_value());
  {
    NbdClient c("nbd+unix:///vol?socket=" + options.unix_path);
    REQUIRE(c.connected());
    std::vector<std::vector<uint8_t>> bufs(32, std::vector<uint8_t>(4096));
    std::vector<int64_t> cookies;
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 32; ++i) {
      bufs[i] = pattern(4096, static_cast<uint8_t>(i));
      int64_t cookie = nbd_aio_pwrite(c.h(), bufs[i].data(), 4096, i * 65536ull,
                                      NBD_NULL_COMPLETION, 0);
      REQUIRE(cookie > 0);
      cookies.push_back(cookie);
    }
    for (int64_t cookie : cookies) {
      while (nbd_aio_command_completed(c.h(), cookie) == 0) nbd_poll(c.h(), -1);
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    CHECK(exports.last()->peak() >= 32);
    for (int i = 0; i < 32; ++i) CHECK(c.read(i * 65536ull, 4096) == bufs[i]);
  }
  server.value()->stop();
}

TEST_CASE("several connections share one volume: each sees the others' writes") {
  NbdFixture f;
  NbdClient a(f.uri()), b(f.uri());
  REQUIRE(a.connected());
  REQUIRE(b.connected());
  CHECK(f.server->connections() == 2);
  CHECK(a.pwrite(pattern(8192, 11), 1 * kMiB) == 0);
  CHECK(b.read(1 * kMiB, 8192) == pattern(8192, 11));
  CHECK(b.pwrite(pattern(8192, 12), 2 * kMiB) == 0);
  CHECK(b.flush() == 0);
  CHECK(a.read(2 * kMiB, 8192) == pattern(8192, 12));
}

}  // namespace
}  // namespace pxd::testing
