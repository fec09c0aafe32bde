#!/usr/bin/env python3
"""Appending a tensor to a big checkpoint vs rewriting the checkpoint.

A benchmark, not a test: it measures and reports, and never fails.

A checkpoint of ``--size-mib`` MiB (float32 tensors of 16 MiB) is saved
once. Then, ``--repeats`` times each:

* ``append``: ``ztensor.Writer(path, mode="a")`` adds one ``--add-mib`` MiB
  tensor and commits (crash-safe: it fsyncs, see docs/format.md section 15);
* ``rewrite``: ``ztensor.numpy.save_file`` writes the whole checkpoint plus
  that tensor again (atomic rename, no fsync: not power-loss safe);
* ``rewrite+fsync``: the same followed by ``os.fsync`` of the file and its
  folder, what a rewrite that survives a power cut costs.

The tensors of the rewrite are in memory beforehand (not timed). Before each
timed run ``os.sync()`` flushes earlier writes and a rewrite's previous output
is deleted (not timed). The number of
``fsync``/``fdatasync`` calls of one run of each is counted with
``strace -f -c`` in a child process (``n/a`` without strace). Times are
wall clock, median and best of the runs.

Usage::

    python bench/bench_append.py [--size-mib 1024] [--add-mib 10] [--repeats 5] [--dir /tmp]

The files live in a fresh folder under ``--dir`` that is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import ztensor
from ztensor.numpy import load_file, save_file

TENSOR_MIB = 16


def checkpoint(size_mib: int) -> dict:
    n = max(1, size_mib // TENSOR_MIB)
    count = TENSOR_MIB * (1 << 20) // 4
    return {f"layer.{i}.weight": np.full(count, i, np.float32) for i in range(n)}


def timed(fn, repeats: int, before=None) -> list[float]:
    times = []
    for i in range(repeats):
        if before:
            before(i)
        os.sync()
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return times


def fsync_count(code: str, *args) -> str:
    """fsync + fdatasync calls of a child running ``code`` (strace -c)."""
    strace = shutil.which("strace")
    if not strace:
        return "n/a"
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run(
            [
                strace,
                "-f",
                "-c",
                "-e",
                "trace=fsync,fdatasync",
                "-o",
                out.name,
                sys.executable,
                "-c",
                code,
                *args,
            ],
            check=True,
            capture_output=True,
        )
        calls = 0
        for line in out.read().splitlines():
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)$", line)
            if m:
                calls += int(m.group(1))
        return str(calls)


APPEND_CHILD = """
import sys, numpy as np, ztensor
with ztensor.Writer(sys.argv[1], mode="a") as w:
    w.add("strace.extra", np.ones(int(sys.argv[2]) << 18, np.float32))
"""

REWRITE_CHILD = """
import os, sys, numpy as np
from ztensor.numpy import load_file, save_file
t = load_file(sys.argv[1], copy=True)
t["strace.extra"] = np.ones(int(sys.argv[2]) << 18, np.float32)
save_file(t, sys.argv[1])
if len(sys.argv) > 3:
    fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.close(fd)
    fd = os.open(os.path.dirname(sys.argv[1]), os.O_RDONLY); os.fsync(fd); os.close(fd)
"""


def fsync_path(path: str) -> None:
    for p in (path, os.path.dirname(path)):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--add-mib", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="zt-bench-append-", dir=args.dir)
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: str) -> None:
    path = os.path.join(work, "ckpt.zt")
    tensors = checkpoint(args.size_mib)
    save_file(tensors, path)
    base_size = os.path.getsize(path)
    extra = np.ones(args.add_mib << 18, np.float32)
    print(
        f"# bench_append: ztensor {ztensor.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()} {os.cpu_count()} CPUs"
    )
    print(
        f"# checkpoint: {len(tensors)} float32 tensors, {base_size / 2**20:.1f} MiB; "
        f"added tensor: {args.add_mib} MiB; {args.repeats} runs each; folder {args.dir}"
    )

    sizes = []

    def append(i):
        with ztensor.Writer(path, mode="a") as w:
            w.add(f"extra.{i}", extra)
        sizes.append(os.path.getsize(path))

    t_append = timed(append, args.repeats)
    grown = sizes[-1] - base_size

    all_tensors = dict(tensors)
    all_tensors["extra"] = extra
    rewrite_path = os.path.join(work, "rewrite.zt")

    def fresh(i):  # no run pays for dropping the previous run's file
        if os.path.exists(rewrite_path):
            os.remove(rewrite_path)

    t_rewrite = timed(lambda i: save_file(all_tensors, rewrite_path), args.repeats, fresh)

    def rewrite_fsync(i):
        save_file(all_tensors, rewrite_path)
        fsync_path(rewrite_path)

    t_rewrite_sync = timed(rewrite_fsync, args.repeats, fresh)
    rewrite_size = os.path.getsize(rewrite_path)

    n_append = fsync_count(APPEND_CHILD, path, str(args.add_mib))
    n_rewrite = fsync_count(REWRITE_CHILD, rewrite_path, str(args.add_mib))
    n_rewrite_sync = fsync_count(REWRITE_CHILD, rewrite_path, str(args.add_mib), "sync")

    med = statistics.median
    print(f"{'operation':<16}{'median s':>10}{'best s':>10}{'written MiB':>13}{'fsyncs':>8}")
    rows = [
        ("append", t_append, grown / args.repeats / 2**20, n_append),
        ("rewrite", t_rewrite, rewrite_size / 2**20, n_rewrite),
        ("rewrite+fsync", t_rewrite_sync, rewrite_size / 2**20, n_rewrite_sync),
    ]
    for name, times, mib, n in rows:
        print(f"{name:<16}{med(times):>10.4f}{min(times):>10.4f}{mib:>13.1f}{n:>8}")
    print(
        f"speed-up of append: {med(t_rewrite) / med(t_append):.0f}x vs rewrite, "
        f"{med(t_rewrite_sync) / med(t_append):.0f}x vs rewrite+fsync (medians)"
    )
    # The appended file holds what was appended, and the old tensors.
    loaded = load_file(path)
    assert len(loaded) == len(tensors) + args.repeats + 1
    assert float(loaded["layer.1.weight"][0]) == 1.0 and float(loaded["extra.0"][-1]) == 1.0
    print(
        f"appended file: {sizes[-1] / 2**20:.1f} MiB after {args.repeats} appends, "
        f"{len(loaded)} tensors, old and new tensors verified"
    )


if __name__ == "__main__":
    main()
