#!/usr/bin/env bash
# tests/vm/run-guest.sh: runs test scripts inside a qemu guest booted on Debian's 6.12 kernel.
#
#   run-guest.sh [--results DIR] [--timeout SECONDS] [--script-timeout SECONDS]
#                [--env NAME=VALUE]... [--systemd] SCRIPT...
#
# The host kernel has no ublk_drv and no nbd, so tests of real ublk devices run in a guest:
# the newest linux-image-6.12.*+deb12-amd64-unsigned Debian offers, booted under qemu with
# software emulation (see ../shared/ENVIRONMENT.md). The guest sees the host's root read-only
# over 9p (so the freshly built binaries and these scripts run unchanged), has its own tmpfs
# on /tmp and /run (which hides the host's: keep inputs elsewhere), and writes its results
# into DIR, a second 9p share mounted read-write at the same path.
#
# Each SCRIPT runs in turn under bash as root in the guest, after `modprobe ublk_drv nbd loop
# ext4 xfs crc32c_generic`, with its own time bound, its output in DIR/NAME.log and its exit
# status in DIR/NAME.status. With --systemd, systemd (the host's) is the guest's PID 1 and
# runs the scripts as a service, for tests of pxd.service itself; guest-init.sh says how.
# The guest's console is in DIR/console.log. Exit status: 0 if
# every script passed, 1 if one failed, 2 if the guest did not report (crash or timeout), 3
# for a setup failure (kernel download, qemu missing).
#
# The kernel and busybox are downloaded once (apt-get download) and kept, extracted, in
# $PXD_VM_CACHE (default /var/cache/pxd-vm); PXD_VM_KERNEL_PACKAGE pins a package name.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${PXD_VM_CACHE:-/var/cache/pxd-vm}
results=""
timeout_s=600
script_timeout_s=300
envs=()
scripts=()
boot_args=""

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 3; }
while [ $# -gt 0 ]; do
  case "$1" in
    --results) results=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --script-timeout) script_timeout_s=$2; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --systemd) boot_args="pxd.systemd=1"; shift ;;
    -h|--help) usage ;;
    -*) echo "run-guest: unknown option $1" >&2; usage ;;
    *) scripts+=("$1"); shift ;;
  esac
done
[ ${#scripts[@]} -gt 0 ] || usage
for s in "${scripts[@]}"; do
  [ -f "$s" ] || { echo "run-guest: no such script: $s" >&2; exit 3; }
done

die() { echo "run-guest: $*" >&2; exit 3; }

# --- the kernel and busybox, downloaded once ---------------------------------------------

# Newest package of the family that apt can actually download (some names are only
# referenced and have no candidate).
newest_kernel_package() {
  local pkg
  for pkg in $(apt-cache pkgnames linux-image-6.12. 2>/dev/null |
               grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | sort -rV); do
    if apt-cache policy "$pkg" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
      echo "$pkg"
      return 0
    fi
  done
  return 1
}

# Downloads and extracts `pkg` into $cache/$dir unless already there. REQUIRES: lock held.
fetch_package() {
  local pkg=$1 dir=$cache/$2
  [ -f "$dir/.complete" ] && return 0
  rm -rf "$dir" "$dir.partial"
  mkdir -p "$dir.partial/root"
  echo "run-guest: downloading $pkg into $dir" >&2
  (cd "$dir.partial" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) || return 1
  dpkg -x "$dir.partial"/*.deb "$dir.partial/root" || return 1
  rm -f "$dir.partial"/*.deb
  touch "$dir.partial/.complete"
  mv "$dir.partial" "$dir"
}

prepare_kernel() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9  # parallel runs share one download
  local pkg=${PXD_VM_KERNEL_PACKAGE:-}
  if [ -z "$pkg" ]; then
    pkg=$(newest_kernel_package) || {
      apt-get update -qq >&2 || true
      pkg=$(newest_kernel_package)
    } || pkg=""
  fi
  if [ -n "$pkg" ] && fetch_package "$pkg" "$pkg"; then
    kernel_dir=$cache/$pkg
  else
    # Offline: fall back to the newest kernel already cached.
    kernel_dir=$(ls -d "$cache"/linux-image-6.12.*/ 2>/dev/null | sort -V | tail -1) || true
    kernel_dir=${kernel_dir%/}
    [ -n "$kernel_dir" ] && [ -f "$kernel_dir/.complete" ] ||
      die "cannot download a linux-image-6.12.*+deb12-amd64-unsigned package (package: '${pkg}')"
    echo "run-guest: download failed, using cached $(basename "$kernel_dir")" >&2
  fi
  fetch_package busybox-static busybox-static ||
    [ -f "$cache/busybox-static/.complete" ] || die "cannot download busybox-static"
  kver=$(ls "$kernel_dir/root/lib/modules" | head -1)
  [ -n "$kver" ] && [ -f "$kernel_dir/root/boot/vmlinuz-$kver" ] ||
    die "no kernel in $kernel_dir"
  if [ ! -f "$kernel_dir/root/lib/modules/$kver/modules.dep.bin" ]; then
    depmod -b "$kernel_dir/root" "$kver" || die "depmod failed"
  fi
  flock -u 9
  exec 9>&-
}

# The initramfs: static busybox, the 9p modules decompressed, and our /init.
build_initramfs() {
  local out=$1 staging
  staging=$(mktemp -d "$results/.initramfs.XXXXXX")
  mkdir -p "$staging"/{bin,dev,proc,sys,newroot,modules}
  cp "$cache/busybox-static/root/bin/busybox" "$staging/bin/busybox"
  local moddir=$kernel_dir/root/lib/modules/$kver m path
  for m in netfs 9pnet 9pnet_virtio 9p; do
    path=$(modinfo -b "$kernel_dir/root" -k "$kver" -F filename "$m" 2>/dev/null) ||
      die "module $m not found in $moddir"
    case "$path" in
      (builtin*) continue ;;
      (*.xz) xz -dc "$path" >"$staging/modules/$m.ko" ;;
      (*.zst) zstd -qdc "$path" >"$staging/modules/$m.ko" ;;
      (*) cp "$path" "$staging/modules/$m.ko" ;;
    esac
    echo "$m" >>"$staging/modules/order"
  done
  cp "$here/guest-init.sh" "$staging/init"
  chmod 755 "$staging/init" "$staging/bin/busybox"
  (cd "$staging" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$out"
  rm -rf "$staging"
}

# --- one guest run -------------------------------------------------------------------------

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (scripts/install-deps.sh)"
if [ -z "$results" ]; then
  results=$(mktemp -d /var/tmp/pxd-vm-XXXXXX)
fi
mkdir -p "$results"
results=$(cd "$results" && pwd)
case "$results" in
  /tmp/*|/run/*) die "--results must be outside /tmp and /run (the guest hides them)" ;;
esac
rm -f "$results"/*.log "$results"/*.status "$results"/job "$results"/initrd.img

prepare_kernel

build_initramfs "$results/initrd.img"

# The job the guest runner reads: variables, then one script per line.
{
  echo "PXD_VM_MODROOT=$kernel_dir/root"
  echo "PXD_VM_SCRIPT_TIMEOUT=$script_timeout_s"
  for e in "${envs[@]}"; do echo "$e"; done
  echo "--"
  for s in "${scripts[@]}"; do (cd "$(dirname "$s")" && echo "$(pwd)/$(basename "$s")"); done
} >"$results/job"

cpus=${PXD_VM_CPUS:-2}
mem=${PXD_VM_MEM_MB:-2048}
echo "run-guest: booting $kver (${cpus} vCPU, ${mem} MiB, TCG); results in $results" >&2
started=$(date +%s)
# --pdeathsig: qemu dies with this script even if the script is SIGKILLed.
setpriv --pdeathsig KILL -- qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -m "$mem" -smp "$cpus" \
  -kernel "$kernel_dir/root/boot/vmlinuz-$kver" -initrd "$results/initrd.img" \
  -append "console=ttyS0 quiet panic=-1 pxd.runner=$here/guest-runner.sh pxd.results=$results $boot_args" \
  -display none -monitor none -serial "file:$results/console.log" -no-reboot \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$results,mount_tag=results,security_model=none,multidevs=remap" \
  </dev/null >"$results/qemu.log" 2>&1 &
qemu_pid=$!
trap 'kill -KILL $qemu_pid 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

timed_out=0
while kill -0 "$qemu_pid" 2>/dev/null; do
  if [ $(( $(date +%s) - started )) -ge "$timeout_s" ]; then
    timed_out=1
    kill -KILL "$qemu_pid" 2>/dev/null || true
    break
  fi
  sleep 1
done
wait "$qemu_pid" 2>/dev/null || true
elapsed=$(( $(date +%s) - started ))

# --- report ------------------------------------------------------------------------------

rc=0
for s in "${scripts[@]}"; do
  name=$(basename "$s" .sh)
  if [ -f "$results/$name.status" ]; then
    status=$(cat "$results/$name.status")
    if [ "$status" = 0 ]; then
      echo "run-guest: PASS $name"
    else
      echo "run-guest: FAIL $name (exit $status); log $results/$name.log:"
      sed 's/^/    /' "$results/$name.log" | tail -n 200
      [ $rc -eq 0 ] && rc=1
    fi
  else
    echo "run-guest: NO RESULT $name"
    [ -f "$results/$name.log" ] && sed 's/^/    /' "$results/$name.log" | tail -n 100
    rc=2
  fi
done
if [ $rc -eq 2 ] || [ $timed_out -eq 1 ]; then
  [ $timed_out -eq 1 ] && echo "run-guest: guest killed after ${timeout_s} s"
  echo "run-guest: console ($results/console.log), last lines:"
  tail -n 60 "$results/console.log" 2>/dev/null | sed 's/^/    /'
  sed 's/^/    qemu: /' "$results/qemu.log" 2>/dev/null || true
  rc=2
fi
echo "run-guest: guest ran ${elapsed} s"
exit $rc
