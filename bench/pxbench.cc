// pxbench: measures the pxd engine against raw I/O on the same filesystem, in one run.
//
//   pxbench engine     [--dir DIR] [--quick|--smoke] [--json] [--seconds S] [--size BYTES]
//                      [--only TEXT]
//   pxbench chunk-size [--dir DIR] [--quick|--smoke] [--json] [--seconds S]
//   pxbench peers      [--dir DIR] [--quick|--smoke] [--json] [--seconds S] [--size BYTES]
//                      [--only TEXT]
//
// Results go to stdout (a table, or one JSON object per line with --json); progress goes
// to stderr. Everything is created in a fresh DIR/pxbench-XXXXXX (and /dev/shm for the
// CPU figures), removed on every exit path including SIGINT. Figures that miss their
// target are listed on stderr but do not fail the run: the exit status says whether the
// benchmark ran (0), failed (1) or was interrupted (130).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <iostream>

#include "bench/bench.h"
#include "bench/chunk_size_bench.h"
#include "bench/engine_bench.h"
#include "bench/memory_probe.h"
#include "bench/peers_bench.h"
#include "common/units.h"

namespace {

using namespace pxd::bench;

std::string self_path(const char* argv0) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return argv0;
  return std::string(buf, static_cast<size_t>(n));
}

void add_common(CLI::App* cmd, BenchOptions& o) {
  cmd->add_option("--dir", o.dir, "filesystem to measure on (scratch in DIR/pxbench-XXXXXX)")
      ->capture_default_str();
  cmd->add_flag("--quick", o.quick, "a shorter run (under a minute)");
  cmd->add_flag("--smoke", o.smoke, "every case very briefly: checks that the benchmark runs");
  cmd->add_flag("--json", o.json, "one JSON object per result line");
  cmd->add_option("--seconds", o.seconds, "time budget of each measured case");
}

}  // namespace

int main(int argc, char** argv) {
  install_interrupt_handlers();
  BenchOptions options;
  options.self = self_path(argv[0]);
  std::string size_text;
  MemoryProbeSpec probe;

  CLI::App app{"pxbench: the pxd engine against raw O_DIRECT io_uring I/O", "pxbench"};
  app.require_subcommand(1);
  CLI::App* engine = app.add_subcommand("engine", "data path, snapshots, CPU, metadata, memory");
  add_common(engine, options);
  engine->add_option("--size", size_text, "volume and raw file size (e.g. 1G, 256M)");
  engine->add_option("--only", options.only,
                     "run only the parts with a case whose name contains this");
  CLI::App* chunk = app.add_subcommand("chunk-size", "the trade-offs of each chunk size");
  add_common(chunk, options);
  CLI::App* peers = app.add_subcommand(
      "peers", "pxd's NBD server against qemu-nbd (raw, qcow2) and nbdkit, through fio");
  add_common(peers, options);
  peers->add_option("--size", size_text, "bytes per target (e.g. 1G, 256M)");
  peers->add_option("--only", options.only, "run only the cases whose name contains this");
  CLI::App* mem = app.add_subcommand("memory-probe", "(internal) one metadata/memory probe");
  mem->group("");
  mem->add_option("--dir", probe.dir)->required();
  mem->add_option("--chunk-size", probe.chunk_size)->required();
  mem->add_option("--volume-size", probe.volume_bytes)->required();
  mem->add_option("--write", probe.write_bytes)->required();
  mem->add_option("--seconds", probe.max_seconds);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!size_text.empty()) {
    auto size = pxd::parse_size(size_text, 1);
    if (size.has_error()) {
      std::cerr << "pxbench: --size: " << size.error() << "\n";
      return 2;
    }
    options.size = size.value();
  }

  Report report(options.json);
  int status = 0;
  try {
    if (*mem) {
      std::cout << run_memory_probe(probe).to_json().dump() << std::endl;
      return 0;
    }
    if (*engine) {
      run_engine(options, report);
    } else if (*peers) {
      run_peers(options, report);
    } else {
      run_chunk_size(options, report);
    }
  } catch (const Interrupted&) {
    progress("interrupted; scratch files removed");
    status = 130;
  } catch (const BenchError& e) {
    progress(std::string("error: ") + e.what());
    status = 1;
  } catch (const std::exception& e) {
    progress(std::string("error: ") + e.what());
    status = 1;
  }
  if (!options.json && !report.rows().empty() && (*engine || *peers || status != 0)) {
    std::cout << "pxbench " << (*engine ? "engine" : *peers ? "peers" : "chunk-size") << " on "
              << options.dir << " ("
              << describe_filesystem(options.dir) << ")\n";
    report.print_table();
  }
  report.print_misses();
  return status;
}
