// pxd-nbd-relay: the NBD server nbdfuse runs for an attached volume on a host without
// ublk (`nbdfuse FILE --command pxd-nbd-relay --socket S --export NAME`). It forwards to
// pxd's NBD socket and rides out pxd restarts; see relay.h. pxd starts it; operators do
// not need to.
#include <csignal>
#include <iostream>

#include <CLI/CLI.hpp>

#include "common/log.h"
#include "common/units.h"
#include "tools/nbd-relay/relay.h"

int main(int argc, char** argv) {
  CLI::App app{"pxd-nbd-relay: NBD relay between nbdfuse and pxd (stdin/stdout)",
               "pxd-nbd-relay"};
  pxd::relay::Options options;
  std::string limit = "64M";
  app.add_option("--socket", options.socket_path, "pxd's NBD unix socket")->required();
  app.add_option("--export", options.export_name, "volume or snapshot name")->required();
  app.add_option("--unflushed-limit", limit, "bytes of unflushed writes kept for replay");
  app.add_option("--give-up", options.give_up_seconds,
                 "seconds to wait for pxd before failing I/O (default 0: forever)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto bytes = pxd::parse_size(limit, 1);
  if (!bytes.has_value() || bytes.value() == 0) {
    std::cerr << "pxd-nbd-relay: bad --unflushed-limit '" << limit << "'\n";
    return 2;
  }
  options.unflushed_limit = bytes.value();
  std::signal(SIGPIPE, SIG_IGN);
  pxd::relay::Relay relay(options);
  pxd::Status s = relay.run();
  if (!s.is_ok()) {
    PXD_LOG(kError) << "relay for '" << options.export_name << "': " << s.message();
    return 1;
  }
  return 0;
}
