#!/bin/busybox sh
# tests/vm/guest-init.sh: /init of the guest's initramfs (busybox only; see run-guest.sh).
#
# Mounts the host's root read-only over 9p (tag hostroot) on /newroot and the results
# directory read-write (tag results) at its own path inside it, gives the new root its own
# proc, sys, dev and tmpfs /tmp and /run, chroots there to run the runner script named on
# the kernel command line (pxd.runner=), and powers the guest off whatever happens. PID 1
# must never exit: the kernel would panic (panic=-1 then reboots, which ends qemu too).
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "PXD-VM-INIT-FAILED: $*"
  poweroff -f
  sleep 5
  echo o >/proc/sysrq-trigger
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

runner=""
results=""
systemd=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    pxd.runner=*) runner=${arg#pxd.runner=} ;;
    pxd.results=*) results=${arg#pxd.results=} ;;
    pxd.systemd=1) systemd=1 ;;
  esac
done
[ -n "$runner" ] && [ -n "$results" ] || fail "pxd.runner= or pxd.results= missing"

for m in $(cat /modules/order); do
  insmod "/modules/$m.ko" || fail "insmod $m"
done

opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot || fail "mount hostroot"
mount -t 9p -o "$opts" results "/newroot$results" || fail "mount results"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm 2>/dev/null
ln -s /proc/self/fd /newroot/dev/fd
ln -s /proc/self/fd/0 /newroot/dev/stdin
ln -s /proc/self/fd/1 /newroot/dev/stdout
ln -s /proc/self/fd/2 /newroot/dev/stderr
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=755 tmpfs /newroot/run

# pxd.systemd=1 (run-guest.sh --systemd): the host's systemd becomes PID 1 in the new
# root and runs the runner as a oneshot service that powers the guest off when it ends, so
# scripts can test units under a real service manager. /run already holds a tmpfs, which
# systemd keeps; the unit goes there.
if [ "$systemd" = 1 ]; then
  mkdir -p /newroot/run/systemd/system
  cat >/newroot/run/systemd/system/pxd-vm-runner.service <<UNIT
[Unit]
Description=pxd guest test runner
[Service]
Type=oneshot
ExecStart=/bin/bash $runner $results
ExecStopPost=/bin/systemctl --force poweroff
UNIT
  echo "PXD-VM-BOOTED"
  exec switch_root /newroot /lib/systemd/systemd --unit=pxd-vm-runner.service --show-status=0
fi

echo "PXD-VM-BOOTED"
chroot /newroot /bin/bash "$runner" "$results"
echo "PXD-VM-RUNNER-EXIT: $?"
sync
poweroff -f
sleep 5
echo o >/proc/sysrq-trigger
