#!/usr/bin/env python3
"""Many small tensors: per-tensor cost of ztensor vs safetensors (and h5py),
and zstd-3 saving vs single-threaded python-zstandard.

A benchmark, not a test: it measures and reports; it never fails on a ratio.

Workload ``many``: ``--tensors`` (default 20,000) small tensors, about
31 MiB: LoRA A/B matrices (float32) and per-layer norms and biases
(bfloat16), with LoRA-like names. Every row runs the contenders alternately
in one loop (ours, then the peer, ``--repeats`` times after ``--warmup``
untimed rounds), with the same front end on both sides (``ztensor.numpy``
vs ``safetensors.numpy``, ``ztensor.torch`` vs ``safetensors.torch``); the
ratio is median(ztensor) / median(peer): < 1 means ztensor is faster.

Workload ``zstd``: ``--zstd-mib`` (default 256) MiB of compressible float32
data as 64 tensors, saved with ``compression=3`` by ``ztensor.numpy`` vs the
same bytes compressed by one ``zstandard.ZstdCompressor(level=3)`` (one
thread) and written to a file, alternately in one loop.

Loads run on a warm page cache; before each timed save the target is
deleted and ``os.sync()`` is called (not timed).

Usage::

    python bench/bench_many.py [--tensors 20000] [--repeats 7] [--zstd-mib 256]
                               [--only many|zstd] [--dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import tempfile
import time

import ml_dtypes
import numpy as np
from _common import remove, touch, warm

import ztensor
import ztensor.numpy as ztn

BF16 = np.dtype(ml_dtypes.bfloat16)
MiB = 1 << 20
PAGE = 4096


def build_many(n: int, seed: int = 0) -> dict:
    """n small tensors (~1.6 KiB each): LoRA A/B (float32), norms and biases (bf16)."""
    rng = np.random.default_rng(seed)
    mods = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    out: dict = {}
    i = 0
    while len(out) < n:
        layer, m = divmod(i, len(mods))
        p = f"base_model.model.layers.{layer}.{mods[m]}"
        r = int(rng.choice([4, 8, 16]))
        for name, shape, dt in (
            (f"{p}.lora_A.weight", (r, 512 // r), np.float32),
            (f"{p}.lora_B.weight", (512 // r, r), np.float32),
            (f"{p}.norm.weight", (768,), BF16),
            (f"{p}.bias", (448,), BF16),
        ):
            if len(out) < n:
                out[name] = rng.standard_normal(shape, dtype=np.float32).astype(dt)
        i += 1
    return out


def to_torch(tensors: dict) -> dict:
    import torch

    return {
        k: torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
        if a.dtype == BF16
        else torch.from_numpy(a)
        for k, a in tensors.items()
    }


def fmt(s: float) -> str:
    return f"{s * 1e3:9.2f} ms" if s < 1 else f"{s:9.3f} s "


class Pairs:
    """Rows of (ours, peer) timed alternately in one loop."""

    def __init__(self, repeats: int, warmup: int, log):
        self.repeats, self.warmup, self.log = repeats, warmup, log
        self.rows: list = []

    def add(self, label: str, ours, peer, setup_ours=None, setup_peer=None):
        self.rows.append((label, ours, peer, setup_ours, setup_peer))

    def run(self) -> list:
        results = []
        for label, ours, peer, so, sp in self.rows:
            times: dict = {"ours": [], "peer": []}
            for i in range(self.warmup + self.repeats):
                for key, fn, setup in (("ours", ours, so), ("peer", peer, sp)):
                    if setup is not None:
                        setup()
                    gc.collect()
                    t0 = time.perf_counter()
                    out = fn()
                    t1 = time.perf_counter()
                    del out
                    gc.collect()
                    if i >= self.warmup:
                        times[key].append(t1 - t0)
            mo, mp = statistics.median(times["ours"]), statistics.median(times["peer"])
            results.append((label, mo, mp))
            self.log(f"{label:<58}{fmt(mo)}{fmt(mp)}{mo / mp:8.2f}x")
        return results


def bench_many(args, work: str, log) -> None:
    import h5py
    import safetensors
    import safetensors.numpy as stn
    import safetensors.torch as stt
    import torch

    import ztensor.torch as ztt

    tensors = build_many(args.tensors)
    nbytes = sum(a.nbytes for a in tensors.values())
    tt = to_torch(tensors)
    names = list(tensors)
    one = names[len(names) // 2 + 1]
    log(f"workload: {len(tensors)} tensors, {nbytes / MiB:.1f} MiB; one tensor = {one!r}")
    log(f"safetensors {safetensors.__version__}, h5py {h5py.__version__}, torch {torch.__version__}")

    zt, st = os.path.join(work, "m.zt"), os.path.join(work, "m.safetensors")
    zt2, st2, h5 = (
        os.path.join(work, "m2.zt"),
        os.path.join(work, "m2.safetensors"),
        os.path.join(work, "m.h5"),
    )
    ztn.save_file(tensors, zt)
    stn.save_file(tensors, st)
    with h5py.File(h5, "w") as f:
        for k, a in tensors.items():
            f.create_dataset(k, data=a.view(np.uint16) if a.dtype == BF16 else a)
    for p in (zt, st, h5):
        warm(p)

    def fresh(p):
        return lambda: (remove(p), os.sync())

    def w(p):
        return lambda: warm(p)

    def open_one(opener, path, fw):
        def go():
            with opener(path, framework=fw) as f:
                return f.get_tensor(one)

        return go

    def h5py_one():
        with h5py.File(h5, "r") as f:
            return f[one][()]

    def zt_h5_one():
        with ztensor.Reader(h5) as r:
            return r.read_tensor(one)

    def clone_all(d):
        return {k: v.clone() for k, v in d.items()}

    rows = Pairs(args.repeats, args.warmup, log)
    rows.add(
        "numpy save",
        lambda: ztn.save_file(tensors, zt2),
        lambda: stn.save_file(tensors, st2),
        fresh(zt2),
        fresh(st2),
    )
    rows.add(
        "numpy load + touch (lazy)",
        lambda: touch(ztn.load_file(zt)),
        lambda: touch(stn.load_file(st)),
        w(zt),
        w(st),
    )
    rows.add(
        "numpy copy=True (peer: load_file)",
        lambda: ztn.load_file(zt, copy=True),
        lambda: stn.load_file(st),
        w(zt),
        w(st),
    )
    rows.add(
        "numpy read one (safe_open + get_tensor)",
        open_one(ztensor.safe_open, zt, "np"),
        open_one(safetensors.safe_open, st, "np"),
    )
    rows.add(
        ".safetensors: ztensor.numpy load + touch",
        lambda: touch(ztn.load_file(st)),
        lambda: touch(stn.load_file(st)),
        w(st),
        w(st),
    )
    rows.add(
        ".safetensors: ztensor.numpy copy=True",
        lambda: ztn.load_file(st, copy=True),
        lambda: stn.load_file(st),
        w(st),
        w(st),
    )
    rows.add(
        ".safetensors: read one (safe_open)",
        open_one(ztensor.safe_open, st, "np"),
        open_one(safetensors.safe_open, st, "np"),
    )
    rows.add(".h5: read one (ztensor.Reader vs h5py)", zt_h5_one, h5py_one, w(h5), w(h5))
    rows.add(
        "torch save", lambda: ztt.save_file(tt, zt2), lambda: stt.save_file(tt, st2), fresh(zt2), fresh(st2)
    )
    rows.add(
        "torch load + touch (lazy)",
        lambda: touch(ztt.load_file(zt)),
        lambda: touch(stt.load_file(st)),
        w(zt),
        w(st),
    )
    rows.add(
        "torch copy=True (peer: load_file + clone)",
        lambda: ztt.load_file(zt, copy=True),
        lambda: clone_all(stt.load_file(st)),
        w(zt),
        w(st),
    )
    rows.add(
        "torch read one (safe_open + get_tensor)",
        open_one(ztensor.safe_open, zt, "pt"),
        open_one(safetensors.safe_open, st, "pt"),
    )
    log(f"{'row':<58}{'ztensor':>12}{'peer':>12}{'ratio':>9}")
    rows.run()


def bench_zstd(args, work: str, log) -> None:
    import zstandard

    n = 64
    per = args.zstd_mib * MiB // n // 4
    rng = np.random.default_rng(2)
    # Compressible like trained weights: few distinct values (low-entropy mantissas).
    base = (rng.standard_normal(per, dtype=np.float32) * 0.02).astype(BF16).astype(np.float32)
    tensors = {f"layer.{i}.weight": np.roll(base, i * 1009) for i in range(n)}
    raw = [a.view(np.uint8) for a in tensors.values()]
    zt, zs = os.path.join(work, "z.zt"), os.path.join(work, "z.zst")

    def zstandard_save():
        c = zstandard.ZstdCompressor(level=3)
        with open(zs + ".tmp", "wb") as f:
            for a in raw:
                f.write(c.compress(a))
        os.replace(zs + ".tmp", zs)

    def fresh(p):
        return lambda: (remove(p), os.sync())

    ztn.save_file(tensors, zt, compression=3)
    zstandard_save()
    log(
        f"zstd workload: {n} tensors, {args.zstd_mib} MiB; .zt {os.path.getsize(zt) / MiB:.1f} MiB, "
        f"python-zstandard {zstandard.__version__} {os.path.getsize(zs) / MiB:.1f} MiB"
    )
    rows = Pairs(args.repeats, args.warmup, log)
    rows.add(
        "zstd-3 save: ztensor.numpy vs python-zstandard (1 thread)",
        lambda: ztn.save_file(tensors, zt, compression=3),
        zstandard_save,
        fresh(zt),
        fresh(zs),
    )
    log(f"{'row':<58}{'ztensor':>12}{'peer':>12}{'ratio':>9}")
    for _label, mo, mp in rows.run():
        log(f"  speedup over single-threaded zstd: {mp / mo:.2f}x (goal >= 1.6x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tensors", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--zstd-mib", type=int, default=256)
    ap.add_argument("--only", choices=["many", "zstd"])
    ap.add_argument("--dir", default=os.environ.get("ZTENSOR_BENCH_DIR"))
    args = ap.parse_args()

    def log(s: str) -> None:
        print(s, flush=True)

    load = os.getloadavg()
    log(
        f"bench_many: {platform.platform()}, {os.cpu_count()} CPUs, load {load[0]:.2f}; "
        f"repeats {args.repeats} (median), warmup {args.warmup}; ratio = ztensor / peer"
    )
    work = tempfile.mkdtemp(prefix="ztbench-many-", dir=args.dir)
    try:
        if args.only in (None, "many"):
            bench_many(args, work, log)
        if args.only in (None, "zstd"):
            bench_zstd(args, work, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"load average at the end: {os.getloadavg()[0]:.2f} (machine shared with other jobs)")


if __name__ == "__main__":
    main()
