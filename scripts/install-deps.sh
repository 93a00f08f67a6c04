#!/usr/bin/env bash
# Installs every Debian 12 package pxd's build, tests and benchmarks use. Idempotent.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git
  liburing-dev librocksdb-dev libboost-dev nlohmann-json3-dev doctest-dev
  capnproto libcapnp-dev libsodium-dev libnbd-dev libcli11-dev libtomlplusplus-dev libsystemd-dev
  fio util-linux e2fsprogs xfsprogs jq
  libnbd-bin nbdkit fuse3 libblkid-dev
  qemu-utils python3-libnbd dmsetup
  qemu-system-x86 cpio kmod xz-utils
  systemd dpkg-dev file help2man
  docker.io busybox-static
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
