// pxctl: the command line of pxd. Parses the command, connects to pxd's control socket,
// runs the verb and exits with the code doc/control-api.md gives for the outcome.
#include <csignal>
#include <iostream>

#include "tools/pxctl/commands.h"
#include "tools/pxctl/completion.h"
#include "tools/pxctl/errors.h"

namespace {

using namespace pxd::pxctl;

// The deepest command the parser entered, for the "--help" hint of a usage error.
const CLI::App& deepest_command(const CLI::App& app) {
  const CLI::App* current = &app;
  while (!current->get_subcommands().empty()) current = current->get_subcommands().front();
  return *current;
}

// CLI11's "A subcommand is required" says neither which nor what was wrong.
std::string usage_message(const CLI::ParseError& e, const CLI::App& command) {
  if (dynamic_cast<const CLI::RequiredError*>(&e) == nullptr || command.get_subcommands({}).empty())
    return e.what();
  // With fallthrough, an unknown word lands in the parent that gave up on it.
  for (const CLI::App* app = &command; app != nullptr; app = app->get_parent()) {
    std::vector<std::string> rest = app->remaining();
    if (!rest.empty()) return "unknown command '" + rest.front() + "'";
  }
  return "missing command";
}

// Subcommands' --help does not list the root's flags; say they exist.
void add_global_footer(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands({})) {
    sub->footer(
        "Global options, before or after the command:\n"
        "  -j,--json          Print JSON instead of tables\n"
        "  --socket PATH      pxd's control socket (env PXD_SOCKET; default " +
        std::string(kDefaultSocket) +
        ")\n"
        "  --timeout SECONDS  Seconds to wait for pxd (default 60)\n");
    add_global_footer(*sub);
  }
}

int fail(const CommandError& error) {
  std::cerr << error_line(error) << std::endl;
  return error.exit_code();
}

}  // namespace

int main(int argc, char** argv) {
  // A closed stdout or socket is an error to report, not a signal to die of.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app("pxctl: manage pxd, container-native block storage", "pxctl");
  // Subcommands made after this inherit it: global flags may follow the verb.
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("pxctl ") + kClientVersion);
  Globals globals;
  app.add_flag("-j,--json", globals.json, "Print JSON instead of tables");
  app.add_option("--socket", globals.socket, "pxd's control socket")
      ->envname("PXD_SOCKET")
      ->capture_default_str()
      ->type_name("PATH");
  app.add_option("--timeout", globals.timeout_seconds, "Seconds to wait for pxd")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();

  Action action;
  add_node_commands(app, &action);
  add_volume_commands(app, &action);
  add_host_commands(app, &action);
  add_global_footer(app);

  // Bash completion asks the same tree the parser uses (tools/pxctl/completion.h).
  if (argc >= 2 && std::string(argv[1]) == kCompleteVerb) {
    for (const std::string& c : completions(app, std::vector<std::string>(argv + 2, argv + argc)))
      std::cout << c << '\n';
    return kExitOk;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    const CLI::App& command = deepest_command(app);
    return fail(CommandError(kExitUsage, usage_message(e, command), command_path(command)));
  }
  if (!action) return fail(CommandError(kExitUsage, "no command given", "pxctl"));

  Session session(globals);
  try {
    action(session);
  } catch (const CommandError& e) {
    return fail(e);
  } catch (const kj::Exception& e) {
    return fail(
        CommandError(kExitFailed, std::string("internal error: ") + e.getDescription().cStr()));
  } catch (const std::exception& e) {
    return fail(CommandError(kExitFailed, std::string("internal error: ") + e.what()));
  }
  std::cout.flush();
  if (!std::cout) return fail(CommandError(kExitFailed, "cannot write to standard output"));
  return kExitOk;
}
