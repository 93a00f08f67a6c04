// tools/pxctl/commands.h: the verbs of pxctl and what they share.
//
// main() builds the CLI11 tree; each add_*_commands() adds its verbs. A verb's CLI11
// callback checks its arguments (a bad one is a CLI::ValidationError, so it is a usage
// error like any other) and stores in *action what to run; main() runs the action after
// parsing, with a Session that connects to pxd on first use (so `pxctl version` can print
// the client's version when pxd is down).
//
// Thread safety: single-threaded, like pxctl.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "tools/pxctl/client.h"
#include "tools/pxctl/render.h"

namespace pxd::pxctl {

// Flags accepted before or after any verb.
struct Globals {
  bool json = false;
  std::string socket = kDefaultSocket;
  int timeout_seconds = 60;
};

class Session {
 public:
  explicit Session(const Globals& globals) : globals_(globals) {}

  bool json() const { return globals_.json; }
  // Connects and says hello on first use. Throws CommandError.
  Client& client();
  // Writes to stdout.
  void print(const std::string& text);
  void print_json(const Json& json) { print(json_text(json)); }

 private:
  const Globals& globals_;
  std::unique_ptr<Client> client_;
};

using Action = std::function<void(Session&)>;

void add_node_commands(CLI::App& app, Action* action);         // status, version, service
void add_volume_commands(CLI::App& app, Action* action);       // volume ...
void add_snapshot_commands(CLI::App& volume, Action* action);  // volume snapshot ...
void add_host_commands(CLI::App& app, Action* action);         // host attach, mount, ...
void add_transfer_commands(CLI::App& volume, Action* action);  // volume import, export

// A --size value (pxctl::parse_size_flag).
CLI::Validator size_validator();
// A --label value (pxctl::parse_labels).
CLI::Validator label_validator();
// Adds "-l,--label" collecting one value per flag into `values`.
CLI::Option* add_label_option(CLI::App& cmd, std::vector<std::string>& values,
                              const std::string& help);

// "pxctl volume create" for the command `app` is.
std::string command_path(const CLI::App& app);

}  // namespace pxd::pxctl
