#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is needed, builds,
# runs every CTest test. `scripts/test.sh -L unit` (any ctest args) runs a subset.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh"
cd "${PXD_BUILD_DIR:-$top/build}"
ctest --output-on-failure --timeout 1200 -j "$(nproc)" "$@"
