#!/usr/bin/env bash
# tests/vm/smoke.sh: the guest boots on a kernel with ublk: ublk_drv loads, its control
# node appears, and the host's freshly built binaries run inside.
set -euo pipefail
uname -r
case "$(uname -r)" in
  6.12.*) ;;
  *) echo "smoke: expected a 6.12 kernel"; exit 1 ;;
esac
$PXD_VM_MODPROBE ublk_drv
grep -q '^ublk_drv ' /proc/modules || { echo "smoke: ublk_drv not loaded"; exit 1; }
[ -c /dev/ublk-control ] || { echo "smoke: /dev/ublk-control missing"; exit 1; }
for m in nbd loop ext4 xfs; do
  grep -q "^$m " /proc/modules || [ -d "/sys/module/$m" ] || { echo "smoke: $m missing"; exit 1; }
done
# The guest has its own tmpfs /tmp and a writable results share.
touch /tmp/smoke-probe
touch "$PXD_VM_RESULTS/smoke-probe" && rm "$PXD_VM_RESULTS/smoke-probe"
if [ -n "${PXD_BUILD_DIR:-}" ]; then
  "$PXD_BUILD_DIR/daemon/pxd" --help >/dev/null
fi
echo "smoke: ok"
