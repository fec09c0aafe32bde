#!/usr/bin/env python3
"""zTensor benchmark: ztensor vs safetensors (and torch.save).

A benchmark, not a test: it measures and reports, and only prints PASS/FAIL
next to the performance targets; it never fails on them.

Two tensor sets are measured, one after the other (the first is freed before
the second is built):

* ``llama``: a Llama-shaped checkpoint of about ``--size-mib`` MiB (bf16
  matrices including a 32000-row embedding and lm_head, fp32 norms).
* ``small``: ``--small`` tiny float32 tensors (16..256 elements) with
  LoRA-like names.

For each set: save, lazy load (+ touching one byte per 4 KiB page), copy
load, crc32c checksum overhead; for the llama set also zstd-3 compression
(in-process, and single- vs multi-threaded in subprocesses that differ only
in ``RAYON_NUM_THREADS``).

Every load runs on a warm page cache (the file is read once right before each
timed run). Before each timed save the target is deleted and ``os.sync()``
is called (outside the timing), so no run pays for an earlier run's
write-back. Times are wall clock (``time.perf_counter``); after ``--warmup``
untimed runs (default 1), the median of ``--repeats`` runs is reported,
with the best run alongside. Ratios are
ztensor time / peer time: < 1 means ztensor is faster.

Usage::

    python bench/bench.py [--size-mib 1024] [--small 20000] [--repeats 5]
                          [--json PATH] [--dir DIR]

Files go to a fresh directory under ``$ZTENSOR_BENCH_DIR`` (or ``--dir``,
or the system temp dir) that is deleted at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import ml_dtypes
import numpy as np
from _common import as_bytes, remove, touch, warm

import ztensor
import ztensor.numpy as ztn

BF16 = np.dtype(ml_dtypes.bfloat16)
MiB = 1 << 20
GiB = 1 << 30
PAGE = 4096

# ----------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------


WARMUP = 1  # untimed runs before the timed ones (set by --warmup)


def measure(fn, repeats: int, setup=None, after=None) -> dict:
    """Times ``fn()`` ``repeats`` times after WARMUP untimed runs.

    setup/after/freeing the result are not timed.
    """
    times = []
    for i in range(WARMUP + repeats):
        if setup is not None:
            setup()
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
        if after is not None:
            after(out)
        del out
        gc.collect()
        if i >= WARMUP:
            times.append(t1 - t0)
    return {"median": statistics.median(times), "best": min(times), "times": times}


def fmt_t(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:7.1f} us"
    if s < 1.0:
        return f"{s * 1e3:7.2f} ms"
    return f"{s:7.3f} s "


def fmt_size(n: int) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    return f"{n / 1024:.1f} KiB"


# ----------------------------------------------------------------------------
# tensor sets
# ----------------------------------------------------------------------------


def llama_shapes(target_bytes: int):
    """(name, shape, dtype) of a Llama-shaped checkpoint of about target_bytes.

    Vocabulary 32000; hidden 2048 (TinyLlama-like: GQA with kv = hidden/8,
    intermediate 5632) when the budget allows, otherwise the hidden size
    shrinks so that at least two layers fit.
    """
    vocab = 32000

    def layer(h):
        inter = int(round(h * 2.75 / 64)) * 64
        kv = max(h // 8, 16)
        mats = [
            ("self_attn.q_proj.weight", (h, h)),
            ("self_attn.k_proj.weight", (kv, h)),
            ("self_attn.v_proj.weight", (kv, h)),
            ("self_attn.o_proj.weight", (h, h)),
            ("mlp.gate_proj.weight", (inter, h)),
            ("mlp.up_proj.weight", (inter, h)),
            ("mlp.down_proj.weight", (h, inter)),
        ]
        norms = [("input_layernorm.weight", (h,)), ("post_attention_layernorm.weight", (h,))]
        nbytes = sum(int(np.prod(s)) * 2 for _, s in mats) + sum(h * 4 for _ in norms)
        return mats, norms, nbytes

    for h in (2048, 1536, 1024, 768, 512, 384, 256, 128, 64):
        emb = 2 * vocab * h * 2 + h * 4
        mats, norms, lb = layer(h)
        if emb + 2 * lb <= target_bytes or h == 64:
            break
    n_layers = max(1, int(round((target_bytes - emb) / lb)))

    out = [("model.embed_tokens.weight", (vocab, h), BF16)]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        for n, s in mats:
            out.append((p + n, s, BF16))
        for n, s in norms:
            out.append((p + n, s, np.dtype(np.float32)))
    out.append(("model.norm.weight", (h,), np.dtype(np.float32)))
    out.append(("lm_head.weight", (vocab, h), BF16))
    return out, {"hidden": h, "vocab": vocab, "layers": n_layers}


def build_llama(target_bytes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes, cfg = llama_shapes(target_bytes)
    tensors = {}
    for name, shape, dt in shapes:
        if dt == BF16:
            a = rng.standard_normal(shape, dtype=np.float32)
            a *= 0.02
            tensors[name] = a.astype(BF16)
            del a
        else:
            tensors[name] = (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    return tensors, cfg


def build_small(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    mods = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    tensors = {}
    i = 0
    while len(tensors) < n:
        adapter, rest = divmod(i, 10_000)
        layer, m = divmod(rest, len(mods))
        mod = mods[m]
        part = "self_attn" if m < 4 else "mlp"
        for ab in ("A", "B"):
            if len(tensors) >= n:
                break
            r = int(rng.choice([2, 4, 8, 16]))
            c = int(rng.integers(max(1, 16 // r), 256 // r + 1))
            shape = (r, c) if ab == "A" else (c, r)
            name = f"base_model.model.adapter{adapter}.layers.{layer}.{part}.{mod}.lora_{ab}.weight"
            tensors[name] = rng.standard_normal(shape, dtype=np.float32)
        i += 1
    return tensors


def total_bytes(tensors: dict) -> int:
    return sum(a.nbytes for a in tensors.values())


def to_torch(tensors: dict):
    """Zero-copy torch views of the numpy arrays (bf16 via uint16)."""
    import torch

    out = {}
    for k, a in tensors.items():
        if a.dtype == BF16:
            out[k] = torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
        else:
            out[k] = torch.from_numpy(a)
    return out


def check_equal(ref: dict, got: dict, what: str) -> None:
    if list(ref) != list(got) and sorted(ref) != sorted(got):
        raise AssertionError(f"{what}: names differ")
    for k, a in ref.items():
        b = got[k]
        if tuple(a.shape) != tuple(b.shape) or not np.array_equal(as_bytes(a), as_bytes(b)):
            raise AssertionError(f"{what}: tensor {k!r} differs")


# ----------------------------------------------------------------------------
# zstd child: same save in a subprocess, thread count set by the environment
# ----------------------------------------------------------------------------


def zstd_child(src: str, dst: str, repeats: int, level: int) -> None:
    tensors = ztn.load_file(src, copy=True)
    save = measure(
        lambda: ztn.save_file(tensors, dst, compression=level),
        repeats,
        setup=lambda: (remove(dst), os.sync()),
    )
    size = os.path.getsize(dst)
    load = measure(lambda: ztn.load_file(dst, copy=True), repeats, setup=lambda: warm(dst))
    remove(dst)
    print(
        json.dumps(
            {
                "save": save,
                "load_copy": load,
                "size": size,
                "rayon_threads": os.environ.get("RAYON_NUM_THREADS"),
            }
        )
    )


def run_zstd_child(script: str, src: str, dst: str, repeats: int, level: int, threads: int | None) -> dict:
    env = dict(os.environ)
    env.pop("RAYON_NUM_THREADS", None)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = str(threads)
    cmd = [
        sys.executable,
        script,
        "--zstd-child",
        src,
        dst,
        "--repeats",
        str(repeats),
        "--zstd-level",
        str(level),
        "--warmup",
        str(WARMUP),
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"zstd child (RAYON_NUM_THREADS={threads}) failed:\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------
# one tensor set
# ----------------------------------------------------------------------------


def bench_set(
    label: str,
    tensors: dict,
    workdir: str,
    repeats: int,
    *,
    torch_save: bool,
    compression: bool,
    zstd_level: int,
    log,
) -> dict:
    import safetensors.numpy as stn
    import safetensors.torch as stt

    nbytes = total_bytes(tensors)
    res: dict = {}
    info: dict = {"tensors": len(tensors), "bytes": nbytes}
    zt_path = os.path.join(workdir, f"{label}.zt")
    st_path = os.path.join(workdir, f"{label}.safetensors")
    pt_path = os.path.join(workdir, f"{label}.pt")
    crc_path = os.path.join(workdir, f"{label}.crc.zt")
    sha_path = os.path.join(workdir, f"{label}.sha.zt")
    zst_path = os.path.join(workdir, f"{label}.zstd.zt")

    def run(key, fn, **kw):
        log(f"  [{label}] {key} ...")
        r = measure(fn, repeats, **kw)
        res[key] = r
        log(f"  [{label}] {key}: median {fmt_t(r['median']).strip()} best {fmt_t(r['best']).strip()}")
        return r

    def save_setup(path):
        return lambda: (remove(path), os.sync())

    # ---- save --------------------------------------------------------------
    run("save/ztensor.numpy.save_file", lambda: ztn.save_file(tensors, zt_path), setup=save_setup(zt_path))
    info["zt_file_bytes"] = os.path.getsize(zt_path)
    run(
        "save/safetensors.numpy.save_file", lambda: stn.save_file(tensors, st_path), setup=save_setup(st_path)
    )
    info["st_file_bytes"] = os.path.getsize(st_path)
    if torch_save:
        import torch

        tt = to_torch(tensors)
        run("save/torch.save", lambda: torch.save(tt, pt_path), setup=save_setup(pt_path))
        info["pt_file_bytes"] = os.path.getsize(pt_path)
        del tt
        remove(pt_path)
        gc.collect()

    # ---- checksum cost (same Writer loop, checksum none vs crc32c) ----------
    def writer_save(path, checksum):
        def go():
            w = ztensor.Writer(path)
            for k, a in tensors.items():
                w.add(k, a, checksum=checksum)
            return w.finish()

        return go

    run("checksum/Writer none", writer_save(zt_path, "none"), setup=save_setup(zt_path))
    run("checksum/Writer crc32c", writer_save(crc_path, "crc32c"), setup=save_setup(crc_path))
    run("checksum/Writer sha256", writer_save(sha_path, "sha256"), setup=save_setup(sha_path))
    remove(sha_path)

    def verify(path):
        def go():
            with ztensor.Reader(path) as r:
                r.verify()

        return go

    run("checksum/Reader.verify crc32c", verify(crc_path), setup=lambda: warm(crc_path))
    remove(crc_path)

    # Reference files for the loads (the Writer 'none' run left zt_path).
    ztn.save_file(tensors, zt_path)
    os.sync()

    # Sanity: every loader returns the same bytes (not timed).
    check_equal(tensors, ztn.load_file(zt_path, copy=False), "ztensor copy=False")
    check_equal(tensors, ztn.load_file(zt_path, copy=True), "ztensor copy=True")
    check_equal(tensors, stn.load_file(st_path), "safetensors.numpy")
    check_equal(tensors, stt.load_file(st_path), "safetensors.torch")
    gc.collect()

    # ---- lazy load -------------------------------------------------------------
    run(
        "lazy/ztensor load_file(copy=False)",
        lambda: ztn.load_file(zt_path, copy=False),
        setup=lambda: warm(zt_path),
    )
    run("lazy/safetensors.torch.load_file", lambda: stt.load_file(st_path), setup=lambda: warm(st_path))
    run("lazy/safetensors.numpy.load_file", lambda: stn.load_file(st_path), setup=lambda: warm(st_path))
    run(
        "lazy+touch/ztensor load_file(copy=False)",
        lambda: touch(ztn.load_file(zt_path, copy=False)),
        setup=lambda: warm(zt_path),
    )
    run(
        "lazy+touch/safetensors.torch.load_file",
        lambda: touch(stt.load_file(st_path)),
        setup=lambda: warm(st_path),
    )

    # ---- copy load ---------------------------------------------------------------
    run(
        "copy/ztensor load_file(copy=True)",
        lambda: ztn.load_file(zt_path, copy=True),
        setup=lambda: warm(zt_path),
    )
    res["copy/safetensors.numpy.load_file"] = res["lazy/safetensors.numpy.load_file"]
    run(
        "copy+touch/ztensor load_file(copy=True)",
        lambda: touch(ztn.load_file(zt_path, copy=True)),
        setup=lambda: warm(zt_path),
    )

    # ---- compression -------------------------------------------------------------
    if compression:
        run(
            f"zstd/ztensor save_file(compression={zstd_level})",
            lambda: ztn.save_file(tensors, zst_path, compression=zstd_level),
            setup=save_setup(zst_path),
        )
        info["zstd_file_bytes"] = os.path.getsize(zst_path)
        check_equal(tensors, ztn.load_file(zst_path, copy=False), "ztensor zstd copy=False")
        gc.collect()
        run(
            "zstd/ztensor load_file(copy=False)",
            lambda: ztn.load_file(zst_path, copy=False),
            setup=lambda: warm(zst_path),
        )
        run(
            "zstd/ztensor load_file(copy=True)",
            lambda: ztn.load_file(zst_path, copy=True),
            setup=lambda: warm(zst_path),
        )
        remove(zst_path)

        script = os.path.abspath(__file__)
        child_dst = os.path.join(workdir, f"{label}.child.zt")
        for threads, tag in ((1, "single"), (None, "multi")):
            log(f"  [{label}] zstd child RAYON_NUM_THREADS={threads if threads else '(unset)'} ...")
            c = run_zstd_child(script, zt_path, child_dst, repeats, zstd_level, threads)
            res[f"zstd-sub/save {tag}-thread"] = c["save"]
            res[f"zstd-sub/load(copy=True) {tag}-thread"] = c["load_copy"]
            info[f"zstd_child_{tag}_bytes"] = c["size"]
            log(f"  [{label}] zstd child {tag}: save median {fmt_t(c['save']['median']).strip()}")

    remove(zt_path)
    remove(st_path)
    return {"results": res, "info": info}


# ----------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------

COMPARISONS = [
    # (label, ztensor key, peer key)
    (
        "save: zt save_file / st.numpy save_file",
        "save/ztensor.numpy.save_file",
        "save/safetensors.numpy.save_file",
    ),
    ("save: zt save_file / torch.save", "save/ztensor.numpy.save_file", "save/torch.save"),
    (
        "lazy: zt copy=False / st.torch load_file",
        "lazy/ztensor load_file(copy=False)",
        "lazy/safetensors.torch.load_file",
    ),
    (
        "lazy: zt copy=False / st.numpy load_file",
        "lazy/ztensor load_file(copy=False)",
        "lazy/safetensors.numpy.load_file",
    ),
    (
        "lazy+touch: zt copy=False / st.torch",
        "lazy+touch/ztensor load_file(copy=False)",
        "lazy+touch/safetensors.torch.load_file",
    ),
    (
        "copy: zt copy=True / st.numpy load_file",
        "copy/ztensor load_file(copy=True)",
        "copy/safetensors.numpy.load_file",
    ),
    ("crc32c: Writer crc32c / Writer none", "checksum/Writer crc32c", "checksum/Writer none"),
    ("sha256: Writer sha256 / Writer none", "checksum/Writer sha256", "checksum/Writer none"),
    ("zstd: zt zstd save / zt raw save_file", None, "save/ztensor.numpy.save_file"),
    (
        "zstd save: multi / single thread (subproc)",
        "zstd-sub/save multi-thread",
        "zstd-sub/save single-thread",
    ),
    (
        "zstd load: multi / single thread (subproc)",
        "zstd-sub/load(copy=True) multi-thread",
        "zstd-sub/load(copy=True) single-thread",
    ),
]


def ratio(res, a, b, which="median"):
    if a not in res or b not in res:
        return None
    return res[a][which] / res[b][which]


def compute(sets: dict, zstd_level: int):
    comps, targets = [], []
    for label, s in sets.items():
        res = s["results"]
        for name, a, b in COMPARISONS:
            if a is None:
                a = f"zstd/ztensor save_file(compression={zstd_level})"
            if a in res and b in res:
                comps.append(
                    {
                        "set": label,
                        "comparison": name,
                        "zt": a,
                        "peer": b,
                        "zt_median": res[a]["median"],
                        "peer_median": res[b]["median"],
                        "ratio_median": ratio(res, a, b),
                        "ratio_best": ratio(res, a, b, "best"),
                    }
                )

        def target(desc, value, ok, shown, label=label):
            targets.append(
                {
                    "set": label,
                    "target": desc,
                    "value": value,
                    "shown": shown,
                    "result": None if value is None else ("PASS" if ok else "FAIL"),
                }
            )

        r = ratio(res, "lazy/ztensor load_file(copy=False)", "lazy/safetensors.torch.load_file")
        target(
            "lazy load_file no slower than safetensors.torch lazy (ratio <= 1.00)",
            r,
            r is not None and r <= 1.0,
            f"ratio {r:.3f}" if r is not None else "-",
        )
        r = ratio(res, "copy/ztensor load_file(copy=True)", "copy/safetensors.numpy.load_file")
        target(
            "copy=True >= 2x faster than safetensors.numpy.load_file (ratio <= 0.50)",
            r,
            r is not None and r <= 0.5,
            f"ratio {r:.3f}" if r is not None else "-",
        )
        r = ratio(res, "save/ztensor.numpy.save_file", "save/safetensors.numpy.save_file")
        target(
            "save no slower than safetensors.numpy.save_file (ratio <= 1.00)",
            r,
            r is not None and r <= 1.0,
            f"ratio {r:.3f}" if r is not None else "-",
        )
        r = ratio(res, "checksum/Writer crc32c", "checksum/Writer none")
        ov = None if r is None else (r - 1.0) * 100
        target(
            "crc32c save overhead < 15%",
            ov,
            ov is not None and ov < 15.0,
            f"{ov:+.1f}%" if ov is not None else "-",
        )
        if "zstd-sub/save single-thread" in res:
            r = ratio(res, "zstd-sub/save single-thread", "zstd-sub/save multi-thread")
            target(
                f"zstd-{zstd_level} save parallel >= 1.6x faster than single-thread",
                r,
                r is not None and r >= 1.6,
                f"speedup {r:.2f}x" if r is not None else "-",
            )
    return comps, targets


def print_report(sets: dict, comps, targets, env, zstd_level: int):
    print()
    print("=" * 100)
    print("zTensor benchmark")
    print("  " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print("  times: median of repeats (best in its own column); loads on a warm page cache;")
    print("  ratio = ztensor time / peer time (< 1: ztensor faster)")
    try:
        busy = float(env["loadavg_start"].split()[0]) > 0.5
    except (ValueError, IndexError):
        busy = False
    if busy:
        print(
            f"  WARNING: load average {env['loadavg_start']} at start: other processes compete for the "
            f"{env['cpus']} CPUs; timings (above all the thread-scaling ones) are unreliable"
        )
    for label, s in sets.items():
        info, res = s["info"], s["results"]
        print()
        desc = f"set '{label}': {info['tensors']} tensors, {fmt_size(info['bytes'])} of data"
        if "config" in info:
            desc += f" ({', '.join(f'{k}={v}' for k, v in info['config'].items())})"
        print(desc)
        sizes = [f"{k[:-6]}={fmt_size(v)}" for k, v in info.items() if k.endswith("_bytes") and k != "bytes"]
        print("  file sizes: " + ", ".join(sizes))
        if "zstd_file_bytes" in info:
            print(
                f"  zstd-{zstd_level} size: {info['zstd_file_bytes'] / info['zt_file_bytes'] * 100:.1f}% "
                f"of the raw .zt file"
            )
        print(f"  {'operation':<48} {'median':>11} {'best':>11} {'GiB/s(med)':>11}")
        print("  " + "-" * 84)
        for key, r in res.items():
            if key == "copy/safetensors.numpy.load_file":
                continue  # same measurement as lazy/safetensors.numpy.load_file
            gbs = info["bytes"] / r["median"] / GiB if r["median"] > 0 else float("inf")
            print(f"  {key:<48} {fmt_t(r['median']):>11} {fmt_t(r['best']):>11} {gbs:>11.2f}")
    print()
    print("comparisons (ratio = ztensor / peer; < 1 means ztensor is faster)")
    print(
        f"  {'set':<6} {'comparison':<46} {'zt median':>11} {'peer median':>12} "
        f"{'ratio(med)':>10} {'ratio(best)':>11}"
    )
    print("  " + "-" * 100)
    for c in comps:
        print(
            f"  {c['set']:<6} {c['comparison']:<46} {fmt_t(c['zt_median']):>11} "
            f"{fmt_t(c['peer_median']):>12} "
            f"{c['ratio_median']:>10.3f} {c['ratio_best']:>11.3f}"
        )
    print()
    print("targets (on medians)")
    print(f"  {'set':<6} {'target':<74} {'value':>14} {'result':>6}")
    print("  " + "-" * 104)
    for t in targets:
        print(f"  {t['set']:<6} {t['target']:<74} {t['shown']:>14} {t['result'] or 'n/a':>6}")
    print("=" * 100)


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="size of the Llama-shaped set (0: skip)")
    ap.add_argument("--small", type=int, default=20000, help="number of small tensors (0: skip)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before each measurement (default 1)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--dir", help="parent directory of the work dir (default: $ZTENSOR_BENCH_DIR or temp)")
    ap.add_argument("--no-torch-save", action="store_true", help="skip torch.save on the Llama set")
    ap.add_argument("--zstd-level", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--zstd-child", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    global WARMUP
    WARMUP = args.warmup

    if args.zstd_child:
        zstd_child(args.zstd_child[0], args.zstd_child[1], args.repeats, args.zstd_level)
        return 0

    import safetensors
    import torch

    env = {
        "ztensor": getattr(ztensor, "__version__", "?"),
        "safetensors": safetensors.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS", "(unset)"),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "loadavg_start": _loadavg(),
    }

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    parent = args.dir or os.environ.get("ZTENSOR_BENCH_DIR") or None
    if parent:
        os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="ztensor-bench-", dir=parent)
    log(f"work dir: {workdir}")
    sets = {}
    t_start = time.perf_counter()
    try:
        if args.size_mib > 0:
            log(f"building Llama-shaped set (~{args.size_mib} MiB) ...")
            tensors, cfg = build_llama(args.size_mib * MiB)
            log(f"  {len(tensors)} tensors, {fmt_size(total_bytes(tensors))}, {cfg}")
            s = bench_set(
                "llama",
                tensors,
                workdir,
                args.repeats,
                torch_save=not args.no_torch_save,
                compression=True,
                zstd_level=args.zstd_level,
                log=log,
            )
            s["info"]["config"] = cfg
            sets["llama"] = s
            del tensors
            gc.collect()
        if args.small > 0:
            log(f"building small set ({args.small} tensors) ...")
            tensors = build_small(args.small)
            s = bench_set(
                "small",
                tensors,
                workdir,
                args.repeats,
                torch_save=False,
                compression=False,
                zstd_level=args.zstd_level,
                log=log,
            )
            sets["small"] = s
            del tensors
            gc.collect()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    env["wall_s"] = round(time.perf_counter() - t_start, 1)
    env["loadavg_end"] = _loadavg()

    comps, targets = compute(sets, args.zstd_level)
    print_report(sets, comps, targets, env, args.zstd_level)

    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(
                {"env": env, "args": vars(args), "sets": sets, "comparisons": comps, "targets": targets},
                f,
                indent=2,
            )
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
