// bench/peers_bench.h: `pxbench peers`: pxd's NBD server against the userspace block
// servers people use today, all driven by fio's nbd engine in the same run.
//
// Targets, each given a fresh file or pool on the same filesystem, all bypassing the page
// cache where the server can:
//   pxd              the NBD server (nbd/server.h) over a pool, in this process (O_DIRECT)
//   pxd-64snap       the same with 64 snapshots in the volume's chain, each taken after
//                    rewriting a different 1/64 of the volume; then the whole volume is
//                    rewritten once, so measured writes overwrite (as on every other
//                    target) instead of paying the copy-on-write after the last snapshot
//   qemu-nbd-raw     qemu-nbd --cache=none --aio=io_uring on a raw file (O_DIRECT)
//   qemu-nbd-qcow2   the same on a qcow2 image
//   nbdkit-file      nbdkit's file plugin, cache=none. nbdkit 1.32 has no O_DIRECT: it
//                    reads and writes through the page cache and then evicts the pages
//                    (starting writeback of each write), so its writes are answered
//                    before they reach the disk; the one target with other caching
// Every target is preloaded (its whole region written sequentially) before any case, so
// reads read data and writes overwrite. Cases: 4 KiB random read and write, 1 MiB
// sequential read and write, each at queue depth 1 and 32, over one and four connections.
// Targets alternate within each round, and each figure is the median over the rounds.
//
// Rows: each case, pxd against the best peer (target: at least 1.0x); 4 KiB random write
// against qemu-nbd on qcow2 (at least 1.5x); queue-depth-1 mean latency against the best
// peer (within 10%); pxd-64snap against pxd (at least 0.9x).
#pragma once

#include "bench/bench.h"

namespace pxd::bench {

void run_peers(const BenchOptions& options, Report& report);

}  // namespace pxd::bench
