// daemon/nbd_loop_frontend.h: attaching a volume where the kernel has no ublk.
//
// pxd's NBD export -> nbdfuse (running pxd-nbd-relay as its NBD server) -> a file under
// <run dir>/attach/<id>/fuse -> a loop device with direct I/O and the volume's block
// size. nbdfuse and the relay run in their own session, outside pxd, so a pxd restart
// does not take the device away: the relay waits for pxd and reconnects (relay.h).
//
// Thread safety: called by the AttachManager under its mutex.
#pragma once

#include <cstdint>
#include <string>

#include "daemon/attach.h"

namespace pxd::daemon {

struct NbdLoopConfig {
  std::string run_dir;         // e.g. /run/pxd; attachments live in run_dir/attach/<id>
  std::string nbd_socket;      // pxd's NBD unix socket ("" = disabled)
  std::string relay_binary;    // pxd-nbd-relay
  std::string nbdfuse_binary = "nbdfuse";
};

class NbdLoopFrontend final : public Frontend {
 public:
  explicit NbdLoopFrontend(NbdLoopConfig config) : config_(std::move(config)) {}

  std::string name() const override { return "nbd-loop"; }
  Status available() const override;
  Status attach(const AttachTarget& target, Attachment& att) override;
  Status detach(const Attachment& att, bool force) override;
  // Checks that nbdfuse, its FUSE file and the loop device are all still there; the
  // relay reconnects to the new pxd by itself.
  Status adopt(const AttachTarget& target, Attachment& att) override;
  void remove_stale(const std::vector<Attachment>& known) override;
  // kUnsupported: nbdfuse fixes the file's size when it starts.
  Status resize(Attachment& att, uint64_t size_bytes) override;
  // Nothing to do: nbdfuse and the relay live outside pxd and wait for the next one.
  void release_all() override {}

 private:
  std::string dir_of(uint64_t volume_id) const;
  std::string attach_root() const { return config_.run_dir + "/attach"; }

  const NbdLoopConfig config_;
};

// Where pxd-nbd-relay is: beside an installed pxd (../libexec/pxd/), in the build tree
// (../tools/nbd-relay/), or on PATH.
std::string find_relay_binary();

}  // namespace pxd::daemon
