// tools/pxctl/completion.h: what bash completion offers, read from the same CLI11 tree the
// parser uses, so completion cannot fall behind the verbs and flags.
//
// pxctl.bash-completion runs `pxctl __complete WORD... CUR`, where the WORDs are those
// typed after `pxctl` before the word being completed and CUR is that word (maybe empty).
// The answer is one candidate per line: the verbs under the command the WORDs reach, or,
// when CUR starts with '-', the flags valid there (the command's and, since global flags
// may follow a verb, its parents'); after a flag that takes a value, that value's fixed
// choices when its check lists them, or the single line ":files" for a path. Hidden
// commands and flags are never offered.
//
// Thread safety: single-threaded, like pxctl.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace pxd::pxctl {

inline constexpr const char* kCompleteVerb = "__complete";

// The candidates for `words` (the last one is the word being completed), in order.
std::vector<std::string> completions(const CLI::App& app, const std::vector<std::string>& words);

}  // namespace pxd::pxctl
