#include "common/units.h"

#include <cctype>
#include <cstdio>
#include <limits>

namespace pxd {

Result<uint64_t> parse_size(std::string_view text, uint64_t default_unit) {
  auto bad = [&](const char* why) {
    return invalid_argument("invalid size '" + std::string(text) + "': " + why);
  };
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  std::string_view rest = text.substr(i);
  while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.back())))
    rest.remove_suffix(1);
  if (rest.empty()) return bad("empty");
  if (rest[0] == '-') return bad("negative");

  // Integer part and optional fraction, kept exact as a numerator over 10^digits.
  uint64_t whole = 0;
  size_t p = 0;
  bool any_digit = false;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  while (p < rest.size() && std::isdigit(static_cast<unsigned char>(rest[p]))) {
    uint64_t d = static_cast<uint64_t>(rest[p] - '0');
    if (whole > (kMax - d) / 10) return bad("too large");
    whole = whole * 10 + d;
    ++p;
    any_digit = true;
  }
  uint64_t frac = 0, frac_scale = 1;
  if (p < rest.size() && rest[p] == '.') {
    ++p;
    while (p < rest.size() && std::isdigit(static_cast<unsigned char>(rest[p]))) {
      if (frac_scale >= 1000000000ULL) return bad("too many decimals");
      frac = frac * 10 + static_cast<uint64_t>(rest[p] - '0');
      frac_scale *= 10;
      ++p;
      any_digit = true;
    }
  }
  if (!any_digit) return bad("no number");
  std::string unit(rest.substr(p));
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));

  uint64_t mult = default_unit;
  if (!unit.empty()) {
    if (unit == "B") {
      mult = 1;
    } else {
      uint64_t base;
      switch (unit[0]) {
        case 'K':
          base = kKiB;
          break;
        case 'M':
          base = kMiB;
          break;
        case 'G':
          base = kGiB;
          break;
        case 'T':
          base = kTiB;
          break;
        case 'P':
          base = kTiB * 1024;
          break;
        default:
          return bad("unknown unit (use K, M, G, T, P or B)");
      }
      std::string_view tail = std::string_view(unit).substr(1);
      if (!(tail.empty() || tail == "B" || tail == "I" || tail == "IB"))
        return bad("unknown unit (use K, M, G, T, P or B)");
      mult = base;
    }
  }
  if (whole != 0 && mult > kMax / whole) return bad("too large");
  uint64_t bytes = whole * mult;
  if (frac != 0) {
    // mult is a power of two (or 1): frac * mult / frac_scale must be exact.
    unsigned __int128 f = static_cast<unsigned __int128>(frac) * mult;
    if (f % frac_scale != 0) return bad("not a whole number of bytes");
    unsigned __int128 total = static_cast<unsigned __int128>(bytes) + f / frac_scale;
    if (total > kMax) return bad("too large");
    bytes = static_cast<uint64_t>(total);
  }
  return bytes;
}

std::string format_size(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    std::string text(buf);
    // "62.0" reads better as "62".
    if (text.size() > 2 && text.compare(text.size() - 2, 2, ".0") == 0) text.resize(text.size() - 2);
    std::snprintf(buf, sizeof(buf), "%s %s", text.c_str(), kUnits[u]);
  }
  return buf;
}

}  // namespace pxd
