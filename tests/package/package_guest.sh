#!/usr/bin/env bash
# tests/package/package_guest.sh: the Debian package's maintainer scripts under a running
# systemd, in the guest (run-package-vm.sh). The guest's root is the host's, read-only:
# /etc, /usr and /var get a tmpfs overlay first, so dpkg can install, and the host never
# sees it. Checks: install enables and starts pxd.service on the embedded default; an
# upgrade restarts pxd and a mounted volume carries on; removal is refused while it is
# mounted, then stops pxd; purge removes the configuration and the unit's records but
# keeps /var/lib/pxd. Along the way: a mount pxd makes is ordered before pxd.service stops.
set -euo pipefail
: "${PXD_DEB:?}" "${PXD_VM_MODPROBE:?}"
MNT=/tmp/pxd-package/mnt

fail() {
  echo "FAIL: $*"
  systemctl status pxd --no-pager 2>&1 | head -20 || true
  journalctl -u pxd --no-pager 2>&1 | tail -40 || true
  exit 1
}
[ "$(cat /proc/1/comm)" = systemd ] || fail "systemd is not PID 1 (run with run-guest.sh --systemd)"
prop() { systemctl show -p "$1" --value pxd; }
step() { echo "== $(date +%T) $*"; }

overlaid=()
cleanup() {
  local rc=$?
  set +e
  mountpoint -q "$MNT" && { pxctl host unmount v1 "$MNT" || umount -l "$MNT"; }
  systemctl stop pxd 2>/dev/null
  # The runner writes this script's status into the results directory after it exits,
  # which may lie under /var (a checkout in /var/tmp): the overlays must be gone by then.
  local d
  for d in "${overlaid[@]}"; do umount -l "$d"; done
  exit $rc
}
trap cleanup EXIT

$PXD_VM_MODPROBE overlay || fail "no overlay module"
# Room for the default pool (sparse; pxd wants 1.25 GiB free), whatever the guest's RAM.
mkdir -p /tmp/overlay
mount -t tmpfs -o size=16G tmpfs /tmp/overlay
for d in etc usr var; do
  mkdir -p "/tmp/overlay/$d-upper" "/tmp/overlay/$d-work"
  mount -t overlay overlay \
    -o "lowerdir=/$d,upperdir=/tmp/overlay/$d-upper,workdir=/tmp/overlay/$d-work" "/$d" ||
    fail "overlay on /$d"
  overlaid=("/$d" "${overlaid[@]}")
done
# A container-style policy-rc.d (exit 101) on the host would stop postinst from starting
# pxd, which is what this test is about.
rm -f /usr/sbin/policy-rc.d
# man-db's trigger would re-index the host's every man page under emulation: minutes.
rm -f /var/lib/man-db/auto-update
[ ! -e /usr/sbin/pxd ] && [ ! -e /var/lib/pxd ] || fail "pxd is already on this root"

systemctl reset-failed pxd 2>/dev/null || true  # the start limit, after the other script

step "install"
timeout 120 dpkg -i "$PXD_DEB" || fail "dpkg -i"
[ "$(systemctl is-enabled pxd)" = enabled ] || fail "not enabled"
[ "$(prop ActiveState)" = active ] || fail "not started by postinst"
pid=$(prop MainPID)
[ "$(readlink /proc/$pid/exe)" = /usr/sbin/pxd ] || fail "pxd.service runs $(readlink /proc/$pid/exe)"
pxctl status || fail "pxctl status"
[ -f /var/lib/pxd/pool0.img ] || fail "no default pool in /var/lib/pxd"
[ "$(stat -c '%a %U %G' /run/pxd)" = "750 root pxd" ] || fail "/run/pxd: $(stat -c '%a %U %G' /run/pxd)"
[ "$(stat -c '%a %U %G' /run/pxd/pxd.sock)" = "660 root pxd" ] ||
  fail "socket: $(stat -c '%a %U %G' /run/pxd/pxd.sock)"
[ -S /run/docker/plugins/pxd.sock ] || fail "no Docker plugin socket"

pxctl volume create v1 --size 256M >/dev/null || fail "volume create"
pxctl host mount v1 "$MNT" || fail "host mount"
echo one >"$MNT/f" && sync
# At shutdown systemd unmounts it before stopping pxd: its mount unit is ordered after
# pxd.service by a runtime drop-in pxd wrote (daemon/mount_order.h).
unit=$(systemd-escape --path --suffix=mount "$MNT")
dropin=/run/systemd/system/$unit.d/50-pxd.conf
[ -f "$dropin" ] || fail "no drop-in $dropin"
systemctl show -p After "$unit" | grep -qw pxd.service ||
  fail "$unit is not ordered after pxd.service: $(systemctl show -p After "$unit")"

step "upgrade (the same package again)"
timeout 120 dpkg -i "$PXD_DEB" || fail "dpkg -i again"
[ "$(prop ActiveState)" = active ] || fail "not active after the upgrade"
[ "$(prop MainPID)" != "$pid" ] || fail "the upgrade did not restart pxd"
[ "$(timeout 30 cat "$MNT/f")" = one ] || fail "the file changed across the upgrade"
echo two >>"$MNT/f" && sync
[ "$(pxctl -j volume inspect v1 | grep -c '"state": "mounted"')" = 1 ] || fail "v1 not mounted"

step "remove while mounted"
if out=$(timeout 120 dpkg -r pxd 2>&1); then fail "removal went ahead under a mounted volume"; fi
[[ "$out" == *"pxd: not removing"* ]] || fail "no reason given: $out"
state=$(dpkg-query -W -f='${db:Status-Abbrev}' pxd)
# Still installed ("i"); dpkg -r leaves the wish to remove it ("r") recorded.
[ "${state:1:1}" = i ] || fail "package state '$state' after the refused removal: $out"
[ "$(prop ActiveState)" = active ] || fail "pxd stopped by the refused removal"
[ "$(printf 'one\ntwo')" = "$(cat "$MNT/f")" ] || fail "file after the refused removal"

step "remove"
pxctl host unmount v1 "$MNT" || fail "host unmount"
[ ! -e "$dropin" ] || fail "$dropin left after the unmount"
timeout 120 dpkg -r pxd || fail "dpkg -r"
[ "$(prop ActiveState)" = inactive ] || fail "pxd still $(prop ActiveState) after removal"
[ ! -e /usr/sbin/pxd ] || fail "/usr/sbin/pxd left"
[ -f /etc/pxd/pxd.conf ] || fail "remove (not purge) dropped the conffile"
[[ "$(journalctl -u pxd --no-pager)" == *"]: stopped"* ]] || fail "no clean stop in the journal"

step "purge"
timeout 120 dpkg --purge pxd || fail "dpkg --purge"
[ ! -e /etc/pxd ] || fail "/etc/pxd left"
for link in /etc/systemd/system/multi-user.target.wants/pxd.service /etc/systemd/system/pxd.service; do
  [ ! -e "$link" ] && [ ! -L "$link" ] || fail "$link left"
done
[ -f /var/lib/pxd/pool0.img ] || fail "purge removed the pool data"
echo "PASS"
