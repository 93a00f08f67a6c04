#!/usr/bin/env bash
# Quick start, command one (as root on Debian 12): installs what pxd needs, builds it,
# installs pxd and pxctl under /usr/local, starts pxd on its embedded default (one node,
# a sparse-file pool under /var/lib/pxd) and prints `pxctl status`.
# Under systemd, pxd runs as pxd.service; elsewhere (containers, CI) it is started in the
# background with its log in /var/log/pxd.log.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh"
build=${PXD_BUILD_DIR:-$top/build}
cmake --install "$build" --prefix /usr/local >/dev/null
getent group pxd >/dev/null || groupadd --system pxd

socket=/run/pxd/pxd.sock
wait_ready() {
  for _ in $(seq 1 300); do
    if /usr/local/bin/pxctl --socket "$socket" status >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "pxd did not become ready; see ${1}" >&2
  return 1
}

if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && command -v systemctl >/dev/null; then
  install -m 0644 "$top/packaging/pxd.service" /etc/systemd/system/pxd.service
  systemctl daemon-reload
  systemctl enable pxd.service >/dev/null 2>&1
  systemctl restart pxd.service
  wait_ready "journalctl -u pxd"
else
  # No systemd: replace a pxd we started before, then start the new one.
  if [ -f /var/lib/pxd/pxd.lock ]; then
    old=$(cat /var/lib/pxd/pxd.lock 2>/dev/null || true)
    if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
      kill -TERM "$old"
      for _ in $(seq 1 300); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  nohup /usr/local/sbin/pxd >>/var/log/pxd.log 2>&1 </dev/null &
  wait_ready /var/log/pxd.log
fi
/usr/local/bin/pxctl status
