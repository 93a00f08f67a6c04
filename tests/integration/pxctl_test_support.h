// tests/integration/pxctl_test_support.h: what the pxctl end-to-end tests share: running
// the real pxctl binary against a PxdProcess and judging what it printed (JSON on stdout,
// one "pxctl: ..." line on stderr, the exit code doc/control-api.md gives).
//
// Thread safety: the functions that return values may run on any thread; those that
// assert (ok_json, require_ok_json) use doctest and belong on the test's thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/process.h"

namespace pxd::testing {

using Json = nlohmann::json;

inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;

// pxctl --socket SOCKET -j ARGS...
RunResult pxctl_json(const std::string& socket, const std::vector<std::string>& args);

// "pxctl -j volume create ..." with the exit code and both streams, for failure messages.
std::string describe(const std::vector<std::string>& args, const RunResult& result);

// Parses stdout as JSON; a discarded (is_discarded()) value when it is not JSON.
Json parse_stdout(const RunResult& result);

// Runs pxctl -j ARGS and checks (CHECK) that it exited 0 and printed JSON; returns the
// JSON, or null after a failed check.
Json ok_json(const std::string& socket, const std::vector<std::string>& args);

// Empty when `result` is a clean failure with exit code `exit_code`: nothing on stdout,
// exactly one line on stderr starting "pxctl: " and containing `needle`. Otherwise says
// what was wrong.
std::string error_mismatch(const RunResult& result, int exit_code, const std::string& needle);

// Whether stderr is exactly one "pxctl: ..." line.
bool one_error_line(const std::string& err);

// The names in a JSON array of volumes, in order.
std::vector<std::string> names_of(const Json& volumes);

// The line of `text` that contains `needle`, or "" if none.
std::string line_with(const std::string& text, const std::string& needle);

}  // namespace pxd::testing
