// daemon/subprocess.h: running the host tools pxd drives (mkfs, nbdfuse).
//
// run_command() runs a program to completion with a deadline and returns its exit code
// and combined output (for error messages). spawn_detached() starts a long-lived helper
// in its own session, not as pxd's child, so it survives pxd restarts (the NBD fallback's
// nbdfuse must: it holds the FUSE file under a mounted filesystem).
//
// Thread safety: both may be called from any thread; they block the caller.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace pxd::daemon {

struct CommandResult {
  int exit_code = -1;  // -signal if killed
  std::string output;  // stdout and stderr, truncated to 64 KiB
};

// Fails only if the program could not run or timed out (then it is killed).
Result<CommandResult> run_command(const std::vector<std::string>& argv,
                                  std::chrono::milliseconds timeout);

// Starts argv in a new session with stdin from /dev/null and output appended to
// `log_path`; returns its pid. The process is reparented to init (or the nearest
// subreaper) at once, so pxd never has to reap it.
Result<pid_t> spawn_detached(const std::vector<std::string>& argv, const std::string& log_path);

// Whether `pid` names a live process whose command is `comm` (guards against pid reuse).
bool process_alive(pid_t pid, const std::string& comm);

}  // namespace pxd::daemon
