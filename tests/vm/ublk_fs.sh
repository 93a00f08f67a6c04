#!/usr/bin/env bash
# tests/vm/ublk_fs.sh: a volume served through ublk carries ext4 and xfs: mkfs, mount,
# fio random read/write with crc32c verification (several jobs, queue depth 32), unmount.
# fstrim returns the space of deleted files to the pool. A mounted device refuses to be
# detached; once unmounted it stops cleanly and leaves no device behind.
source "$(dirname "$0")/ublk_lib.sh"

"$SERVER" --probe
start_server "$WORK/pool" vol1 --size 512M --pool-size 1G --refuse-busy
dev=/dev/ublkb$DEV_ID
pid=$SERVER_PID
[ "$(cat /sys/block/ublkb$DEV_ID/queue/write_cache)" = "write back" ] || fail "no volatile cache"
[ "$(cat /sys/block/ublkb$DEV_ID/queue/fua)" = 1 ] || fail "no FUA"
[ "$(cat /sys/block/ublkb$DEV_ID/queue/discard_granularity)" = 1048576 ] || fail "discard granularity"

round=0
for fs in ext4 xfs; do
  round=$((round + 1))
  case $fs in
    ext4) mkfs.ext4 -q -F "$dev" ;;
    xfs) mkfs.xfs -q -f "$dev" ;;
  esac
  mount_dev "$dev" "$WORK/mnt"
  fio_verify "$fs" --directory="$WORK/mnt" --rw=randrw --size=16M --numjobs=2 --iodepth=32

  # Space: a 64 MiB file takes chunks, fstrim after deleting it gives them back.
  dd if=/dev/urandom of="$WORK/mnt/big" bs=1M count=64 conv=fsync status=none
  used_full=$(pool_used "$WORK/pool" "$pid")
  rm "$WORK/mnt/big"
  sync
  fstrim "$WORK/mnt"
  used_trimmed=$(pool_used "$WORK/pool" "$pid")
  echo "$fs: pool used $used_full with the file, $used_trimmed after rm and fstrim"
  [ "$used_trimmed" -le $((used_full - 48 * 1048576)) ] || fail "$fs: fstrim returned too little space"

  # Detaching a mounted volume is refused.
  kill -TERM "$pid"
  sleep 1
  kill -0 "$pid" 2>/dev/null || fail "server stopped a mounted device"
  [ "$(grep -c "refused: $dev is in use" "$SERVER_LOG")" = $round ] || fail "no refusal logged"
  umount "$WORK/mnt"
  MOUNTS=()
done

e2fsck_out=$(mkfs.ext4 -q -F "$dev" && e2fsck -fn "$dev" 2>&1) || fail "e2fsck: $e2fsck_out"

stop_server "$pid" || fail "server exit status $?"
grep -q "0 errors" "$SERVER_LOG" || fail "server reported I/O errors"
[ ! -e "$dev" ] || fail "$dev still exists after stop"
[ -z "$("$SERVER" --list)" ] || fail "devices left: $("$SERVER" --list)"
echo "ublk_fs: ok"
