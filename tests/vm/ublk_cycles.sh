#!/usr/bin/env bash
# tests/vm/ublk_cycles.sh: 50 devices created, written, read back and stopped in one server
# process leave no thread, file descriptor or device behind.
source "$(dirname "$0")/ublk_lib.sh"

"$SERVER" "$WORK/pool" vol1 --size 64M --pool-size 256M --cycles 50 | tee "$WORK/cycles.out" ||
  fail "cycles"
[ -z "$("$SERVER" --list)" ] || fail "devices left: $("$SERVER" --list)"
ls /dev/ublkb* /dev/ublkc* 2>/dev/null && fail "device nodes left"
echo "ublk_cycles: ok"
