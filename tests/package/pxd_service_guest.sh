#!/usr/bin/env bash
# tests/package/pxd_service_guest.sh: pxd.service under a real systemd, in the guest
# (tests/vm/run-guest.sh --systemd: systemd is PID 1, ublk_drv is loaded).
#
# The unit is packaging/pxd.service.in as shipped, with ExecStart pointing at this build's
# pxd and private paths appended. For each frontend (ublk, then nbd-loop, where pxd takes
# --attach-frontend) it checks:
# Type=notify readiness, the watchdog, the hardening in force without a mount namespace of
# its own, the limits; a mounted filesystem that keeps working across `systemctl restart`
# (KillMode=process: the nbd-loop helpers keep their pids) and across a SIGKILL of pxd
# (Restart=on-failure); and a clean `systemctl stop`.
set -euo pipefail
PXD=$PXD_BUILD_DIR/daemon/pxd
PXCTL=$PXD_BUILD_DIR/tools/pxctl/pxctl
UNIT_IN=$PXD_SOURCE_DIR/packaging/pxd.service.in
WORK=/tmp/pxd-service
UNIT_DIR=/run/systemd/system
export PXD_SOCKET=/run/pxd/pxd.sock

fail() {
  echo "FAIL: $*"
  systemctl status pxd --no-pager 2>&1 | head -20 || true
  journalctl -u pxd --no-pager 2>&1 | tail -40 || true
  exit 1
}
[ -d /run/systemd/system ] && [ "$(cat /proc/1/comm)" = systemd ] ||
  fail "systemd is not PID 1 (run with run-guest.sh --systemd)"

cleanup() {
  local rc=$? m
  set +e
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    "$PXCTL" host unmount --force "${m##*/mnt-}" "$m" >/dev/null 2>&1 || umount -l "$m"
  done
  systemctl stop pxd >/dev/null 2>&1
  rm -rf "$UNIT_DIR/pxd.service" "$UNIT_DIR/pxd.service.d"
  systemctl daemon-reload
  exit $rc
}
trap cleanup EXIT

prop() { systemctl show -p "$1" --value pxd; }

# install_unit FRONTEND: the shipped unit, running this build's pxd on private paths
# (FRONTEND "default": pxd's own choice).
install_unit() {
  local args="--data-dir $WORK/data --pool $WORK/pool0.img:4G"
  [ "$1" = default ] || args="$args --attach-frontend $1"
  sed "s|^ExecStart=@SBINDIR@/pxd\$|ExecStart=$PXD $args|" "$UNIT_IN" >"$UNIT_DIR/pxd.service"
  grep -q "^ExecStart=$PXD " "$UNIT_DIR/pxd.service" || fail "ExecStart not found in $UNIT_IN"
  systemctl daemon-reload
}

# wait_active MIN_RESTARTS: pxd.service active (READY=1 seen) with at least that many
# automatic restarts behind it.
wait_active() {
  local i
  for i in $(seq 1 120); do
    if [ "$(prop ActiveState)" = active ] && [ "$(prop NRestarts)" -ge "$1" ] &&
      "$PXCTL" status >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  fail "pxd.service not active with $1 restarts: $(prop ActiveState)/$(prop SubState)"
}

check_file() {
  local want=$1 file=$2
  [ "$(cat "$file" 2>&1)" = "$want" ] || fail "$file holds '$(cat "$file" 2>&1)', not '$want'"
}

helper_pids() { { pgrep -f "nbdfuse .*--export $1\$" || true; } | sort | tr '\n' ' '; }

run_frontend() {
  local fe=$1 vol=vol-$1 mnt=$WORK/mnt-vol-$1 pid helpers
  echo "== frontend $fe"
  install_unit "$fe"
  systemctl start pxd || fail "systemctl start pxd"
  [ "$(prop ActiveState)" = active ] || fail "not active after start (Type=notify)"
  # READY=1 came once the control socket answered: pxctl works at once.
  "$PXCTL" status >/dev/null || fail "pxctl status right after start"
  [[ "$(prop StatusText)" == serving* ]] || fail "status text '$(prop StatusText)'"
  [ "$(prop WatchdogUSec)" = 30s ] || fail "WatchdogUSec $(prop WatchdogUSec)"
  pid=$(prop MainPID)
  grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$pid/status || fail "NoNewPrivileges not in force"
  grep -q '^Seccomp:[[:space:]]*2' /proc/$pid/status || fail "no seccomp filter"
  [ "$(readlink /proc/$pid/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ] ||
    fail "pxd has a mount namespace of its own"
  grep -q '^Max open files *1048576' /proc/$pid/limits || fail "LimitNOFILE"
  grep -q '^Max locked memory *unlimited' /proc/$pid/limits || fail "LimitMEMLOCK"
  [ "$(cat /proc/$pid/oom_score_adj)" = -500 ] || fail "OOMScoreAdjust"

  "$PXCTL" volume create "$vol" --size 1 >/dev/null || fail "volume create"
  "$PXCTL" host mount "$vol" "$mnt" || fail "host mount through $fe"
  if [ "$fe" != default ]; then
    [[ "$("$PXCTL" -j volume inspect "$vol")" == *"\"frontend\": \"$fe\""* ]] ||
      fail "not attached by $fe: $("$PXCTL" -j volume inspect "$vol")"
  fi
  echo one >"$mnt/f" && sync
  helpers=$(helper_pids "$vol")

  systemctl restart pxd || fail "systemctl restart pxd"
  wait_active 0
  [ "$(prop MainPID)" != "$pid" ] || fail "restart kept the old pxd"
  check_file one "$mnt/f"
  echo two >>"$mnt/f" && sync
  check_file "$(printf 'one\ntwo')" "$mnt/f"
  [ "$(helper_pids "$vol")" = "$helpers" ] || fail "helpers $helpers became $(helper_pids "$vol")"

  # A crash: only pxd dies (as the kernel's OOM killer or a bug would do it).
  systemctl kill --kill-who=main -s SIGKILL pxd
  wait_active 1
  check_file "$(printf 'one\ntwo')" "$mnt/f"
  echo three >>"$mnt/f" && sync
  check_file "$(printf 'one\ntwo\nthree')" "$mnt/f"

  "$PXCTL" host unmount "$vol" "$mnt" || fail "host unmount"
  "$PXCTL" volume delete "$vol" >/dev/null || fail "volume delete"
  systemctl stop pxd || fail "systemctl stop pxd"
  [ "$(prop ActiveState)" = inactive ] && [ "$(prop Result)" = success ] ||
    fail "stop: $(prop ActiveState), result $(prop Result)"
  [[ "$(journalctl -u pxd --no-pager)" == *"]: stopped"* ]] || fail "no clean stop in the journal"
  systemctl reset-failed pxd 2>/dev/null || true
}

mkdir -p "$WORK"
# Each frontend in turn where pxd can be told which to use, else pxd's own choice.
if "$PXD" --help | grep -q -- --attach-frontend; then
  frontends="ublk nbd-loop"
else
  frontends=default
fi
for fe in $frontends; do run_frontend "$fe"; done

# The watchdog: pings at half the interval keep a short one from firing.
install_unit default
mkdir -p "$UNIT_DIR/pxd.service.d"
printf '[Service]\nWatchdogSec=2\n' >"$UNIT_DIR/pxd.service.d/watchdog.conf"
systemctl daemon-reload
systemctl start pxd || fail "start with WatchdogSec=2"
pid=$(prop MainPID)
sleep 8
[ "$(prop MainPID)" = "$pid" ] && [ "$(prop NRestarts)" = 0 ] ||
  fail "the watchdog fired: pid $pid -> $(prop MainPID), restarts $(prop NRestarts)"
systemctl stop pxd
echo "PASS"
