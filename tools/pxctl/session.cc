#include <iostream>

#include "tools/pxctl/args.h"
#include "tools/pxctl/commands.h"

namespace pxd::pxctl {

Client& Session::client() {
  if (!client_) {
    client_ = Client::connect(globals_.socket, std::chrono::seconds(globals_.timeout_seconds));
  }
  return *client_;
}

void Session::print(const std::string& text) {
  std::cout << text << std::flush;
}

CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto size = parse_size_flag(text);
        return size.has_error() ? size.error().message() : std::string();
      },
      "");
}

CLI::Validator label_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto labels = parse_labels({text});
        return labels.has_error() ? labels.error().message() : std::string();
      },
      "");
}

CLI::Option* add_label_option(CLI::App& cmd, std::vector<std::string>& values,
                              const std::string& help) {
  // One value per flag, so a positional after --label is not taken as a label.
  return cmd.add_option("-l,--label", values, help)
      ->check(label_validator())
      ->allow_extra_args(false)
      ->type_name("K=V,...");
}

std::string command_path(const CLI::App& app) {
  std::string path = app.get_name();
  for (const CLI::App* parent = app.get_parent(); parent != nullptr; parent = parent->get_parent())
    path = parent->get_name() + " " + path;
  return path;
}

}  // namespace pxd::pxctl
