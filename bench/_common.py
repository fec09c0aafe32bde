"""What every benchmark script here does the same way: warming the page
cache, timing a call, touching every page of a lazy load, removing a target.

The scripts run as ``python bench/<name>.py``, so this folder is on
``sys.path`` and they import it as ``_common``.
"""

from __future__ import annotations

import gc
import os
import statistics
import time

import numpy as np

MiB = 1 << 20
PAGE = 4096

_warm_buf: bytearray | None = None


def warm(path: str) -> None:
    """Reads a file once so that it sits in the page cache."""
    global _warm_buf
    if _warm_buf is None:
        _warm_buf = bytearray(16 * MiB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(_warm_buf):
            pass


def remove(path: str) -> None:
    """Deletes a file if it exists."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def timeit(fn, repeats: int, before=None, per: int = 1) -> tuple[float, float]:
    """(median, best) seconds of ``fn()`` over ``repeats`` runs after one
    untimed warm-up run; ``before()`` runs untimed ahead of each, and each
    time is divided by ``per`` (calls made inside one ``fn()``). The result
    of ``fn()`` is dropped before the next run, so that freeing it is not
    timed either."""
    times = []
    for i in range(repeats + 1):
        if before:
            before()
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        dt = (time.perf_counter() - t0) / per
        del out
        if i:
            times.append(dt)
    return statistics.median(times), min(times)


def timeit_warm(fn, path: str, repeats: int, per: int = 1) -> tuple[float, float]:
    """``timeit`` with ``path`` read into the page cache before each run."""
    return timeit(fn, repeats, lambda: warm(path), per)


def as_bytes(a) -> np.ndarray:
    """A flat uint8 view of a numpy array or torch tensor (no copy)."""
    if isinstance(a, np.ndarray):
        return a.reshape(-1).view(np.uint8)
    import torch

    return a.reshape(-1).view(torch.uint8).numpy()


def touch(tensors: dict) -> int:
    """Reads one byte per 4 KiB page of every tensor: the real cost of a lazy
    load, whose pages fault in when first read."""
    s = 0
    for a in tensors.values():
        s += int(np.add.reduce(as_bytes(a)[::PAGE], dtype=np.uint64))
    return s
