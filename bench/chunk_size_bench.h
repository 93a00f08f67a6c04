// bench/chunk_size_bench.h: `pxbench chunk-size`: what each chunk size (64 KiB to 4 MiB)
// costs, so that the default can be chosen by measurement:
//   (a) copy-on-write: 4 KiB random writes at queue depth 32 after a snapshot of a
//       written volume (each first write to a chunk copies it): IOPS and bytes copied;
//   (b) fresh-thin 4 KiB random write IOPS (most writes allocate a chunk);
//   (c) metadata bytes and memory per GiB of random 4 KiB writes;
//   (d) 4 KiB random read IOPS.
// Raw O_DIRECT random read and write on the same filesystem are measured once for scale.
#pragma once

#include "bench/bench.h"

namespace pxd::bench {

void run_chunk_size(const BenchOptions& options, Report& report);

}  // namespace pxd::bench
