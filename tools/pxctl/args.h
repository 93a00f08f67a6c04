// tools/pxctl/args.h: the values users type on pxctl's command line (labels, sizes) and
// what they become in requests.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "proto/control.capnp.h"

namespace pxd::pxctl {

// Labels in the order the user gave them; keys are unique.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Parses the values of one or more --label flags, each "k=v" or "k=v,k2=v2". A value may
// be empty ("k="); a key may not. Refuses empty items, a missing '=', and a key given twice,
// with a message naming the text.
Result<Labels> parse_labels(const std::vector<std::string>& flags);

// A --size value: a plain number is GiB ("10"), units as in pxd::parse_size ("512M",
// "2T", "4096B"). Refuses zero.
Result<uint64_t> parse_size_flag(std::string_view text);

// "k=v,k2=v2", or "" for none.
std::string labels_text(const Labels& labels);

Labels labels_from(capnp::List<proto::Label>::Reader labels);
void fill_labels(capnp::List<proto::Label>::Builder out, const Labels& labels);

}  // namespace pxd::pxctl
