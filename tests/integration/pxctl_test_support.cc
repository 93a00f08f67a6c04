#include "tests/integration/pxctl_test_support.h"

#include <doctest/doctest.h>

#include <sstream>

namespace pxd::testing {

RunResult pxctl_json(const std::string& socket, const std::vector<std::string>& args) {
  std::vector<std::string> with_json = {"-j"};
  with_json.insert(with_json.end(), args.begin(), args.end());
  return pxctl(socket, with_json);
}

std::string describe(const std::vector<std::string>& args, const RunResult& result) {
  std::ostringstream out;
  out << "pxctl";
  for (const auto& a : args) out << ' ' << (a.empty() ? "''" : a);
  out << "\n  exit " << result.exit_code << (result.timed_out ? " (timed out)" : "")
      << "\n  stdout: " << result.out << "\n  stderr: " << result.err;
  return out.str();
}

Json parse_stdout(const RunResult& result) {
  return Json::parse(result.out, nullptr, false);
}

Json ok_json(const std::string& socket, const std::vector<std::string>& args) {
  RunResult result = pxctl_json(socket, args);
  CHECK_MESSAGE(result.exit_code == 0, describe(args, result));
  CHECK_MESSAGE(result.err.empty(), describe(args, result));
  Json json = parse_stdout(result);
  CHECK_MESSAGE(!json.is_discarded(), describe(args, result));
  if (result.exit_code != 0 || json.is_discarded()) return nullptr;
  return json;
}

bool one_error_line(const std::string& err) {
  return err.rfind("pxctl: ", 0) == 0 && err.find('\n') == err.size() - 1;
}

std::string error_mismatch(const RunResult& result, int exit_code, const std::string& needle) {
  std::string wrong;
  if (result.exit_code != exit_code)
    wrong +=
        "exit " + std::to_string(result.exit_code) + ", not " + std::to_string(exit_code) + "; ";
  if (!result.out.empty()) wrong += "stdout is not empty; ";
  if (!one_error_line(result.err)) wrong += "stderr is not one 'pxctl: ' line; ";
  if (result.err.find(needle) == std::string::npos)
    wrong += "stderr does not contain '" + needle + "'; ";
  return wrong;
}

std::vector<std::string> names_of(const Json& volumes) {
  std::vector<std::string> names;
  if (!volumes.is_array()) return names;
  for (const auto& v : volumes) names.push_back(v.value("name", std::string("<no name>")));
  return names;
}

std::string line_with(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return "";
}

}  // namespace pxd::testing
