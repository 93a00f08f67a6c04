#!/usr/bin/env bash
# bench/ublk_vm_guest.sh: the guest half of bench/ublk_vm_bench.sh (run by
# tests/vm/run-guest.sh inside the qemu guest, as root).
#
# fio with io_uring and O_DIRECT on /dev/pxd<ID> of a pxd volume attached through ublk
# (kernel copy, then user copy), through pxd's NBD fallback (nbd-loop), and on a kernel
# loop device with direct I/O on a file, all on the guest's tmpfs (the same backing store),
# one target after another, in $PXD_BENCH_ROUNDS rounds (default 3) that rotate the order.
# Each target's first 256 MiB is written first, so reads touch the backing store. Writes
# one "TARGET ROW IOPS KIB_S" line per target, row and round to
# $PXD_VM_RESULTS/ublk_vm_bench.tsv and the features the driver offers to .features.
source "$PXD_SOURCE_DIR/tests/vm/pxd_lib.sh"
seconds=${PXD_BENCH_SECONDS:-8}
out=$PXD_VM_RESULTS/ublk_vm_bench.tsv
: >"$out"
"$UBLK_TOOL" --probe >"$PXD_VM_RESULTS/ublk_vm_bench.features"

# row_args ROW: fio options of ROW.
row_args() {
  case $1 in
    randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
    randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
    seqread-1m-qd4) echo "--rw=read --bs=1M --iodepth=4" ;;
    seqwrite-1m-qd4) echo "--rw=write --bs=1M --iodepth=4" ;;
  esac
}

# measure TARGET DEVICE: fills the first 256 MiB, then runs every row.
measure() {
  local target=$1 dev=$2 row result
  dd if=/dev/urandom of="$dev" bs=1M count=256 oflag=direct status=none
  for row in randread-4k-qd32 randwrite-4k-qd32 seqread-1m-qd4 seqwrite-1m-qd4; do
    # shellcheck disable=SC2046
    result=$(fio --name="$row" --filename="$dev" --ioengine=io_uring --direct=1 --size=256M \
      --time_based --runtime="$seconds" --ramp_time=1 --group_reporting \
      --output-format=terse --terse-version=3 $(row_args "$row")) || fail "fio $row on $target"
    # terse v3: read KiB/s 7, read IOPS 8; write KiB/s 48, write IOPS 49
    awk -F';' -v t="$target" -v r="$row" '{printf "%s %s %d %d\n", t, r, $8 + $49, $7 + $48}' \
      <<<"$result" | tail -n 1 >>"$out"
  done
  echo "measured $target"
}

# pxd_target TARGET PXD_OPTIONS...: a fresh pxd and pool, one 512 MiB raw volume attached.
pxd_target() {
  local target=$1 link
  shift
  start_pxd "$@"
  ctl volume create --size 512M --fs none bench >/dev/null
  link=$(ctl host attach bench)
  echo "$target: $link -> $(readlink "$link") ($(vol_field bench frontend))"
  measure "$target" "$link"
  ctl host detach bench >/dev/null
  stop_pxd || fail "pxd exit status $?"
  rm -rf "$WORK/data" "$WORK/pool.img"
}

echo 'ublk_copy = "kernel"' >"$WORK/kernel.conf"
echo 'ublk_copy = "user"' >"$WORK/user.conf"
PXD_POOL_SIZE=2G

# measure_target TARGET: one round of one target.
measure_target() {
  case $1 in
    ublk-kernel-copy) pxd_target ublk-kernel-copy --config "$WORK/kernel.conf" --attach-frontend ublk ;;
    ublk-user-copy) pxd_target ublk-user-copy --config "$WORK/user.conf" --attach-frontend ublk ;;
    nbd-loop) pxd_target nbd-loop --attach-frontend nbd-loop ;;
    loop-dio)
      truncate -s 512M "$WORK/loop.img"
      loopdev=$(losetup --direct-io=on --find --show "$WORK/loop.img")
      [ "$(cat "/sys/block/${loopdev#/dev/}/loop/dio")" = 1 ] || fail "$loopdev without direct I/O"
      measure loop-dio "$loopdev"
      losetup -d "$loopdev"
      rm -f "$WORK/loop.img"
      ;;
  esac
}

# Rounds, each starting one target later, so that no target always runs at the same point
# of the run (the guest's speed drifts with the host's load); the host takes medians.
targets=(ublk-kernel-copy ublk-user-copy nbd-loop loop-dio)
for round in $(seq "${PXD_BENCH_ROUNDS:-3}"); do
  for i in "${!targets[@]}"; do
    measure_target "${targets[$(((i + round - 1) % ${#targets[@]}))]}"
  done
  echo "round $round done"
done
