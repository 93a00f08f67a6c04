// tools/pxctl/output.h: the building blocks of pxctl's human output: aligned tables,
// "Key: value" blocks, times and durations. What each command prints is in render.h.
//
// Thread safety: values and pure functions (format_time reads the process's time zone).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pxd::pxctl {

// A table with a header row. Columns are as wide as their widest cell (counted in
// characters, not bytes), separated by two spaces; no line ends in whitespace.
class Table {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string header;
    Align align = Align::kLeft;
  };

  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

  // REQUIRES: cells.size() == number of columns.
  void add_row(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }

  // Every line ends with '\n'; an empty table is its header line.
  std::string render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// "Name:      db\nSize:      10 GiB\n": keys padded so the values line up.
std::string key_value_block(const std::vector<std::pair<std::string, std::string>>& rows);

// Local time "2025-11-22 03:31:07"; "-" for 0.
std::string format_time(int64_t unix_seconds);

// "45s", "3m 12s", "5h 3m", "12d 4h".
std::string format_duration(uint64_t seconds);

// Characters (UTF-8 code points) in `text`.
size_t display_width(const std::string& text);

}  // namespace pxd::pxctl
