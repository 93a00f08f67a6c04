#!/usr/bin/env bash
# Quick start, command one (as root on Debian 12): installs what pxd needs, builds pxd and
# its Debian package, installs the package (so the pxd that runs is the packaged one),
# starts pxd on its embedded default (one node, a sparse-file pool under /var/lib/pxd)
# and prints `pxctl status`.
# Under systemd the package runs pxd as pxd.service; elsewhere (containers, CI) pxd is
# started in the background with its log in /var/log/pxd.log, replacing the one an
# earlier run started.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root" >&2
  exit 1
fi
"$top/scripts/install-deps.sh"
deb=$("$top/scripts/package.sh")
for old in /etc/systemd/system/pxd.service /usr/local/sbin/pxd /usr/local/bin/pxctl; do
  if [ -e "$old" ]; then
    echo "install.sh: warning: $old (from an install before the package) shadows the" \
      "packaged one; remove it" >&2
  fi
done
# apt resolves the package's dependencies; --reinstall replaces a package of the same
# version (a rebuilt tree), which restarts pxd.service.
echo "install.sh: installing $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$deb" >/dev/null

socket=/run/pxd/pxd.sock
wait_ready() {
  for _ in $(seq 1 600); do
    if /usr/bin/pxctl --socket "$socket" status >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "install.sh: pxd did not become ready; see $1" >&2
  return 1
}

if [ -d /run/systemd/system ]; then
  systemctl enable pxd.service >/dev/null 2>&1
  systemctl start pxd.service
  wait_ready "journalctl -u pxd"
else
  # No systemd: stop the pxd an earlier run started (its pid is in the lock file), then
  # start the packaged one in its own session.
  lock=/var/lib/pxd/pxd.lock
  old=$(cat "$lock" 2>/dev/null || true)
  if [ -n "$old" ] && [ "$(cat "/proc/$old/comm" 2>/dev/null)" = pxd ]; then
    kill -TERM "$old"
    for _ in $(seq 1 900); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
  fi
  setsid nohup /usr/sbin/pxd >>/var/log/pxd.log 2>&1 </dev/null &
  wait_ready /var/log/pxd.log
fi
/usr/bin/pxctl status
