# tests/vm/ublk_lib.sh: helpers the ublk guest tests source (bash, in the guest, as root).
#
# Every server a test starts is recorded and killed on exit, every mount unmounted and every
# ublk device left behind removed, whatever the exit path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/vm_lib.sh"

SERVER=$PXD_BUILD_DIR/tests/vm/ublk_test_server
[ -x "$SERVER" ] || { echo "FAIL: $SERVER not built"; exit 1; }
WORK=$(mktemp -d /tmp/ublk-test-XXXXXX)
SERVER_LOG=$WORK/server.log
SERVER_PIDS=()
MOUNTS=()

fail() {
  echo "FAIL: $*"
  echo "--- server log:"
  cat "$SERVER_LOG" 2>/dev/null || true
  exit 1
}

cleanup() {
  local rc=$? m p id
  for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
  for p in "${SERVER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${SERVER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for id in $("$SERVER" --list 2>/dev/null | awk '{print $1}'); do
    "$SERVER" --remove "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# start_server ARGS...: starts a server in the background; sets SERVER_PID and DEV_ID once
# its device exists (at most 60 s).
start_server() {
  local ready=$WORK/ready.$RANDOM
  "$SERVER" "$@" --ready "$ready" >>"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  local i
  for i in $(seq 600); do
    [ -f "$ready" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server $* exited before serving"
    sleep 0.1
  done
  [ -f "$ready" ] || fail "server $* not ready after 60 s"
  DEV_ID=$(cat "$ready")
  [ -b "/dev/ublkb$DEV_ID" ] || fail "/dev/ublkb$DEV_ID missing"
}

# stop_server PID: SIGTERM, then waits (at most 60 s); returns the server's exit status.
stop_server() {
  local pid=$1 i
  kill -TERM "$pid"
  for i in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "server $pid did not exit after SIGTERM"
  local rc=0
  wait "$pid" || rc=$?
  return $rc
}

# pool_used POOL_DIR PID: the pool's used bytes, as the server reports them on SIGUSR1.
pool_used() {
  local dir=$1 pid=$2 i
  rm -f "$dir/usage"
  kill -USR1 "$pid"
  for i in $(seq 100); do
    [ -f "$dir/usage" ] && break
    sleep 0.1
  done
  cat "$dir/usage"
}

mount_dev() {
  mkdir -p "$2"
  mount "$1" "$2"
  MOUNTS+=("$2")
}
