#!/usr/bin/env bash
# tests/package/run-package-vm.sh BUILD_DIR RESULTS: builds the Debian package from
# BUILD_DIR into RESULTS/pkg, then boots the guest with systemd as PID 1
# (tests/vm/run-guest.sh --systemd) and runs there pxd_service_guest.sh (the unit as
# shipped) and package_guest.sh (the package's maintainer scripts under a running systemd).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
results=$2
mkdir -p "$results"
rm -rf "$results/pkg"
cpack --config "$build/CPackConfig.cmake" -B "$results/pkg" >"$results/cpack.log" 2>&1 ||
  { cat "$results/cpack.log"; exit 3; }
deb=$(ls "$results"/pkg/pxd_*.deb)
exec "$here/../vm/run-guest.sh" --systemd --results "$results" --timeout 570 \
  --env "PXD_BUILD_DIR=$build" --env "PXD_SOURCE_DIR=$(cd "$here/../.." && pwd)" \
  --env "PXD_DEB=$deb" "$here/pxd_service_guest.sh" "$here/package_guest.sh"
