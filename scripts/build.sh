#!/usr/bin/env bash
# Configures and builds pxd into build/ (or $PXD_BUILD_DIR). Extra args go to cmake.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${PXD_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${PXD_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
ninja -C "$build"
