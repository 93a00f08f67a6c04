#!/usr/bin/env bash
# Quick start, command one: installs what pxd needs, builds it and installs the binaries
# under /usr/local. Starting the daemon on its embedded default joins this script when the
# daemon lands (issue 3); until then it ends by running the engine's quick self-check.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh"
build=${PXD_BUILD_DIR:-$top/build}
install -m 0755 "$build/bench/pxbench" /usr/local/bin/pxbench
echo "pxd engine built; try: pxbench engine --quick"
