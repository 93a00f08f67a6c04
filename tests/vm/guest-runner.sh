#!/usr/bin/env bash
# tests/vm/guest-runner.sh RESULTS: runs inside the guest, chrooted into the host's root.
#
# Reads RESULTS/job (NAME=VALUE lines, a "--" line, then one script path per line, written
# by run-guest.sh), loads the kernel modules the tests use from the extracted kernel
# package, and runs each script under bash with its own time bound. Writes RESULTS/NAME.log
# (the script's output) and RESULTS/NAME.status (its exit status; 124 when it timed out).
set -u
results=$1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp PXD_TEST_TMPDIR=/tmp PXD_VM_RESULTS=$results
cd /

scripts=()
in_scripts=0
while IFS= read -r line; do
  if [ $in_scripts -eq 1 ]; then
    [ -n "$line" ] && scripts+=("$line")
  elif [ "$line" = "--" ]; then
    in_scripts=1
  else
    export "${line?}"
  fi
done <"$results/job"

# The modules live in the extracted package, not in /lib/modules of the host.
modprobe_all() {
  local m
  for m in ublk_drv nbd loop ext4 xfs crc32c_generic; do
    modprobe -d "$PXD_VM_MODROOT" "$m" || echo "guest-runner: modprobe $m failed"
  done
}
modprobe_all >"$results/modprobe.log" 2>&1
export PXD_VM_MODPROBE="modprobe -d $PXD_VM_MODROOT"

for s in "${scripts[@]}"; do
  name=$(basename "$s" .sh)
  echo "guest-runner: $name starts"
  started=$(date +%s)
  timeout -k 10 "$PXD_VM_SCRIPT_TIMEOUT" bash "$s" >"$results/$name.log" 2>&1 </dev/null
  status=$?
  echo "guest-runner: $name exit $status after $(( $(date +%s) - started )) s" |
    tee -a "$results/$name.log"
  echo "$status" >"$results/$name.status"
done
sync
exit 0
