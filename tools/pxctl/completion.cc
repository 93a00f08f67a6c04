#include "tools/pxctl/completion.h"

#include <algorithm>
#include <sstream>

namespace pxd::pxctl {
namespace {

bool visible(const CLI::App* app) {
  return !app->get_group().empty();
}

const CLI::App* find_subcommand(const CLI::App& app, const std::string& word) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (!sub->get_name().empty() && sub->check_name(word)) return sub;
  }
  return nullptr;
}

// The flag `word` names at `app`: its own, or a parent's (global flags may follow a verb).
const CLI::Option* find_flag(const CLI::App* app, const std::string& word) {
  for (; app != nullptr; app = app->get_parent()) {
    if (const CLI::Option* opt = app->get_option_no_throw(word)) return opt;
  }
  return nullptr;
}

bool takes_value(const CLI::Option* opt) {
  return opt->get_items_expected_max() > 0;  // flags expect none
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, sep);) parts.push_back(part);
  return parts;
}

// The values a flag's checks allow, from its type name as CLI11 shows it in --help:
// "TEXT:{ext4,xfs,none}" (IsMember), "UINT:4096|512" (our own checks); a path for a type
// named "PATH..." or "FILE...".
std::vector<std::string> value_choices(const CLI::Option* opt) {
  std::vector<std::string> parts = split(opt->get_type_name(), ':');
  if (parts.empty()) return {};
  if (parts[0].rfind("PATH", 0) == 0 || parts[0].rfind("FILE", 0) == 0) return {":files"};
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& check = parts[i];
    if (check.size() > 2 && check.front() == '{' && check.back() == '}')
      return split(check.substr(1, check.size() - 2), ',');
    if (check.find('|') != std::string::npos && check.find(' ') == std::string::npos)
      return split(check, '|');
  }
  return {};
}

void add_flags(const CLI::App* app, std::vector<std::string>& out) {
  for (; app != nullptr; app = app->get_parent()) {
    for (const CLI::Option* opt : app->get_options()) {
      if (opt->get_group().empty() || !opt->nonpositional()) continue;
      for (const std::string& s : opt->get_snames()) out.push_back("-" + s);
      for (const std::string& l : opt->get_lnames()) out.push_back("--" + l);
    }
  }
}

}  // namespace

std::vector<std::string> completions(const CLI::App& app, const std::vector<std::string>& words) {
  if (words.empty()) return {};
  const std::string& current = words.back();
  const CLI::App* command = &app;
  const CLI::Option* pending = nullptr;  // a flag whose value comes next
  bool argument_seen = false;            // a word that was not a verb: no verbs follow
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    const std::string& word = words[i];
    if (pending != nullptr) {
      pending = nullptr;
      continue;
    }
    if (word.size() > 1 && word[0] == '-') {
      if (word.find('=') != std::string::npos) continue;  // --flag=value
      const CLI::Option* opt = find_flag(command, word);
      if (opt != nullptr && takes_value(opt)) pending = opt;
      continue;
    }
    if (const CLI::App* sub = find_subcommand(*command, word); sub != nullptr && !argument_seen)
      command = sub;
    else
      argument_seen = true;  // a verb's positional argument, or a typo
  }

  std::vector<std::string> out;
  if (pending != nullptr) {
    out = value_choices(pending);
  } else if (!current.empty() && current[0] == '-') {
    add_flags(command, out);
  } else if (!argument_seen) {
    for (const CLI::App* sub : command->get_subcommands([](const CLI::App*) { return true; })) {
      if (visible(sub) && !sub->get_name().empty()) out.push_back(sub->get_name());
    }
  }
  if (out.size() == 1 && out[0] == ":files") return out;
  std::vector<std::string> matching;
  for (const std::string& c : out) {
    if (c.rfind(current, 0) == 0 &&
        std::find(matching.begin(), matching.end(), c) == matching.end())
      matching.push_back(c);
  }
  return matching;
}

}  // namespace pxd::pxctl
