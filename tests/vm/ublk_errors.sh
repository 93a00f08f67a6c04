#!/usr/bin/env bash
# tests/vm/ublk_errors.sh: bad requests get a clear error and change nothing; user copy
# serves data as the default copy mode does; a device that is not recoverable goes away
# with its server; without ublk_drv, probing says so.
source "$(dirname "$0")/ublk_lib.sh"

expect_error "recover unknown device" "does not exist" "$SERVER" "$WORK/p0" v --recover 77
expect_error "queue depth 0" "queue depth 0" "$SERVER" "$WORK/p0" v --depth 0
expect_error "queue depth 5000" "queue depth 5000" "$SERVER" "$WORK/p0" v --depth 5000
expect_error "remove unknown device" "does not exist" "$SERVER" --remove 77

start_server "$WORK/p1" vol1 --size 64M --pool-size 256M
a_pid=$SERVER_PID
a_id=$DEV_ID
expect_error "device id taken" "already exists" "$SERVER" "$WORK/p2" vol1 --dev-id "$a_id"
expect_error "remove a served device" "served by live process $a_pid" "$SERVER" --remove "$a_id"
# In pool p2, vol1 has id 1 like the served volume and `other` id 2.
"$SERVER" "$WORK/p2" other --cycles 1 >/dev/null 2>&1 || fail "pool p2"
expect_error "recover another volume's device" "served volume 1, not volume 2" \
  "$SERVER" "$WORK/p2" other --recover "$a_id"
expect_error "recover a served device" "served by live process $a_pid" \
  "$SERVER" "$WORK/p2" vol1 --recover "$a_id"
expect_error "recover another owner's device" "belongs to owner 0, not 7" \
  "$SERVER" "$WORK/p2" vol1 --recover "$a_id" --owner 7
[ "$("$SERVER" --list | wc -l)" = 1 ] || fail "refusals changed the devices: $("$SERVER" --list)"
dd if=/dev/zero of="/dev/ublkb$a_id" bs=4k count=1 oflag=direct status=none || fail "device A broken"
stop_server "$a_pid" || fail "server A exit status $?"

# User copy: the server moves the data through /dev/ublkcN.
start_server "$WORK/p3" vol1 --size 128M --pool-size 256M --user-copy
grep -q "user copy" "$SERVER_LOG" || fail "user copy not in use"
fio_verify usercopy --filename="/dev/ublkb$DEV_ID" --rw=randrw --size=16M --offset_increment=16M \
  --numjobs=2 --iodepth=32
fio_verify usercopy-seq --filename="/dev/ublkb$DEV_ID" --rw=write --bs=1M --size=32M --iodepth=4
stop_server "$SERVER_PID" || fail "user copy server exit status $?"

# Not recoverable: the driver removes the disk when its server dies.
start_server "$WORK/p4" vol1 --size 64M --pool-size 256M --not-recoverable
id=$DEV_ID
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
for i in $(seq 300); do
  [ -e "/dev/ublkb$id" ] || break
  sleep 0.1
done
[ ! -e "/dev/ublkb$id" ] || fail "disk of a dead non-recoverable server still there"
"$SERVER" --list | grep -q "^$id dead " || fail "not dead: $("$SERVER" --list)"
expect_error "recover a non-recoverable device" "not created recoverable" \
  "$SERVER" "$WORK/p4" vol1 --recover "$id"
"$SERVER" --remove "$id" || fail "remove the dead device"
[ -z "$("$SERVER" --list)" ] || fail "devices left: $("$SERVER" --list)"

# Without the driver.
rmmod ublk_drv || fail "rmmod ublk_drv"
expect_error "probe without ublk_drv" "ublk_drv kernel module is not loaded" "$SERVER" --probe
expect_error "serve without ublk_drv" "not loaded" "$SERVER" "$WORK/p1" vol1
$PXD_VM_MODPROBE ublk_drv || fail "modprobe ublk_drv"
"$SERVER" --probe
echo "ublk_errors: ok"
