#!/usr/bin/env bash
# Builds pxd (scripts/build.sh) and its Debian package (CPack, packaging/CMakeLists.txt)
# into <build>/package; prints the package's path. Build output goes to stderr.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${PXD_BUILD_DIR:-$top/build}
"$top/scripts/build.sh" >&2
rm -f "$build"/package/pxd_*.deb
cpack --config "$build/CPackConfig.cmake" -B "$build/package" >&2
ls "$build"/package/pxd_*.deb
