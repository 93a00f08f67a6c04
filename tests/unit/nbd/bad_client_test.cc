// tests/unit/nbd/bad_client_test.cc: scripted clients that break the NBD protocol.
//
// Each case sends, on a raw socket, what a buggy or hostile client would: garbage instead
// of a handshake, lies about lengths, oversized options and payloads, unknown options and
// commands, out-of-range and misaligned I/O, or vanishes with requests in flight. The
// server must answer per the protocol (an error reply, or closing that connection) and a
// well-behaved client must still be served afterwards.
#include <doctest/doctest.h>

#include <thread>

#include "tests/unit/nbd/nbd_client.h"
#include "tests/unit/nbd/nbd_fixture.h"
#include "tests/unit/nbd/raw_client.h"
#include "tests/unit/nbd/test_volumes.h"

namespace pxd::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kVolBytes = 32 * kMiB;

// A good client still gets its data; no connection is left behind once it is gone.
void check_still_serving(NbdFixture& f) {
  {
    NbdClient good(f.uri());
    REQUIRE_MESSAGE(good.connected(), good.connect_error());
    auto data = pattern(8192, 77);
    CHECK(good.pwrite(data, 12 * kMiB) == 0);
    CHECK(good.read(12 * kMiB, 8192) == data);
  }
  // Connections of clients that are gone end (bounded wait).
  for (int i = 0; i < 500 && f.server->connections() != 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(f.server->connections() == 0);
}

TEST_CASE("garbage instead of a handshake closes that connection only") {
  NbdFixture f;
  SUBCASE("an HTTP request") {
    RawClient c(f.socket());
    REQUIRE(c.connected());
    CHECK(c.recv(18).size() == 18);  // the greeting
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(c.closed_by_server());
  }
  SUBCASE("unknown client flags") {
    RawClient c(f.socket());
    REQUIRE(c.greet(0x80));
    CHECK(c.closed_by_server());
  }
  SUBCASE("an option without the IHAVEOPT magic") {
    RawClient c(f.socket());
    REQUIRE(c.greet());
    c.send(wire::Writer().u64(0x1122334455667788).u32(wire::kOptList).u32(0).str());
    CHECK(c.closed_by_server());
  }
  SUBCASE("a client that connects and says nothing is dropped at the handshake timeout") {
    f.stop();
    nbd::ServerOptions options;
    options.unix_path = f.socket();
    options.handshake_timeout_ms = 300;
    f.start(options);
    RawClient c(f.socket());
    REQUIRE(c.connected());
    auto start = std::chrono::steady_clock::now();
    CHECK(c.closed_by_server(5s));
    CHECK(std::chrono::steady_clock::now() - start < 3s);
  }
  SUBCASE("a client that trickles option data past the deadline is dropped too") {
    f.stop();
    nbd::ServerOptions options;
    options.unix_path = f.socket();
    options.handshake_timeout_ms = 400;
    f.start(options);
    RawClient c(f.socket());
    REQUIRE(c.greet());
    c.send(wire::Writer().u64(wire::kOptionMagic).u32(wire::kOptGo).u32(100).str());
    bool closed = false;
    for (int i = 0; i < 30 && !closed; ++i) {
      closed = !c.send("x");
      std::this_thread::sleep_for(50ms);
    }
    CHECK(c.closed_by_server(3s));
  }
  check_still_serving(f);
}

TEST_CASE("option haggling: unknown, malformed and oversized options") {
  NbdFixture f;
  RawClient c(f.socket());
  REQUIRE(c.greet());
  CHECK((c.handshake_flags & wire::kFlagFixedNewstyle) != 0);
  CHECK((c.handshake_flags & wire::kFlagNoZeroes) != 0);

  auto expect = [&](uint32_t opt, const std::string& data, uint32_t type) {
    CAPTURE(opt);
    REQUIRE(c.option(opt, data));
    auto r = c.option_reply();
    REQUIRE(r.ok);
    CHECK(r.option == opt);
    CHECK(r.type == type);
    return r;
  };
  // Unknown options, including ones newer than this server, and TLS.
  expect(99, "", wire::kRepErrUnsup);
  expect(11, "", wire::kRepErrUnsup);  // NBD_OPT_EXTENDED_HEADERS
  expect(4, "abc", wire::kRepErrUnsup);
  auto tls = expect(wire::kOptStartTls, "", wire::kRepErrUnsup);
  CHECK_FALSE(tls.data.empty());  // with a message for a human
  // Lies about lengths.
  expect(wire::kOptList, "junk", wire::kRepErrInvalid);
  expect(wire::kOptStructuredReply, "x", wire::kRepErrInvalid);
  expect(wire::kOptGo, wire::Writer().u32(1000).bytes("vol").u16(0).str(), wire::kRepErrInvalid);
  expect(wire::kOptInfo, RawClient::go_data("vol") + "trailing", wire::kRepErrInvalid);
  expect(wire::kOptGo, wire::Writer().u32(3).bytes("vol").u16(5).u16(0).str(),
         wire::kRepErrInvalid);
  expect(wire::kOptGo, std::string(2, '\0'), wire::kRepErrInvalid);
  // Metadata contexts need structured replies first.
  expect(wire::kOptSetMetaContext,
         wire::Writer().u32(3).bytes("vol").u32(1).u32(15).bytes("base:allocation").str(),
         wire::kRepErrInvalid);
  expect(wire::kOptStructuredReply, "", wire::kRepAck);
  expect(wire::kOptSetMetaContext, wire::Writer().u32(3).bytes("vol").u32(1).u32(99).str(),
         wire::kRepErrInvalid);
  // A name longer than the protocol's 4 KiB limit.
  std::string long_name(5000, 'n');
  expect(wire::kOptGo, RawClient::go_data(long_name), wire::kRepErrInvalid);
  // An export that does not exist.
  auto unknown = expect(wire::kOptGo, RawClient::go_data("nope"), wire::kRepErrUnknown);
  CHECK(unknown.data.find("nope") != std::string::npos);
  // NBD_OPT_LIST, correctly.
  REQUIRE(c.option(wire::kOptList, ""));
  auto server = c.option_reply();
  CHECK(server.type == wire::kRepServer);
  CHECK(server.data == wire::Writer().u32(3).bytes("vol").str());
  CHECK(c.option_reply().type == wire::kRepAck);
  // After all that, GO works.
  REQUIRE(c.option(wire::kOptGo, RawClient::go_data("vol")));
  bool acked = false;
  for (int i = 0; i < 5 && !acked; ++i) {
    auto r = c.option_reply();
    REQUIRE(r.ok);
    CHECK((r.type == wire::kRepInfo || r.type == wire::kRepAck));
    acked = r.type == wire::kRepAck;
  }
  REQUIRE(acked);
  REQUIRE(c.request(wire::kCmdFlush, 0, 1, 0, 0));
  CHECK(c.simple_reply().error == 0);
}

TEST_CASE("oversized option data is refused and the connection closed") {
  NbdFixture f;
  RawClient c(f.socket());
  REQUIRE(c.greet());
  REQUIRE(c.send(wire::Writer().u64(wire::kOptionMagic).u32(wire::kOptGo).u32(1u << 30).str()));
  auto r = c.option_reply();
  REQUIRE(r.ok);
  CHECK(r.type == wire::kRepErrTooBig);
  CHECK(c.closed_by_server());
  check_still_serving(f);
}

TEST_CASE("NBD_OPT_ABORT is acknowledged and closes") {
  NbdFixture f;
  RawClient c(f.socket());
  REQUIRE(c.greet());
  REQUIRE(c.option(wire::kOptAbort, ""));
  CHECK(c.option_reply().type == wire::kRepAck);
  CHECK(c.closed_by_server());
  check_still_serving(f);
}

TEST_CASE("NBD_OPT_EXPORT_NAME: the old way in, with and without the 124 zeros") {
  NbdFixture f;
  for (bool no_zeroes : {true, false}) {
    CAPTURE(no_zeroes);
    RawClient c(f.socket());
    REQUIRE(c.greet(wire::kClientFixedNewstyle | (no_zeroes ? wire::kClientNoZeroes : 0)));
    REQUIRE(c.option(wire::kOptExportName, "vol"));
    std::string reply = c.recv(10 + (no_zeroes ? 0 : 124));
    REQUIRE(reply.size() == 10 + (no_zeroes ? 0 : 124));
    wire::Reader r(reply);
    CHECK(r.u64() == kVolBytes);
    uint16_t flags = r.u16();
    CHECK((flags & wire::kTransHasFlags) != 0);
    CHECK((flags & wire::kTransCanMultiConn) != 0);
    CHECK((flags & wire::kTransReadOnly) == 0);
    CHECK((flags & wire::kTransSendDf) == 0);  // no structured replies negotiated
    // Transmission works, with simple replies.
    REQUIRE(c.request(wire::kCmdWrite, wire::kCmdFlagFua, 7, 4096,
                      4096, std::string(4096, 'q')));
    auto w = c.simple_reply();
    CHECK(w.ok);
    CHECK(w.error == 0);
    CHECK(w.cookie == 7);
    REQUIRE(c.request(wire::kCmdRead, 0, 8, 4096, 4096));
    auto rd = c.simple_reply(4096);
    CHECK(rd.ok);
    CHECK(rd.data == std::string(4096, 'q'));
    REQUIRE(c.request(wire::kCmdDisc, 0, 9, 0, 0));
    CHECK(c.closed_by_server());
  }
  // An unknown name cannot be answered on this path: the connection is closed.
  RawClient c(f.socket());
  REQUIRE(c.greet());
  REQUIRE(c.option(wire::kOptExportName, "nope"));
  CHECK(c.closed_by_server());
  check_still_serving(f);
}

TEST_CASE("transmission: bad commands get errors, bad framing closes the connection") {
  NbdFixture f;
  for (bool structured : {false, true}) {
    CAPTURE(structured);
    RawClient c(f.socket());
    REQUIRE(c.enter("vol", structured));
    // Each error reply, simple or structured: returns the error number.
    auto error_of = [&](uint64_t cookie) -> uint32_t {
      if (!structured) {
        auto r = c.simple_reply();
        REQUIRE(r.ok);
        CHECK(r.cookie == cookie);
        return r.error;
      }
      std::string h = c.recv(20);
      REQUIRE(h.size() == 20);
      wire::Reader r(h);
      CHECK(r.u32() == wire::kStructuredReplyMagic);
      CHECK(r.u16() == wire::kReplyFlagDone);
      CHECK(r.u16() == wire::kReplyTypeError);
      CHECK(r.u64() == cookie);
      std::string payload = c.recv(r.u32());
      wire::Reader p(payload);
      uint32_t error = p.u32();
      uint16_t message_length = p.u16();
      CHECK(message_length == payload.size() - 6);
      CHECK(message_length > 0);
      return error;
    };
    c.request(42, 0, 1, 0, 4096);
    CHECK(error_of(1) == wire::kEinval);  // unknown command
    c.request(wire::kCmdCache, 0, 2, 0, 4096);
    CHECK(error_of(2) == wire::kEinval);  // not advertised
    c.request(wire::kCmdRead, 0, 3, kVolBytes, 4096);
    CHECK(error_of(3) == wire::kEinval);  // past the end
    c.request(wire::kCmdRead, 0, 4, 512, 4096);
    CHECK(error_of(4) == wire::kEinval);  // misaligned
    c.request(wire::kCmdRead, 0, 5, 0, 64u << 20);
    CHECK(error_of(5) == wire::kEinval);  // over the maximum payload
    c.request(wire::kCmdFlush, 0, 6, 4096, 0);
    CHECK(error_of(6) == wire::kEinval);  // FLUSH with an offset
    c.request(wire::kCmdWrite, 0, 7, 100, 4096, std::string(4096, 'x'));
    CHECK(error_of(7) == wire::kEinval);  // misaligned write: payload consumed, no framing loss
    c.request(wire::kCmdWrite, 0, 8, kVolBytes, 4096, std::string(4096, 'x'));
    CHECK(error_of(8) == wire::kEnospc);  // write past the end
    c.request(wire::kCmdWrite, 0x40, 9, 0, 4096, std::string(4096, 'x'));
    CHECK(error_of(9) == wire::kEinval);  // an unknown flag
    c.request(wire::kCmdBlockStatus, 0, 10, 0, 4096);
    CHECK(error_of(10) == wire::kEinval);  // no metadata context negotiated
    c.request(wire::kCmdTrim, 0, 11, 0, 0);
    CHECK(error_of(11) == wire::kEinval);  // zero length
    // Still in step: a good read.
    c.request(wire::kCmdRead, 0, 12, 0, 4096);
    if (!structured) {
      auto r = c.simple_reply(4096);
      CHECK(r.ok);
      CHECK(r.error == 0);
    } else {
      std::string h = c.recv(20);
      REQUIRE(h.size() == 20);
      wire::Reader r(h);
      r.u32();
      r.u16();
      CHECK(r.u16() == wire::kReplyTypeOffsetData);
      CHECK(r.u64() == 12);
      CHECK(r.u32() == 8 + 4096);
      CHECK(c.recv(8 + 4096).size() == 8 + 4096);
    }
    // A bad request magic: the connection is dropped.
    c.send(wire::Writer().u32(0xdeadbeef).u16(0).u16(0).u64(13).u64(0).u32(4096).str());
    CHECK(c.closed_by_server());
  }
  check_still_serving(f);
}

TEST_CASE("a write payload over the maximum is refused, then the connection closed") {
  NbdFixture f;
  RawClient c(f.socket());
  REQUIRE(c.enter("vol"));
  c.request(wire::kCmdWrite, 0, 1, 0, 64u << 20);
  c.send(std::string(65536, 'z'));  // the start of a payload the server will not take
  auto r = c.simple_reply();
  REQUIRE(r.ok);
  CHECK(r.error == wire::kEinval);
  CHECK(c.closed_by_server());
  check_still_serving(f);
}

TEST_CASE("a client that vanishes mid-write or with requests in flight harms no one") {
  PoolFixture pf(256 * kMiB);
  pf.create("vol", kVolBytes);
  WrappedExports<DelayVolume> exports(*pf.pool, 200u);
  nbd::ServerOptions options;
  options.unix_path = pf.dir / "nbd.sock";
  auto started = nbd::Server::start(options, exports);
  REQUIRE(started.has_value());
  auto& server = *started.value();

  SUBCASE("half a write payload, then gone") {
    RawClient c(options.unix_path);
    REQUIRE(c.enter("vol"));
    c.request(wire::kCmdWrite, 0, 1, 0, 1 << 20);
    c.send(std::string(300 * 1024, 'h'));
    c.close();
  }
  SUBCASE("64 requests in the engine, then gone without reading a reply") {
    RawClient c(options.unix_path);
    REQUIRE(c.enter("vol", true));
    for (uint64_t i = 0; i < 32; ++i) {
      c.request(wire::kCmdWrite, 0, i, i * 262144, 262144, std::string(262144, 'w'));
      c.request(wire::kCmdRead, 0, 100 + i, i * 262144, 262144);
    }
    // The requests are parsed and held in the (slow) engine.
    for (int i = 0; i < 300 && exports.last()->inflight() < 32; ++i)
      std::this_thread::sleep_for(10ms);
    CHECK(exports.last()->inflight() >= 32);
    c.close();
    // The connection ends only once the engine has completed everything it was given.
    for (int i = 0; i < 500 && server.connections() != 0; ++i) std::this_thread::sleep_for(10ms);
    CHECK(exports.last()->inflight() == 0);
  }
  for (int i = 0; i < 500 && server.connections() != 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(server.connections() == 0);
  NbdClient good("nbd+unix:///vol?socket=" + options.unix_path);
  REQUIRE(good.connected());
  CHECK(good.pwrite(pattern(4096, 5), 0) == 0);
  CHECK(good.read(0, 4096) == pattern(4096, 5));
  server.stop();
}

TEST_CASE("a client that never reads its replies stalls only itself") {
  nbd::ServerOptions options;
  options.drain_timeout_ms = 500;
  NbdFixture f(256 * kMiB, options);
  RawClient greedy(f.socket());
  REQUIRE(greedy.enter("vol"));
  // Far more read replies than socket buffers hold: the server stops reading from this
  // client once its limits are reached.
  std::string requests;
  for (uint64_t i = 0; i < 400; ++i)
    requests += wire::Writer()
                    .u32(wire::kRequestMagic)
                    .u16(0)
                    .u16(wire::kCmdRead)
                    .u64(i)
                    .u64((i % 32) * kMiB)
                    .u32(1 << 20)
                    .str();
  std::thread sender([&] { greedy.send(requests); });
  std::this_thread::sleep_for(300ms);
  {
    NbdClient good(f.uri());
    REQUIRE(good.connected());
    CHECK(good.pwrite(pattern(4096, 8), 0) == 0);
    CHECK(good.read(0, 4096) == pattern(4096, 8));
  }
  // Stopping the server ends the stalled connection once the drain timeout passes.
  auto start = std::chrono::steady_clock::now();
  f.stop();
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  CHECK(greedy.closed_by_server());
  greedy.close();
  sender.join();
}

}  // namespace
}  // namespace pxd::testing
