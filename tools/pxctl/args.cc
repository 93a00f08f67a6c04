#include "tools/pxctl/args.h"

#include <algorithm>

#include "common/units.h"

namespace pxd::pxctl {

namespace {

bool has_key(const Labels& labels, std::string_view key) {
  return std::any_of(labels.begin(), labels.end(), [&](const auto& kv) { return kv.first == key; });
}

}  // namespace

Result<Labels> parse_labels(const std::vector<std::string>& flags) {
  Labels labels;
  for (const std::string& flag : flags) {
    size_t begin = 0;
    while (true) {
      size_t end = flag.find(',', begin);
      std::string_view item = std::string_view(flag).substr(
          begin, end == std::string::npos ? std::string::npos : end - begin);
      if (item.empty())
        return invalid_argument("label list '" + flag + "' has an empty item; write k=v,k2=v2");
      size_t eq = item.find('=');
      if (eq == std::string_view::npos)
        return invalid_argument("label '" + std::string(item) + "' is not key=value");
      std::string key(item.substr(0, eq));
      if (key.empty())
        return invalid_argument("label '" + std::string(item) + "' has an empty key");
      if (has_key(labels, key)) return invalid_argument("label key '" + key + "' is given twice");
      labels.emplace_back(std::move(key), std::string(item.substr(eq + 1)));
      if (end == std::string::npos) break;
      begin = end + 1;
    }
  }
  return labels;
}

Result<uint64_t> parse_size_flag(std::string_view text) {
  PXD_TRY(uint64_t bytes, parse_size(text, kGiB));
  if (bytes == 0)
    return invalid_argument("size '" + std::string(text) + "' is zero; a volume needs a size");
  return bytes;
}

std::string labels_text(const Labels& labels) {
  std::string text;
  for (const auto& [key, value] : labels) {
    if (!text.empty()) text += ',';
    text += key + '=' + value;
  }
  return text;
}

Labels labels_from(capnp::List<proto::Label>::Reader labels) {
  Labels out;
  out.reserve(labels.size());
  for (auto label : labels) out.emplace_back(label.getKey().cStr(), label.getValue().cStr());
  return out;
}

void fill_labels(capnp::List<proto::Label>::Builder out, const Labels& labels) {
  for (unsigned i = 0; i < labels.size(); ++i) {
    out[i].setKey(labels[i].first);
    out[i].setValue(labels[i].second);
  }
}

}  // namespace pxd::pxctl
