// common/units.h: byte sizes as users write them ("10" GiB, "512M", "2T", "4096B") and as
// pxd prints them ("1.5 GiB").
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace pxd {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;
inline constexpr uint64_t kTiB = 1024 * kGiB;

// Parses a size. A plain number is in `default_unit` bytes (pxctl uses GiB, as Portworx
// does). Suffixes K, M, G, T, P with optional "i" and/or "B" are powers of 1024; "B"
// alone means bytes. Refuses empty text, negative numbers, fractions that do not come to
// whole bytes, and overflow, each with a message naming the text.
Result<uint64_t> parse_size(std::string_view text, uint64_t default_unit);

// "0 B", "4 KiB", "1.5 GiB": at most one decimal, binary units.
std::string format_size(uint64_t bytes);

inline constexpr bool is_power_of_two(uint64_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}
inline constexpr uint64_t align_down(uint64_t v, uint64_t a) {
  return v / a * a;
}
inline constexpr uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

}  // namespace pxd
