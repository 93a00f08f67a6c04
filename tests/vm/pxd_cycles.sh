#!/usr/bin/env bash
# tests/vm/pxd_cycles.sh: 50 attach/detach cycles through pxd leave no ublk device, pxd
# thread or pxd file descriptor behind; then 32 volumes attached at once all do verified
# I/O together, and detaching them all gives everything back.
source "$(dirname "$0")/pxd_lib.sh"
cycles=${PXD_VM_CYCLES:-50}

# answers LINK ROUND: one 4 KiB direct write and read back through LINK.
answers() {
  head -c 4096 /dev/urandom >"$WORK/block"
  dd if="$WORK/block" of="$1" bs=4k seek="$2" oflag=direct conv=notrunc status=none &&
    cmp <(dd if="$1" bs=4k skip="$2" count=1 iflag=direct status=none) "$WORK/block"
}

start_pxd
ctl volume create --size 64M --fs none c >/dev/null
# The first cycle warms up what stays (engine threads, rings of the control path).
link=$(ctl host attach c)
answers "$link" 0 || fail "warm-up cycle: no answer"
ctl host detach c >/dev/null
read -r threads0 fds0 < <(pxd_counts)
names0=$(pxd_thread_names)
for i in $(seq "$cycles"); do
  link=$(ctl host attach c)
  answers "$link" "$i" || fail "cycle $i: $link does not answer"
  ctl host detach c >/dev/null
done
# A thread still on its way out is not a leak: give the counts up to 3 s to settle.
for _ in $(seq 30); do
  read -r threads fds < <(pxd_counts)
  [ "$threads" = "$threads0" ] && [ "$fds" = "$fds0" ] && break
  sleep 0.1
done
echo "cycles: $cycles, pxd threads $threads0 -> $threads, fds $fds0 -> $fds"
if [ "$threads" != "$threads0" ] || [ "$fds" != "$fds0" ]; then
  echo "pxd threads before: $names0"
  echo "pxd threads after:  $(pxd_thread_names)"
  fail "threads or descriptors leaked"
fi
ls /dev/ublkb* /dev/ublkc* 2>/dev/null && fail "ublk device nodes left"
[ -z "$("$UBLK_TOOL" --list)" ] || fail "devices left: $("$UBLK_TOOL" --list)"

# 32 volumes at once, one fio job each, verified.
count=32
{
  echo "[global]"
  echo "ioengine=io_uring"
  echo "direct=1"
  echo "bs=4k"
  echo "rw=randrw"
  echo "size=4M"
  echo "iodepth=32"
  echo "verify=crc32c"
  echo "verify_fatal=1"
  echo "group_reporting=1"
} >"$WORK/many.fio"
for i in $(seq "$count"); do
  ctl volume create --size 64M --fs none "m$i" >/dev/null
  link=$(ctl host attach "m$i")
  printf '[m%s]\nfilename=%s\n' "$i" "$link" >>"$WORK/many.fio"
done
[ "$("$UBLK_TOOL" --list | grep -c ' live ')" = "$count" ] || fail "not $count live devices"
fio --output-format=terse --terse-version=3 "$WORK/many.fio" >"$WORK/many.out" 2>&1 ||
  { cat "$WORK/many.out"; fail "fio on $count volumes"; }
awk -F';' '{printf "fio on '"$count"' volumes: errors %s, read %s KiB, written %s KiB\n", $5, $6, $47}' \
  "$WORK/many.out" | tail -n 1
read -r threads_many fds_many < <(pxd_counts)
echo "with $count attached: pxd threads $threads_many, fds $fds_many"
for i in $(seq "$count"); do ctl host detach "m$i" >/dev/null; done
read -r threads fds < <(pxd_counts)
[ "$threads" = "$threads0" ] && [ "$fds" = "$fds0" ] ||
  fail "after $count detaches: threads $threads0 -> $threads, fds $fds0 -> $fds"
[ -z "$("$UBLK_TOOL" --list)" ] || fail "devices left: $("$UBLK_TOOL" --list)"
stop_pxd || fail "pxd exit status $?"
echo "pxd_cycles: ok"
