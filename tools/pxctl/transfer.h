// tools/pxctl/transfer.h: copying whole volumes in and out of pxd (volume import/export).
//
// The copy is nbdcopy's (libnbd's own sparse-aware copier, Debian package libnbd-bin): it
// reads extents (SEEK_DATA on files, NBD block status on exports) and skips holes, runs
// several requests in parallel, and flushes at the end. pxctl adds what the operator sees
// (a progress line with bytes, rate and ETA on a terminal, quiet otherwise) and cleanup
// when a copy fails or is interrupted. Why nbdcopy and not our own loop: doc/attach.md.
//
// Thread safety: single-threaded, like pxctl.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pxd::pxctl {

// One end of a copy: a file or block device, or an NBD URI (nbd://, nbds://, nbd+unix://,
// nbds+unix://, nbd+vsock://). A qcow2 file is read through qemu-nbd.
struct Endpoint {
  std::string text;               // what the user gave
  std::vector<std::string> args;  // nbdcopy's arguments for it
  bool is_file = false;
};

bool is_nbd_uri(const std::string& text);
// The URI of export `name` on pxd's unix socket `socket`.
std::string pxd_export_uri(const std::string& socket, const std::string& name);
// Classifies `text` as a copy source. Throws CommandError (usage) if it cannot be read.
Endpoint source_endpoint(const std::string& text);
// Its size in bytes (files: stat or the block device's size; others: nbdinfo --size).
uint64_t source_size(const Endpoint& source);

struct CopyOptions {
  uint64_t size = 0;                  // bytes the copy covers (for the progress line)
  bool destination_is_zero = false;   // skip writing zeros (a fresh volume or file)
  bool progress = false;              // draw the progress line on stderr
};

// Runs nbdcopy from `source` to `destination`. Throws CommandError when it fails, or when
// SIGINT/SIGTERM arrive (nbdcopy is stopped first); the caller then removes what it made.
void run_copy(const Endpoint& source, const Endpoint& destination, const CopyOptions& options);

// "1.5 GiB / 10 GiB  230 MiB/s  ETA 24s" style line for `done` of `total` after `seconds`.
std::string progress_line(uint64_t done, uint64_t total, double seconds);

}  // namespace pxd::pxctl
