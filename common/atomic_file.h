// common/atomic_file.h: replacing small state files so that a crash leaves the old or the
// new content, never a mix (attachments.json, the Docker plugin's mount IDs).
//
// Thread safety: stateless; callers serialize writes to one path.
#pragma once

#include <string>

#include "common/status.h"

namespace pxd {

// Writes `text` to PATH.tmp (mode 0600), syncs it, renames it over `path` and syncs the
// directory.
Status write_file_atomically(const std::string& path, const std::string& text);

}  // namespace pxd
