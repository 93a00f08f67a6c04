# tests/vm/pxd_lib.sh: helpers of the guest tests that drive the real daemon (bash, in the
# guest, as root).
#
# One pxd on private paths (data dir, control and NBD sockets, a sparse pool file on the
# guest's tmpfs), driven with pxctl. Whatever the exit path, cleanup leaves nothing behind
# for the next script in the same guest: mounts under WORK unmounted, pxd killed, every
# ublk device removed, loop devices, nbdfuse helpers and /dev/pxd links of this pxd gone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/vm_lib.sh"

PXD=$PXD_BUILD_DIR/daemon/pxd
PXCTL=$PXD_BUILD_DIR/tools/pxctl/pxctl
# ublk_test_server --list / --remove: the driver's view of the devices, for checks.
UBLK_TOOL=$PXD_BUILD_DIR/tests/vm/ublk_test_server
for bin in "$PXD" "$PXCTL" "$UBLK_TOOL"; do
  [ -x "$bin" ] || { echo "FAIL: $bin not built"; exit 1; }
done
WORK=$(mktemp -d /tmp/pxd-test-XXXXXX)
export PXD_SOCKET=$WORK/pxd.sock
PXD_LOG=$WORK/pxd.log
PXD_PID=""
PXD_POOL_SIZE=${PXD_POOL_SIZE:-8G}
: >"$PXD_LOG"

fail() {
  echo "FAIL: $*"
  echo "--- pxd log (last 60 lines):"
  tail -n 60 "$PXD_LOG" 2>/dev/null || true
  echo "--- ublk devices: $("$UBLK_TOOL" --list 2>&1 | tr '\n' ';')"
  exit 1
}

pxd_cleanup() {
  local rc=$? m p id
  set +e
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null
  done
  [ -n "$PXD_PID" ] && kill -KILL "$PXD_PID" 2>/dev/null && wait "$PXD_PID" 2>/dev/null
  for id in $("$UBLK_TOOL" --list 2>/dev/null | awk '{print $1}'); do
    "$UBLK_TOOL" --remove "$id" >/dev/null 2>&1
  done
  for p in $(pgrep -f "nbdfuse.*$WORK/" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  for m in $(losetup -n -O NAME,BACK-FILE 2>/dev/null | awk -v w="$WORK/" 'index($2, w) == 1 {print $1}'); do
    losetup -d "$m" 2>/dev/null
  done
  for m in /dev/pxd*; do [ -L "$m" ] && rm -f "$m"; done
  # A test that unloaded ublk_drv leaves it loaded again for the next one.
  grep -q '^ublk_drv ' /proc/modules || $PXD_VM_MODPROBE ublk_drv
  rm -rf "$WORK"
  exit $rc
}
trap pxd_cleanup EXIT

# start_pxd [OPTIONS...]: starts pxd in the background and waits (at most 120 s) for its
# "ready" line: reconcile (recovering ublk devices) is done by then.
start_pxd() {
  local before i
  before=$(grep -c "ready: " "$PXD_LOG" || true)
  "$PXD" --data-dir "$WORK/data" --control-socket "$PXD_SOCKET" --nbd-socket "$WORK/nbd.sock" \
    --pool "$WORK/pool.img:$PXD_POOL_SIZE" "$@" >>"$PXD_LOG" 2>&1 &
  PXD_PID=$!
  for i in $(seq 1200); do
    [ "$(grep -c "ready: " "$PXD_LOG" || true)" -gt "$before" ] && return 0
    kill -0 "$PXD_PID" 2>/dev/null || fail "pxd exited before it was ready"
    sleep 0.1
  done
  fail "pxd not ready within 120 s"
}

# stop_pxd: SIGTERM, then waits (at most 60 s); returns pxd's exit status.
stop_pxd() {
  local i rc=0
  kill -TERM "$PXD_PID"
  for i in $(seq 600); do
    kill -0 "$PXD_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$PXD_PID" 2>/dev/null && fail "pxd did not exit within 60 s of SIGTERM"
  wait "$PXD_PID" || rc=$?
  PXD_PID=""
  return $rc
}

kill9_pxd() {
  kill -KILL "$PXD_PID"
  wait "$PXD_PID" 2>/dev/null || true
  PXD_PID=""
}

# ctl ARGS...: pxctl that must succeed; prints its output.
ctl() {
  local out
  out=$("$PXCTL" "$@" 2>&1) || fail "pxctl $*: $out"
  printf '%s\n' "$out"
}

# vol_field NAME FIELD: one field of `pxctl -j volume inspect NAME`.
vol_field() { ctl -j volume inspect "$1" | jq -r ".$2"; }

# pool_used: the pool's used bytes.
pool_used() { ctl -j service pool show | jq -r '.[0].used_bytes'; }

# ublk_of NAME: the N of the /dev/ublkbN behind /dev/pxd<ID> of attached volume NAME.
ublk_of() {
  local link target
  link=$(vol_field "$1" device_path)
  target=$(readlink "$link") || fail "$link is not a link"
  case "$target" in
    /dev/ublkb*) echo "${target#/dev/ublkb}" ;;
    *) fail "$link -> $target, not a ublk device" ;;
  esac
}

# ublk_state N: the driver's state of device N ("live", "quiesced", ...), or "none".
ublk_state() {
  "$UBLK_TOOL" --list | awk -v id="$1" '$1 == id {print $2; found = 1} END {if (!found) print "none"}'
}

ublk_state_is() { [ "$(ublk_state "$1")" = "$2" ]; }

# pxd_counts: "THREADS FDS" of the running pxd.
pxd_counts() {
  echo "$(ls "/proc/$PXD_PID/task" | wc -l) $(ls "/proc/$PXD_PID/fd" | wc -l)"
}

# pxd_thread_names: the running pxd's threads by name, with counts, on one line.
pxd_thread_names() {
  cat /proc/"$PXD_PID"/task/*/comm | sort | uniq -c | tr -s ' \n' ' '
}
