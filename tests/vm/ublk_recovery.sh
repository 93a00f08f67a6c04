#!/usr/bin/env bash
# tests/vm/ublk_recovery.sh: the server is killed with SIGKILL in the middle of a verifying
# fio run, a new server recovers the device, and fio finishes without an error: the
# requests the dead server held are re-issued, the ones sent meanwhile wait. Data flushed
# before the kills is intact after each. Then the same with ext4 mounted on the device:
# the filesystem keeps working and checks clean. Finally a clean SIGTERM that releases the
# device leaves it recoverable too.
source "$(dirname "$0")/ublk_lib.sh"
rounds=${PXD_VM_RECOVERY_ROUNDS:-5}

# wait_state ID STATE: the driver reports device ID in STATE within 60 s.
wait_state() {
  local i
  for i in $(seq 600); do
    "$SERVER" --list | grep -q "^$1 $2 " && return 0
    sleep 0.1
  done
  fail "device $1 not $2: $("$SERVER" --list)"
}

# kill_and_recover POOL VOLUME [SERVER ARGS]: SIGKILL the server under load, check the
# device waits (quiesced), start a new server that recovers it.
kill_and_recover() {
  local id=$DEV_ID
  kill -KILL "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  wait_state "$id" quiesced
  start_server "$1" "$2" --recover "$id" "${@:3}"
  [ "$DEV_ID" = "$id" ] || fail "recovered device $DEV_ID, expected $id"
}

start_server "$WORK/pool" vol1 --size 256M --pool-size 512M
dev=/dev/ublkb$DEV_ID

# Flushed before any kill: must survive every one.
dd if=/dev/urandom of="$WORK/flushed" bs=1M count=16 status=none
dd if="$WORK/flushed" of="$dev" bs=1M seek=200 oflag=direct conv=fsync status=none

for round in $(seq "$rounds"); do
  # Four jobs, each on its own 32 MiB region: random writes (FUA: O_DSYNC on the block
  # device), then every block read back and checked. The kill lands 0.5 to 1.5 s in.
  fio_verify "raw$round" --filename="$dev" --rw=randwrite --size=32M --offset_increment=32M \
    --numjobs=4 --iodepth=32 --sync=1 --randseed=$round &
  fio_pid=$!
  sleep "$((round % 3)).5"
  kill -0 "$fio_pid" 2>/dev/null || fail "round $round: fio ended before the kill"
  kill_and_recover "$WORK/pool" vol1
  wait "$fio_pid" || fail "round $round: fio failed across the kill"
  cmp <(dd if="$dev" bs=1M skip=200 count=16 iflag=direct status=none) "$WORK/flushed" ||
    fail "round $round: flushed data changed"
  echo "round $round: recovered /dev/ublkb$DEV_ID, fio verified, flushed data intact"
done
stop_server "$SERVER_PID" || fail "server exit status $?"

# A mounted filesystem rides through the kill.
start_server "$WORK/pool2" vol2 --size 256M --pool-size 512M
dev=/dev/ublkb$DEV_ID
mkfs.ext4 -q -F "$dev"
mount_dev "$dev" "$WORK/mnt"
fio_verify fs --directory="$WORK/mnt" --rw=randwrite --size=8M --numjobs=2 --iodepth=32 --sync=1 &
fio_pid=$!
sleep 2
kill_and_recover "$WORK/pool2" vol2 --on-term release
wait "$fio_pid" || fail "fs: fio failed across the kill"
echo after > "$WORK/mnt/after" && sync
umount "$WORK/mnt"
MOUNTS=()
e2fsck -fn "$dev" >"$WORK/fsck.out" 2>&1 || { cat "$WORK/fsck.out"; fail "fs: e2fsck found errors"; }
echo "fs: ext4 survived the kill and checks clean"

# A clean SIGTERM that releases the device: I/O waits, a new server takes over.
pid=$SERVER_PID
id=$DEV_ID
kill -TERM "$pid"
wait "$pid" || fail "release: server exit status $?"
wait_state "$id" quiesced
start_server "$WORK/pool2" vol2 --recover "$id"
mount_dev "$dev" "$WORK/mnt"
[ "$(cat "$WORK/mnt/after")" = after ] || fail "release: file lost"
umount "$WORK/mnt"
MOUNTS=()
stop_server "$SERVER_PID" || fail "server exit status $?"
[ -z "$("$SERVER" --list)" ] || fail "devices left: $("$SERVER" --list)"
echo "ublk_recovery: ok"
