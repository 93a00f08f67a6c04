#!/usr/bin/env bash
# tests/vm/pxd_recovery.sh: pxd is killed with SIGKILL in the middle of a verifying fio run
# and started again; it recovers its ublk devices before it is ready, and fio finishes
# without an error: the requests the dead pxd held are re-issued, those sent meanwhile
# wait. Data flushed before the kills is intact after each. Then the same under a mounted
# ext4, which keeps working and checks clean.
source "$(dirname "$0")/pxd_lib.sh"
rounds=${PXD_VM_RECOVERY_ROUNDS:-5}

# kill_and_restart N: SIGKILL pxd, see device N wait (quiesced), start pxd, see it live.
kill_and_restart() {
  local recoveries
  recoveries=$(grep -c "recovered /dev/ublkb$1 " "$PXD_LOG" || true)
  kill9_pxd
  wait_for 30 "device $1 quiesced" ublk_state_is "$1" quiesced
  start_pxd
  [ "$(ublk_state "$1")" = live ] || fail "device $1 is $(ublk_state "$1") after the restart"
  [ "$(grep -c "recovered /dev/ublkb$1 " "$PXD_LOG")" -gt "$recoveries" ] ||
    fail "no recovery of device $1 logged"
}

start_pxd
ctl volume create --size 256M --fs none raw >/dev/null
link=$(ctl host attach raw)
n=$(ublk_of raw)

# Flushed before any kill: must survive every one.
dd if=/dev/urandom of="$WORK/flushed" bs=1M count=16 status=none
dd if="$WORK/flushed" of="$link" bs=1M seek=200 oflag=direct conv=fsync status=none

for round in $(seq "$rounds"); do
  # Four jobs, each on its own 32 MiB region: random writes, then every block read back
  # and checked. The kill lands 0.5 to 2.5 s in.
  fio_verify "raw$round" --filename="$link" --rw=randwrite --size=32M --offset_increment=32M \
    --numjobs=4 --iodepth=32 --randseed="$round" &
  fio_pid=$!
  sleep "$((round % 3)).5"
  kill -0 "$fio_pid" 2>/dev/null || fail "round $round: fio ended before the kill"
  kill_and_restart "$n"
  wait "$fio_pid" || fail "round $round: fio failed across the kill"
  cmp <(dd if="$link" bs=1M skip=200 count=16 iflag=direct status=none) "$WORK/flushed" ||
    fail "round $round: flushed data changed"
  echo "round $round: pxd killed and restarted, /dev/ublkb$n recovered, fio verified"
done
ctl host detach raw >/dev/null

# A mounted filesystem rides through the kill. The files are large enough that fio is
# still writing when the kill lands 1 s in (2 x 8 MiB took under 2 s once first writes no
# longer waited for the metadata thread).
ctl volume create --size 256M fsv >/dev/null
mnt=$WORK/mnt-fsv
ctl host mount fsv "$mnt" >/dev/null
n=$(ublk_of fsv)
fio_verify fs --directory="$mnt" --rw=randwrite --size=32M --numjobs=2 --iodepth=32 &
fio_pid=$!
sleep 1
kill -0 "$fio_pid" 2>/dev/null || fail "fs: fio ended before the kill"
kill_and_restart "$n"
wait "$fio_pid" || fail "fs: fio failed across the kill"
[ "$(vol_field fsv state)" = mounted ] || fail "fs: not mounted after the restart"
echo after >"$mnt/after"
sync
ctl host unmount fsv "$mnt" >/dev/null
link=$(ctl host attach fsv)
e2fsck -fn "$link" >"$WORK/fsck.out" 2>&1 || { cat "$WORK/fsck.out"; fail "fs: e2fsck found errors"; }
ctl host detach fsv >/dev/null
echo "fs: ext4 survived the kill and checks clean"

stop_pxd || fail "pxd exit status $?"
[ -z "$("$UBLK_TOOL" --list)" ] || fail "devices left: $("$UBLK_TOOL" --list)"
echo "pxd_recovery: ok"
