// common/log.h: leveled logging to stderr (journald keeps it when run under systemd).
//
//   PXD_LOG(kInfo) << "pool opened: " << path;
//
// Each statement is formatted into a buffer and written with one write(2), so lines from
// different threads never interleave. Lines carry a syslog priority prefix ("<6>") when
// stderr is the journal (JOURNAL_STREAM set), else a timestamp and level name.
//
// Thread safety: all functions may be called from any thread. Logging is not for the I/O
// hot path: a queue thread logs only on errors.
#pragma once

#include <sstream>
#include <string_view>

namespace pxd::log {

enum class Level : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level);
Level level();
bool enabled(Level level);
// Parses "debug", "info", "warn", "error". Returns false on anything else.
bool parse_level(std::string_view text, Level* out);

class Line {
 public:
  Line(Level level, const char* file, int line);
  ~Line();
  template <class T>
  Line& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  Level level_;
  std::ostringstream stream_;
};

// Lower precedence than <<, so `Voidify() & line << a << b` streams first.
struct Voidify {
  void operator&(const Line&) {}
};

}  // namespace pxd::log

// As in glog: the conditional makes the macro one expression, safe in an unbraced `if`,
// and skips formatting when the level is off.
#define PXD_LOG(lvl)                           \
  !::pxd::log::enabled(::pxd::log::Level::lvl) \
      ? (void)0                                \
      : ::pxd::log::Voidify() & ::pxd::log::Line(::pxd::log::Level::lvl, __FILE__, __LINE__)
