// tests/unit/nbd/nbd_fixture.h: an NBD server in this process, over a private pool.
//
// PoolExports serves every volume and snapshot of the pool (as the daemon's Node does).
// NbdFixture starts a Server on a unix socket in the test's temp dir and stops it (with
// every connection) when the test ends. Clients are real: libnbd (nbd_client.h), the
// libnbd and qemu tools, fio, or the raw socket clients of the bad-client tests.
#pragma once

#include <doctest/doctest.h>
#include <libnbd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/log.h"
#include "nbd/server.h"
#include "tests/support/pool_fixture.h"

namespace pxd::testing {

class PoolExports : public nbd::ExportProvider {
 public:
  explicit PoolExports(Pool& pool) : pool_(pool) {}
  Result<std::shared_ptr<Volume>> open_export(const std::string& name) override {
    return pool_.open_volume(name);
  }
  std::vector<std::string> list_exports() override {
    std::vector<std::string> names;
    for (const ObjectInfo& info : pool_.list()) names.push_back(info.name);
    return names;
  }

 private:
  Pool& pool_;
};

struct NbdFixture : PoolFixture {
  // `pool_bytes` of sparse pool; a 32 MiB volume "vol" is created.
  explicit NbdFixture(uint64_t pool_bytes = 256 * kMiB, nbd::ServerOptions options = {},
                      uint32_t chunk = kTestChunk)
      : PoolFixture(pool_bytes, chunk), exports(*pool) {
    if (const char* level = std::getenv("PXD_TEST_LOG")) {
      log::Level l;
      if (log::parse_level(level, &l)) log::set_level(l);
    }
    create("vol", 32 * kMiB);
    options.unix_path = dir / "nbd.sock";
    start(options);
  }
  ~NbdFixture() { stop(); }

  void start(const nbd::ServerOptions& options) {
    auto s = nbd::Server::start(options, exports);
    REQUIRE_MESSAGE(s.has_value(), s.error().to_string());
    server = std::move(s).value();
  }
  void stop() {
    if (server) server->stop();
    server.reset();
  }
  std::string socket() const { return dir / "nbd.sock"; }
  // nbd+unix:///NAME?socket=PATH
  std::string uri(const std::string& name = "vol") const {
    return "nbd+unix:///" + name + "?socket=" + socket();
  }

  PoolExports exports;
  std::unique_ptr<nbd::Server> server;
};

}  // namespace pxd::testing
