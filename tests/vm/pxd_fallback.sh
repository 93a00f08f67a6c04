#!/usr/bin/env bash
# tests/vm/pxd_fallback.sh: without ublk_drv, pxd tries to load it (modprobe, once), and
# when it cannot, attaches through the NBD fallback and says why; when modprobe can load
# it, pxd does so on demand and attaches through ublk. Leaves ublk_drv loaded.
source "$(dirname "$0")/pxd_lib.sh"

rmmod ublk_drv || fail "rmmod ublk_drv"
# The guest's /lib/modules has no modules for its kernel: plain modprobe fails here.
start_pxd
frontend=$(ctl -j status | jq -r .frontend)
echo "status frontend: $frontend"
case "$frontend" in
  "nbd-loop (ublk: ublk_drv not available: /dev/ublk-control is missing"*"modprobe ublk_drv failed"*) ;;
  *) fail "status frontend: $frontend" ;;
esac
ctl volume create --size 256M v >/dev/null
mnt=$WORK/mnt-v
ctl host mount v "$mnt" >/dev/null
[ "$(vol_field v frontend)" = nbd-loop ] || fail "frontend $(vol_field v frontend)"
grep -q "(nbd-loop; not ublk: ublk_drv not available" "$PXD_LOG" || fail "attach log gives no reason"
echo fallback >"$mnt/file"
ctl host unmount v "$mnt" >/dev/null
stop_pxd || fail "pxd exit status $?"
grep -q '^ublk_drv ' /proc/modules && fail "ublk_drv loaded although modprobe could not"

# A modprobe that finds the guest kernel's modules, first on pxd's PATH.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexec %s -d %s "$@"\n' "$(command -v modprobe)" "$PXD_VM_MODROOT" \
  >"$WORK/bin/modprobe"
chmod +x "$WORK/bin/modprobe"
PATH=$WORK/bin:$PATH start_pxd
ctl host mount v "$mnt" >/dev/null
[ "$(vol_field v frontend)" = ublk ] || fail "after loading: frontend $(vol_field v frontend)"
grep -q '^ublk_drv ' /proc/modules || fail "ublk_drv not loaded"
grep -q "loaded ublk_drv" "$PXD_LOG" || fail "loading not logged"
[ "$(cat "$mnt/file")" = fallback ] || fail "file written through nbd-loop lost"
ctl host unmount v "$mnt" >/dev/null
stop_pxd || fail "pxd exit status $?"
echo "pxd_fallback: ok"
