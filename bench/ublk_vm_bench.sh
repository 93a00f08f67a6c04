#!/usr/bin/env bash
# bench/ublk_vm_bench.sh: pxd's ublk frontend against the kernel loop device and against
# pxd's own NBD fallback, measured in one run inside the qemu guest (tests/vm/).
#
#   bench/ublk_vm_bench.sh [--build DIR] [--seconds S] [--rounds N] [--json] [--results DIR]
#
# The guest half (bench/ublk_vm_guest.sh) runs fio (io_uring, O_DIRECT) on a pxd volume
# attached through ublk with kernel copy and with user copy, through nbd-loop, and on a
# loop device with direct I/O on a file of the same tmpfs: 4 KiB random read and write at
# queue depth 32, 1 MiB sequential read and write at depth 4, S seconds each (default 5),
# in N rounds (default 3) that rotate the targets' order; each figure is the median.
# Prints a table, or with --json one line per figure in pxbench's format ({"bench",
# "case", "pxd", "baseline", "baseline_name", "ratio", "unit", "target", "pass"}).
# Under software emulation absolute figures mean little; the ratios are the result
# (doc/ublk.md has the targets and why). Not part of the test suite. Exit status: 0 when
# it ran, 1 when it failed (targets missed are reported, not failed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(dirname "$here")
build=$source_dir/build
seconds=5
rounds=3
json=0
results=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --json) json=1; shift ;;
    --results) results=$2; shift 2 ;;
    *) sed -n '4p' "$0" | sed 's/^# *//' >&2; exit 2 ;;
  esac
done
build=$(cd "$build" && pwd)
[ -n "$results" ] || results=$(mktemp -d /var/tmp/pxd-ublk-bench-XXXXXX)
"$source_dir/tests/vm/run-guest.sh" --results "$results" --timeout 1500 --script-timeout 1400 \
  --env "PXD_BUILD_DIR=$build" --env "PXD_SOURCE_DIR=$source_dir" \
  --env "PXD_BENCH_SECONDS=$seconds" --env "PXD_BENCH_ROUNDS=$rounds" "$here/ublk_vm_guest.sh" >&2 || {
  echo "ublk_vm_bench: the guest run failed; see $results" >&2
  exit 1
}
tsv=$results/ublk_vm_bench.tsv
features=$(sed 's/^features: //' "$results/ublk_vm_bench.features")

# value TARGET ROW: the median over the rounds; IOPS for 4 KiB rows, MiB/s for 1 MiB rows.
value() {
  awk -v t="$1" -v r="$2" '$1 == t && $2 == r { print (r ~ /^seq/) ? $4 / 1024 : $3 }' "$tsv" |
    sort -g | awk '{ v[NR] = $1 } END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      if (NR == 0) m = 0
      printf (m == int(m) && m > 1000) ? "%d" : "%.1f", m }'
}
target_of() {
  case $1 in
    randread-4k-qd32) echo 0.35 ;;
    randwrite-4k-qd32) echo 0.25 ;;
    seqread-1m-qd4) echo 0.30 ;;
    seqwrite-1m-qd4) echo 0.20 ;;
  esac
}
emit() {  # CASE PXD BASELINE BASELINE_NAME UNIT TARGET
  local ratio
  ratio=$(awk -v p="$2" -v b="$3" 'BEGIN { if (b > 0) printf "%.3f", p / b; else print "null" }')
  if [ $json = 1 ]; then
    jq -nc --arg c "$1" --argjson p "$2" --argjson b "$3" --arg bn "$4" --argjson r "$ratio" \
      --arg u "$5" --arg t "$6" --arg f "$features" '
      {bench: "ublk", case: $c, pxd: $p, baseline: $b, baseline_name: $bn, ratio: $r, unit: $u}
      + (if $t == "" then {} else {target: ("ratio>=" + $t), pass: ($r >= ($t | tonumber))} end)
      + {kernel_features: $f}'
  else
    printf '%-34s %10s %10s %-14s %6s %-6s %s\n' "$1" "$2" "$3" "$4" "$ratio" "$5" \
      "${6:+ratio>=$6$(awk -v r="$ratio" -v t="$6" 'BEGIN { if (r + 0 < t + 0) print " MISSED" }')}"
  fi
}
[ $json = 1 ] || printf '%-34s %10s %10s %-14s %6s %-6s %s\n' case pxd baseline baseline_name \
  ratio unit target
for row in randread-4k-qd32 randwrite-4k-qd32 seqread-1m-qd4 seqwrite-1m-qd4; do
  unit=IOPS
  case $row in seq*) unit=MiB/s ;; esac
  loop=$(value loop-dio "$row")
  nbd=$(value nbd-loop "$row")
  for mode in kernel-copy user-copy; do
    ublk=$(value "ublk-$mode" "$row")
    t=""
    [ $mode = kernel-copy ] && t=$(target_of "$row")
    emit "$row/ublk-$mode" "$ublk" "$loop" loop-dio "$unit" "$t"
    emit "$row/ublk-$mode-vs-nbd" "$ublk" "$nbd" pxd-nbd-loop "$unit" ""
  done
  emit "$row/nbd-loop" "$nbd" "$loop" loop-dio "$unit" ""
done
[ $json = 1 ] || echo "kernel: $(uname -r) host, guest ublk features: $features; results in $results"
