#!/usr/bin/env python3
"""How long a small WAL-style fdatasync waits while a large file is written and fsynced.

One thread appends 300 bytes and fdatasyncs every millisecond (like RocksDB's WAL under
writes). Meanwhile the main thread writes a 400 MiB file (like a Raft snapshot): once with a
single fsync at the end, and once with an fdatasync every 8 MiB (what `write_durably` in
raft/src/rocks.rs does). Usage: python3 benches/fsync_interference.py [DIR on the data disk]
"""
import os
import sys
import threading
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "/tmp"), "fsync-interference")


def run(sync_every):
    os.makedirs(DIR, exist_ok=True)
    stop = False
    waits = []

    def wal():
        fd = os.open(os.path.join(DIR, "wal"), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        while not stop:
            t = time.monotonic()
            os.write(fd, b"x" * 300)
            os.fdatasync(fd)
            waits.append(time.monotonic() - t)
            time.sleep(0.001)
        os.close(fd)
        os.remove(os.path.join(DIR, "wal"))

    th = threading.Thread(target=wal)
    th.start()
    time.sleep(0.3)
    big = os.path.join(DIR, "big")
    fd = os.open(big, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    chunk = os.urandom(1 << 20)
    since = 0
    for _ in range(400):
        os.write(fd, chunk)
        since += len(chunk)
        if sync_every and since >= sync_every:
            os.fdatasync(fd)
            since = 0
    os.fsync(fd)
    os.close(fd)
    time.sleep(0.3)
    stop = True
    th.join()
    os.remove(big)
    waits.sort()
    n = len(waits)
    label = f"every {sync_every >> 20} MiB" if sync_every else "once at the end"
    print(f"big file synced {label:16}: {n} small fdatasyncs, p50 {1e3 * waits[n // 2]:.1f} ms, "
          f"p99 {1e3 * waits[int(n * 0.99)]:.1f} ms, max {1e3 * waits[-1]:.1f} ms")


for every in (0, 8 << 20, 0, 8 << 20):
    run(every)
