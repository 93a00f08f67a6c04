# tests/vm/vm_lib.sh: helpers every guest test shares (bash, in the guest, as root).
# The sourcing library defines WORK (a private directory) and fail (report and exit 1).

# fio_verify NAME ARGS...: fio with crc32c verification; fails the test on any error.
fio_verify() {
  local name=$1
  shift
  fio --name="$name" --ioengine=io_uring --direct=1 --bs=4k --verify=crc32c --verify_fatal=1 \
    --group_reporting --output-format=terse --terse-version=3 "$@" >"$WORK/fio-$name.out" 2>&1 ||
    { cat "$WORK/fio-$name.out"; fail "fio $name"; }
  # terse v3: field 5 is the error count, 6 read KiB, 47 written KiB
  awk -F';' '{printf "fio %s: errors %s, read %s KiB, written %s KiB\n", $3, $5, $6, $47}' \
    "$WORK/fio-$name.out" | tail -n 1
}

# expect_error WHAT TEXT CMD...: CMD fails and its output says TEXT.
expect_error() {
  local what=$1 text=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  [ $rc -ne 0 ] || fail "$what: succeeded: $out"
  grep -q -- "$text" <<<"$out" || fail "$what: expected '$text', got: $out"
  echo "$what: refused ($(tail -n 1 <<<"$out"))"
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# wait_for SECONDS WHAT CMD...: CMD succeeds within SECONDS (polled every 0.1 s).
wait_for() {
  local limit=$1 what=$2 i
  shift 2
  for i in $(seq $((limit * 10))); do
    "$@" && return 0
    sleep 0.1
  done
  fail "$what: not within $limit s"
}
