#!/usr/bin/env python3
"""tests/vm/powercut_replay.py: replays a dm log-writes log and checks the engine at cut points.

  powercut_replay.py --log LOG --base BASE --work DIR --mount MNT --journal JOURNAL
                     --tool ENGINE_POWERCUT_TOOL [--checks N] [--seed S] [--deadline SECONDS]

BASE is the data device as it was when logging began (the filesystem holding the fresh
pool); LOG is the log device of the dm log-writes target that sat over it while the child
ran. Applying the log's entries in order to a copy of BASE gives the device as a power cut
after that entry would have left it: the target logs a write only once a flush has made it
durable (or at once for FUA), so unflushed writes, the page cache and RocksDB's unsynced
WAL are all lost at each such point. At up to N points (every mark of the child's flushes
when there are few enough, plus random entries between them, plus the start and the end),
the replayed image is copied, the copy is mounted at MNT (ext4 replays its journal there,
where the pool's paths point) and engine_powercut_tool checks the pool against the child's
JOURNAL and the marks in the replayed prefix. Exit status 0 when every point passed.

The log (drivers/md/dm-log-writes.c): a super at byte 0 (le64 magic, version,
nr_entries; le32 sectorsize), then nr_entries entries from byte sectorsize on, each a
sectorsize-sized header (le64 sector, nr_sectors, flags, data_len; a mark's name follows
it) and, unless it is a discard, nr_sectors * sectorsize bytes of data. Sectors count in
the data device's logical block size.

The log's order is not quite the device's (see the comment at the top of dm-log-writes.c): a
FUA write is logged when it completes, a plain write only at the next flush. So a plain
write W that completed before a FUA write F to the same sectors was even submitted is logged
after F, and replaying in log order would put W's older data over F's newer data, a state
no disk can reach (a completed FUA write is on the medium, and a write cached before it does
not overwrite it later). The child never has two requests on one block in flight and the
engine issues a request's device writes before completing it, so where a plain entry would
overwrite a block of the child's (volume, LBA, seq) that a FUA entry left at the same place
with the same volume and LBA and a newer seq, the FUA entry's block is kept: W completed
before F started. An engine that wrote stale data after completing a request would be caught by
the SIGKILL crash test and the child's reads, where the kernel's order is exact.
"""
import argparse
import os
import random
import struct
import subprocess
import sys
import time

MAGIC = 0x6A736677736872
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8
MARK_PREFIX = "pxd-flush-"
BLOCK_MAGIC = 0x31424B4C43445850  # tests/crash/crash_format.h: a block the child wrote
BLOCK = 4096


def child_block(data, at):
    """(volume, lba, seq) of the child's block at data[at:at + 4096], or None."""
    magic, volume, lba, seq = struct.unpack_from("<4Q", data, at)
    return (volume, lba, seq) if magic == BLOCK_MAGIC else None


class Device:
    """The replayed image, with what FUA entries left in it (see the module comment)."""

    def __init__(self, f, sectorsize):
        self.f = f
        self.sectorsize = sectorsize
        # sector -> (device offset, (volume, lba, seq)) of the child's block a FUA entry
        # wrote over it, while no later entry has overwritten it.
        self.fua_sectors = {}
        self.kept = 0  # blocks of FUA entries an older plain write did not overwrite

    def blocks(self, data):
        """(offset in data, (volume, lba, seq)) of the child's blocks in an entry."""
        at = 0
        while at + BLOCK <= len(data):
            block = child_block(data, at)
            if block:
                yield at, block
                at += BLOCK
            else:
                at += self.sectorsize

    def apply(self, sector, flags, data):
        """Writes an entry's data (zeros for a discard) at `sector`."""
        ss = self.sectorsize
        start = sector * ss
        skip = []  # (offset in data) of 4 KiB the write must leave alone
        if not flags & FUA:
            for at, block in self.blocks(data):
                newer = self.fua_sectors.get((start + at) // ss)
                if (newer and newer[0] == start + at and block[:2] == newer[1][:2] and
                        block[2] < newer[1][2]):
                    skip.append(at)
        pos = 0
        for at in skip + [len(data)]:
            self.write(start + pos, data[pos:at])
            for s in range((start + pos) // ss, (start + at) // ss):
                self.fua_sectors.pop(s, None)
            pos = at + BLOCK
        self.kept += len(skip)
        if flags & FUA:
            for at, block in self.blocks(data):
                for s in range((start + at) // ss, (start + at + BLOCK) // ss):
                    self.fua_sectors[s] = (start + at, block)

    def write(self, offset, data):
        if data:
            self.f.seek(offset)
            self.f.write(data)


def parse_log(path):
    """Returns (sectorsize, entries): entries are (offset, sector, nr_sectors, flags, mark)."""
    with open(path, "rb") as f:
        magic, version, nr_entries, sectorsize = struct.unpack("<QQQI", f.read(28))
        if magic != MAGIC or version != 1:
            sys.exit(f"powercut_replay: {path} is not a log-writes log (magic {magic:#x})")
        entries = []
        off = sectorsize
        for _ in range(nr_entries):
            f.seek(off)
            sector, nr, flags, data_len = struct.unpack("<QQQQ", f.read(32))
            mark = f.read(data_len).decode(errors="replace") if flags & MARK else None
            entries.append((off, sector, nr, flags, mark))
            off += sectorsize * (1 + (0 if flags & DISCARD else nr))
    return sectorsize, entries


def choose_points(entries, checks, rng):
    """Entry counts (prefix lengths) to check: 0, len(entries), marks, random between."""
    marks = [i + 1 for i, e in enumerate(entries) if e[4] and e[4].startswith(MARK_PREFIX)]
    budget = max(checks - 2, 2)
    chosen_marks = marks
    if len(marks) > budget // 2:
        step = len(marks) / (budget // 2)
        chosen_marks = sorted({marks[int(i * step)] for i in range(budget // 2)})
    points = {0, len(entries)} | set(chosen_marks)
    # Random cuts between the chosen marks (and before the first, after the last): a cut
    # there keeps some flushed-but-unmarked writes, the states marks never show.
    bounds = [0] + chosen_marks + [len(entries)]
    gaps = [(a, b) for a, b in zip(bounds, bounds[1:]) if b - a > 1]
    rng.shuffle(gaps)
    for a, b in gaps:
        if len(points) >= checks:
            break
        points.add(rng.randrange(a + 1, b))
    return sorted(points), len(marks)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kw).stdout.strip()


def check_point(args, replay, applied, entries):
    """Copies the replayed image, mounts it at args.mount and runs the tool. True if it held."""
    check = os.path.join(args.work, "check.img")
    marks_file = os.path.join(args.work, "marks")
    with open(marks_file, "w") as f:
        for e in entries[:applied]:
            if e[4] and e[4].startswith(MARK_PREFIX):
                f.write(e[4] + "\n")
    run(["cp", "--sparse=always", replay, check])
    loop = run(["losetup", "-f", "--show", check])
    mounted = False
    try:
        run(["mount", "-t", "ext4", loop, args.mount])
        mounted = True
        r = subprocess.run([args.tool, "verify", os.path.join(args.mount, "meta"), args.journal,
                            marks_file], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        print(f"  after {applied} of {len(entries)} entries:\n    " +
              r.stdout.strip().replace("\n", "\n    "))
        return r.returncode == 0
    finally:
        if mounted:
            subprocess.run(["umount", args.mount])
        subprocess.run(["losetup", "-d", loop])
        os.unlink(check)


def main():
    p = argparse.ArgumentParser()
    for name in ("log", "base", "work", "mount", "journal", "tool"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--checks", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deadline", type=float, default=150)
    args = p.parse_args()
    started = time.monotonic()
    rng = random.Random(args.seed)

    sectorsize, entries = parse_log(args.log)
    points, nmarks = choose_points(entries, args.checks, rng)
    counts = {}
    for e in entries:
        kind = ("mark" if e[3] & MARK else "discard" if e[3] & DISCARD else
                "flush" if e[3] & FLUSH and not e[2] else "write")
        counts[kind] = counts.get(kind, 0) + 1
    print(f"powercut_replay: {len(entries)} log entries ({counts}), sector size {sectorsize}, "
          f"{nmarks} flush marks; checking {len(points)} cut points")
    if nmarks == 0:
        print("powercut_replay: FAIL: the child put no flush mark into the log")
        return 1

    replay = os.path.join(args.work, "replay.img")
    run(["cp", "--sparse=always", args.base, replay])
    failed = 0
    checked = 0
    with open(args.log, "rb") as log, open(replay, "r+b") as f:
        dev = Device(f, sectorsize)
        applied = 0
        for point in points:
            while applied < point:
                off, sector, nr, flags, _ = entries[applied]
                if nr and not flags & MARK:
                    if flags & DISCARD:
                        data = bytes(nr * sectorsize)
                    else:
                        log.seek(off + sectorsize)
                        data = log.read(nr * sectorsize)
                    dev.apply(sector, flags, data)
                applied += 1
            f.flush()
            if time.monotonic() - started > args.deadline:
                print(f"powercut_replay: time bound ({args.deadline:.0f} s) reached after "
                      f"{checked} cut points")
                break
            checked += 1
            if not check_point(args, replay, applied, entries):
                failed += 1
                print(f"powercut_replay: FAIL at the cut after entry {applied} (replay: --seed "
                      f"{args.seed})")
    os.unlink(replay)
    if checked < min(len(points), 3):
        print("powercut_replay: FAIL: too few cut points checked within the time bound")
        failed += 1
    print(f"powercut_replay: {dev.kept} blocks of FUA writes kept over older plain writes "
          f"logged after them")
    print(f"powercut_replay: {checked} cut points checked, {failed} failed, "
          f"{time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
