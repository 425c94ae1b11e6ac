#!/usr/bin/env python3
"""The CPU one durable write costs this machine, two ways (BENCHMARKS.md, "The issue's before
against now"): `pwrite` + `fdatasync` of 3,200 bytes at the end of what was written (what the log
writer does, about 18 records per sync under load), against one `pwrite` per sync on a file opened
with O_DIRECT and O_DSYNC that rewrites the 4 KiB blocks holding the new bytes. Both on a 64 MiB
file written full of zeros first, as the log's spare segments are. Prints wall and CPU time
(user + kernel, and kernel alone) per sync for two rounds of each.

Usage: python3 bench/sync_cpu.py [DIR]   (DIR on the disk to measure; default: the current one)
"""
import mmap
import os
import resource
import sys
import time

SYNCS = 3000
FILE_BYTES = 64 << 20
WRITE = 3200
BLOCK = 4096


def prepare(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    zeros = b"\0" * (1 << 20)
    for _ in range(FILE_BYTES >> 20):
        os.write(fd, zeros)
    os.fsync(fd)
    os.close(fd)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_stime


def run(direct, path):
    flags = os.O_RDWR | (os.O_DIRECT | os.O_DSYNC if direct else 0)
    fd = os.open(path, flags)
    buf = mmap.mmap(-1, 2 * BLOCK)  # page-aligned, as O_DIRECT needs
    buf.write(b"x" * (2 * BLOCK))
    off = 0
    c0, k0 = cpu()
    t0 = time.perf_counter()
    for _ in range(SYNCS):
        if direct:
            start = off & ~(BLOCK - 1)
            end = (off + WRITE + BLOCK - 1) & ~(BLOCK - 1)
            os.pwrite(fd, memoryview(buf)[: end - start], start)
        else:
            os.pwrite(fd, buf[:WRITE], off)
            os.fdatasync(fd)
        off += WRITE
    c1, k1 = cpu()
    t1 = time.perf_counter()
    os.close(fd)
    name = "O_DIRECT|O_DSYNC pwrite" if direct else "pwrite + fdatasync"
    print(
        f"{name:24} {(t1 - t0) / SYNCS * 1e6:6.1f} us wall/sync  "
        f"{(c1 - c0) / SYNCS * 1e6:5.1f} us cpu/sync (kernel {(k1 - k0) / SYNCS * 1e6:5.1f})"
    )


def main():
    path = os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", "sync_cpu.test")
    prepare(path)
    try:
        for _ in range(2):
            run(False, path)
            run(True, path)
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
