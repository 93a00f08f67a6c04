// Bash completion: `pxctl __complete` read from the parser's own tree, and the installed
// script (tools/pxctl/pxctl.bash-completion) driven by a real bash as readline would.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "tests/unit/pxctl/fake_pxd.h"

namespace pxd::testing {

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::string> complete(std::vector<std::string> words) {
  words.insert(words.begin(), "__complete");
  Run run = run_pxctl(words);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.err.empty());
  return lines(run.out);
}

bool has(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// What the script puts in COMPREPLY for the command line `line` with the cursor at its end
// (a trailing space starts a new, empty word), in a bash without bash-completion loaded.
std::vector<std::string> bash_complete(const std::string& line, const std::string& cwd = "/") {
  std::string script = std::string(PXD_SOURCE_DIR) + "/tools/pxctl/pxctl.bash-completion";
  std::string program = "source '" + script +
                        "' || exit 9\n"
                        "cd '" +
                        cwd +
                        "' || exit 9\n"
                        "COMP_LINE=\"$1\"; COMP_POINT=${#COMP_LINE}\n"
                        "read -ra COMP_WORDS <<<\"$COMP_LINE\"\n"
                        "[[ \"$COMP_LINE\" == *' ' ]] && COMP_WORDS+=('')\n"
                        "COMP_WORDS[0]=\"$2\"\n"
                        "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
                        "_pxctl\n"
                        "printf '%s\\n' \"${COMPREPLY[@]}\"\n";
  Run run = run_program({"/bin/bash", "--norc", "-c", program, "bash", line, PXCTL_PATH});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  std::vector<std::string> out = lines(run.out);
  std::erase(out, "");
  return out;
}

}  // namespace

TEST_CASE("__complete: verbs at each level, hidden ones never") {
  auto top = complete({""});
  for (const char* verb : {"status", "version", "volume", "host", "service"}) {
    CAPTURE(verb);
    CHECK(has(top, verb));
  }
  CHECK_FALSE(has(top, "__complete"));
  CHECK(complete({"host", ""}) == std::vector<std::string>{"attach", "detach", "mount", "unmount"});
  CHECK(complete({"volume", "sn"}) == std::vector<std::string>{"snapshot"});
  CHECK(complete({"volume", "snapshot", ""}) ==
        std::vector<std::string>{"create", "list", "delete"});
  CHECK(complete({"service", "pool", ""}) == std::vector<std::string>{"show"});
  // Global flags before the verb do not change where completion stands.
  CHECK(complete({"--socket", "/x.sock", "-j", "host", "d"}) == std::vector<std::string>{"detach"});
  // Past a positional argument the verb is still the one typed.
  CHECK(complete({"volume", "create", "db", "xyz"}).empty());
}

TEST_CASE("__complete: flags of the verb and the global ones, by prefix") {
  auto create = complete({"volume", "create", "--"});
  for (const char* flag :
       {"--size", "--fs", "--block_size", "--label", "--repl", "--json", "--socket", "--help"}) {
    CAPTURE(flag);
    CHECK(has(create, flag));
  }
  CHECK_FALSE(has(create, "--snapshot"));  // restore's, not create's
  CHECK(complete({"volume", "restore", "--sn"}) == std::vector<std::string>{"--snapshot"});
  auto short_flags = complete({"volume", "create", "-"});
  CHECK(has(short_flags, "-s"));
  CHECK(has(short_flags, "-j"));
}

TEST_CASE("__complete: fixed values of a flag, and files for paths") {
  CHECK(complete({"volume", "create", "db", "--fs", ""}) ==
        std::vector<std::string>{"ext4", "xfs", "none"});
  CHECK(complete({"volume", "create", "--fs", "x"}) == std::vector<std::string>{"xfs"});
  auto block = complete({"volume", "create", "-b", ""});
  CHECK(has(block, "4096"));
  CHECK(has(block, "512"));
  CHECK(complete({"volume", "import", "vm", "--from", ""}) == std::vector<std::string>{":files"});
  CHECK(complete({"volume", "export", "db", "--to", "/tm"}) == std::vector<std::string>{":files"});
  // A flag with a free-form value offers nothing (not verbs), a flag=value is skipped.
  CHECK(complete({"volume", "create", "--size", ""}).empty());
  CHECK(complete({"volume", "create", "--size=1", "--f"}) == std::vector<std::string>{"--fs"});
}

TEST_CASE("the bash completion script offers what __complete answers") {
  CHECK(bash_complete("pxctl host ") ==
        std::vector<std::string>{"attach", "detach", "mount", "unmount"});
  CHECK(bash_complete("pxctl vol") == std::vector<std::string>{"volume"});
  CHECK(bash_complete("pxctl volume create db --fs x") == std::vector<std::string>{"xfs"});
  // Paths complete as file names, relative to the shell's directory.
  CHECK(bash_complete("pxctl volume import vm --from bi", "/") == std::vector<std::string>{"bin"});
  CHECK(bash_complete("pxctl nosuchverb ").empty());
}

}  // namespace pxd::testing
