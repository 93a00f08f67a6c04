#!/usr/bin/env bash
# tests/vm/powercut.sh: a power cut under the engine (DESIGN.md, durability contract): after
# a flush or a FUA write completes, every write acknowledged before it survives; no cut
# ever shows a block of another LBA, another volume or freed space.
#
# In the guest, over two loop devices on its tmpfs (a 192 MiB data device and a log):
#  1. mkfs.ext4 on the data device, a fresh pool on it (engine_powercut_tool create), and a
#     copy of the device as it then is (the base of every replay);
#  2. a dm log-writes target over both, mounted; engine_crash_child runs its random
#     workload (writes, FUA writes, discards, write-zeroes, flushes; with half of the seeds
#     a control thread creating and deleting snapshots, so copy-on-write too) on the
#     pool with its journal outside the filesystem, putting a mark into the log after each
#     flush completes (PXD_CRASH_DM_MARK); after a few seconds it is SIGKILLed, the
#     filesystem unmounted, the target removed;
#  3. powercut_replay.py replays the log onto a copy of the base and, at up to
#     PXD_POWERCUT_CHECKS cut points (the marks and random entries between them), mounts a
#     copy of the replayed device and checks the pool against the child's journal.
# Environment: PXD_POWERCUT_SEED (replay a run: the workload and the cut points; the
# timing still varies), PXD_POWERCUT_SECONDS (workload time, default 3),
# PXD_POWERCUT_CHECKS (default 24), PXD_POWERCUT_KEEP (on a failure, copy the base image,
# the log and the journal into the results directory). dm targets, mounts and loop devices
# are removed on every exit path.
set -euo pipefail

CHILD=$PXD_BUILD_DIR/tests/crash/engine_crash_child
TOOL=$PXD_BUILD_DIR/tests/crash/engine_powercut_tool
REPLAY=$PXD_SOURCE_DIR/tests/vm/powercut_replay.py
for bin in "$CHILD" "$TOOL"; do
  [ -x "$bin" ] || { echo "FAIL: $bin not built"; exit 1; }
done
export DM_DISABLE_UDEV=1  # the guest has no udev: libdevmapper makes the nodes itself
DM=pxd-powercut-$$
WORK=$(mktemp -d /tmp/pxd-powercut-XXXXXX)
MNT=$WORK/mnt
CHILD_PID=""

fail() {
  echo "FAIL: $*"
  exit 1
}

cleanup() {
  local rc=$? m
  set +e
  [ -n "$CHILD_PID" ] && kill -KILL "$CHILD_PID" 2>/dev/null && wait "$CHILD_PID" 2>/dev/null
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  dmsetup --noudevsync info "$DM" >/dev/null 2>&1 && dmsetup --noudevsync remove "$DM"
  for m in $(losetup -n -O NAME,BACK-FILE 2>/dev/null | awk -v w="$WORK/" 'index($2, w) == 1 {print $1}'); do
    losetup -d "$m"
  done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

seed=${PXD_POWERCUT_SEED:-$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ))}
seconds=${PXD_POWERCUT_SECONDS:-3}
checks=${PXD_POWERCUT_CHECKS:-24}
threads=$(( seed % 3 == 0 ? 2 : 1 ))
thick=$(( (seed >> 3) % 2 ))
snapshots=$(( (seed >> 5) % 2 ))
echo "powercut: seed $seed (replay: PXD_POWERCUT_SEED=$seed), $threads ring threads, thick pool file $thick, snapshots $snapshots"

$PXD_VM_MODPROBE dm-mod
$PXD_VM_MODPROBE dm-log-writes
mkdir -p "$MNT"
truncate -s 192M "$WORK/data.img"
truncate -s 768M "$WORK/log.img"
DATA=$(losetup -f --show "$WORK/data.img")
LOG=$(losetup -f --show "$WORK/log.img")

# 1. The filesystem and a fresh pool, then the base image.
mkfs.ext4 -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$DATA"
mount -t ext4 "$DATA" "$MNT"
"$TOOL" create "$MNT/meta" "$MNT/pool0.img" "$thick" || fail "creating the pool"
umount "$MNT"
cp --sparse=always "$WORK/data.img" "$WORK/base.img"

# 2. The workload over the log-writes target.
dmsetup --noudevsync create "$DM" --table "0 $(blockdev --getsz "$DATA") log-writes $DATA $LOG"
mount -t ext4 "/dev/mapper/$DM" "$MNT"
PXD_CRASH_DM_MARK=$DM "$CHILD" "$MNT/meta" "$WORK/journal" "$seed" 0 "$threads" 16 "$snapshots" \
  >"$WORK/child.out" 2>&1 &
CHILD_PID=$!
sleep "$seconds"
kill -0 "$CHILD_PID" 2>/dev/null || { cat "$WORK/child.out"; fail "the child exited before the cut"; }
kill -KILL "$CHILD_PID"
wait "$CHILD_PID" 2>/dev/null || true
CHILD_PID=""
echo "powercut: workload ran $seconds s, journal $(( $(stat -c %s "$WORK/journal") / 64 )) records"
umount "$MNT"
dmsetup --noudevsync remove "$DM"
# The target stops logging (and says so only in the kernel log) when the log device fills
# or fails: then the log would end early and silently.
if dmesg | grep -Ei 'log-writes.*(Ran out of space|Error writing)'; then
  fail "the log device failed"
fi
echo "powercut: log $(du -m "$WORK/log.img" | cut -f1) MiB; /tmp: $(df -m --output=used,avail /tmp | tail -n 1) MiB used, free"
losetup -d "$DATA"
losetup -d "$LOG"

# 3. Replay and check.
if ! python3 "$REPLAY" --log "$WORK/log.img" --base "$WORK/base.img" --work "$WORK" --mount "$MNT" \
  --journal "$WORK/journal" --tool "$TOOL" --checks "$checks" --seed "$seed" --deadline 150; then
  # The evidence, for replaying the failure outside the guest (the results share).
  if [ -n "${PXD_POWERCUT_KEEP:-}" ] && [ -n "${PXD_VM_RESULTS:-}" ]; then
    mkdir -p "$PXD_VM_RESULTS/powercut-evidence"
    cp --sparse=always "$WORK/base.img" "$WORK/log.img" "$WORK/journal" "$WORK/child.out" \
      "$PXD_VM_RESULTS/powercut-evidence/"
    echo "powercut: base image, log, journal kept in $PXD_VM_RESULTS/powercut-evidence"
  fi
  fail "the pool broke the durability contract at a power cut (seed $seed)"
fi
echo "powercut: ok"
