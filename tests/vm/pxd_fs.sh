#!/usr/bin/env bash
# tests/vm/pxd_fs.sh: pxd attaches volumes through ublk, end to end with pxctl.
#
# ext4 and xfs made by `pxctl host mount`, fio random read/write with crc32c verification
# (four jobs, queue depth 32), fstrim returning space to the pool, a mounted volume that
# refuses to detach, unmount detaching it; a snapshot attached read-only; growing an
# attached volume (online where the driver can, else a message and a detach/attach);
# detaching under load ends cleanly; bad requests; a clean SIGTERM restart under a
# mounted filesystem.
source "$(dirname "$0")/pxd_lib.sh"

start_pxd
frontend=$(ctl -j status | jq -r .frontend)
[ "$frontend" = ublk ] || fail "status frontend is '$frontend', not ublk"

ctl volume create --size 512M v1 >/dev/null
ctl volume create --size 512M --fs xfs v2 >/dev/null

for v in v1 v2; do
  fs=$(vol_field "$v" fs)
  mnt=$WORK/mnt-$v
  ctl host mount "$v" "$mnt" | grep -q "new $fs filesystem" || fail "$v: no new $fs"
  n=$(ublk_of "$v")
  [ "$(vol_field "$v" frontend)" = ublk ] || fail "$v: frontend $(vol_field "$v" frontend)"
  [ "$(vol_field "$v" state)" = mounted ] || fail "$v: state $(vol_field "$v" state)"
  [ "$(findmnt -n -o FSTYPE "$mnt")" = "$fs" ] || fail "$v: not $fs at $mnt"
  q=/sys/block/ublkb$n/queue
  [ "$(cat $q/write_cache)" = "write back" ] || fail "$v: no volatile cache"
  [ "$(cat $q/fua)" = 1 ] || fail "$v: no FUA"
  [ "$(cat $q/discard_granularity)" = 1048576 ] || fail "$v: discard granularity"
  fio_verify "$fs" --directory="$mnt" --rw=randrw --size=16M --numjobs=4 --iodepth=32

  # fstrim: a 64 MiB file takes chunks, deleting it and trimming gives them back.
  dd if=/dev/urandom of="$mnt/big" bs=1M count=64 conv=fsync status=none
  used_full=$(pool_used)
  rm "$mnt/big"
  sync
  fstrim "$mnt"
  used_trimmed=$(pool_used)
  echo "$fs: pool used $used_full with the file, $used_trimmed after rm and fstrim"
  [ "$used_trimmed" -le $((used_full - 48 * 1048576)) ] || fail "$fs: fstrim returned too little"

  expect_error "detach mounted $v" "is mounted at" "$PXCTL" host detach "$v"
  [ -b "/dev/ublkb$n" ] || fail "$v: a refused detach removed the device"
  ctl host unmount "$v" "$mnt" >/dev/null  # attached by the mount: detaches too
  [ "$(vol_field "$v" state)" = detached ] || fail "$v: still attached after unmount"
  [ "$(ublk_state "$n")" = none ] || fail "$v: ublk device $n left: $(ublk_state "$n")"
done

# A snapshot attaches read-only and mounts read-only.
ctl host mount v1 "$WORK/mnt-v1" >/dev/null
echo snap-me >"$WORK/mnt-v1/file"
sync
ctl volume snapshot create v1 --name s1 >/dev/null
echo later >"$WORK/mnt-v1/file"
sync
link=$(ctl host attach s1)
[ "$(blockdev --getro "$link")" = 1 ] || fail "snapshot device is writable"
expect_error "write to a snapshot device" "" dd if=/dev/zero of="$link" bs=4k count=1 \
  oflag=direct status=none
ctl host mount s1 "$WORK/mnt-s1" >/dev/null
[ "$(cat "$WORK/mnt-s1/file")" = snap-me ] || fail "snapshot content"
ctl host unmount s1 "$WORK/mnt-s1" >/dev/null
ctl host detach s1 >/dev/null
ctl host unmount v1 "$WORK/mnt-v1" >/dev/null

# Bad requests change nothing.
expect_error "attach unknown" "no volume or snapshot named 'nope'" "$PXCTL" host attach nope
first=$(ctl host attach v1)
again=$(ctl host attach v1)  # idempotent: the same device
[ "$first" = "$again" ] || fail "second attach gave $again, first $first"
n=$(ublk_of v1)
[ "$("$UBLK_TOOL" --list | wc -l)" = 1 ] || fail "attach twice made two devices"
expect_error "detach unattached" "not attached" "$PXCTL" host detach v2

# Growing an attached volume.
ctl volume update --size 1G v1 >"$WORK/grow.out"
dev_bytes=$(( $(cat "/sys/block/ublkb$n/size") * 512 ))
if "$UBLK_TOOL" --probe | grep -q update_size; then
  [ "$dev_bytes" = $((1 << 30)) ] || fail "grow: the device shows $dev_bytes bytes"
  echo "grow: the device grew online"
else
  grep -q "still shows 512 MiB" "$WORK/grow.out" || fail "grow: no message: $(cat "$WORK/grow.out")"
  [ "$dev_bytes" = $((512 << 20)) ] || fail "grow: the device shows $dev_bytes bytes"
  [ "$(vol_field v1 size)" = $((1 << 30)) ] || fail "grow: volume size"
  [ "$(vol_field v1 device_size)" = $((512 << 20)) ] || fail "grow: device_size"
  grep -q "cannot change a live device's size" "$PXD_LOG" || fail "grow: no reason logged"
  ctl host detach v1 >/dev/null
  ctl host attach v1 >/dev/null
  n=$(ublk_of v1)
  dev_bytes=$(( $(cat "/sys/block/ublkb$n/size") * 512 ))
  [ "$dev_bytes" = $((1 << 30)) ] || fail "grow: after re-attach the device shows $dev_bytes"
  echo "grow: $(head -c 200 "$WORK/grow.out" | tail -n 1); 1 GiB after detach and attach"
fi

# Detach under load: fio writes to the raw device; the detach ends, fio ends with errors.
fio --name=load --filename="/dev/ublkb$n" --ioengine=io_uring --direct=1 --rw=randwrite \
  --bs=4k --iodepth=32 --time_based --runtime=60 >"$WORK/load.out" 2>&1 &
fio_pid=$!
sleep 3
started=$(date +%s)
timeout 90 "$PXCTL" host detach v1 || fail "detach under load failed or hung ($?)"
echo "detach under load: $(( $(date +%s) - started )) s"
wait_for 60 "fio to end after the detach" pid_gone "$fio_pid"
wait "$fio_pid" && fail "fio kept running on a detached device"
[ "$(ublk_state "$n")" = none ] || fail "device $n left after detach under load"

# A clean SIGTERM restart under a mounted filesystem: the device stays (quiesced, I/O
# waiting), the next pxd recovers it before it is ready, the filesystem goes on.
ctl host mount v2 "$WORK/mnt-v2" >/dev/null
n=$(ublk_of v2)
echo before >"$WORK/mnt-v2/before"
sync
stop_pxd || fail "pxd exit status $?"
[ "$(ublk_state "$n")" = quiesced ] || fail "after SIGTERM device $n is $(ublk_state "$n")"
start_pxd
[ "$(ublk_state "$n")" = live ] || fail "after restart device $n is $(ublk_state "$n")"
grep -q "recovered /dev/ublkb$n " "$PXD_LOG" || fail "no recovery logged"
[ "$(vol_field v2 state)" = mounted ] || fail "v2 not mounted after restart"
echo 3 >/proc/sys/vm/drop_caches
[ "$(cat "$WORK/mnt-v2/before")" = before ] || fail "file lost across the restart"
echo after >"$WORK/mnt-v2/after"
sync
ctl host unmount v2 "$WORK/mnt-v2" >/dev/null
[ "$(ublk_state "$n")" = none ] || fail "device $n left after the last unmount"

stop_pxd || fail "pxd exit status $?"
[ -z "$("$UBLK_TOOL" --list)" ] || fail "devices left: $("$UBLK_TOOL" --list)"
echo "pxd_fs: ok"
