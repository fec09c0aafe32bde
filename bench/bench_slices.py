"""Tensor-parallel loading: ztensor.safe_open vs safetensors.safe_open, in one
run, on the ~1 GiB Llama-shaped checkpoint of bench_torch.py.

Each of N ranks (N = 2 and 4) opens the file and takes its 1/N of every 2-D
tensor with ``get_slice(name)[...]``: rows for half the tensors, columns
for the other half (alternating in name order), and the 1-D tensors whole.
A benchmark, not a test: it prints the time of one rank's load (median and
best of --repeats after a warm-up; all N ranks run one after another, warm
page cache) and ratios ztensor/peer (< 1: ztensor faster). "+touch" is the
comparison that counts: results made contiguous and one byte of every page
read, what a loader pays before its shards are usable. "lazy" times the
get_slice calls alone, which is not comparable: safetensors returns strided
views of its mapping without reading them, while ztensor gathers column
shards into contiguous memory at once (row shards are views in both).

For a zstd file, a rank's load is compared with decompressing the whole
file: row shards decode only the frames holding their rows, while column
shards need every frame (each frame holds whole rows).

    python bench/bench_slices.py [--size-mib 1024] [--repeats 5]

The files live in a temporary folder (under $TMPDIR) and are deleted at the end.
"""

import argparse
import gc
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import timeit_warm as timeit  # noqa: E402
from bench_torch import checkpoint  # noqa: E402


def plan(names):
    """Name -> 0 (rows) or 1 (columns), alternating in name order."""
    return {n: i % 2 for i, n in enumerate(sorted(names))}


def rank_load(open_fn, path, n, rank, how, touch):
    out = {}
    with open_fn(path, framework="pt") as f:
        for name in f.keys():
            s = f.get_slice(name)
            shape = s.get_shape()
            if len(shape) != 2:
                out[name] = f.get_tensor(name)
                continue
            dim = how[name]
            size = -(-shape[dim] // n)
            a, b = rank * size, min((rank + 1) * size, shape[dim])
            out[name] = s[a:b] if dim == 0 else s[:, a:b]
    if touch:
        for k, t in out.items():
            t = t.contiguous()
            t.reshape(-1).view(torch.uint8)[::4096].sum()
            out[k] = t
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import safetensors
    import safetensors.torch as st
    from safetensors import safe_open as st_open

    import ztensor
    import ztensor.torch as zt
    from ztensor import safe_open as zt_open

    tensors = checkpoint(args.size_mib)
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    print(
        f"checkpoint: {len(tensors)} tensors, {total / 2**30:.2f} GiB; "
        f"safetensors {safetensors.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    tmp = tempfile.mkdtemp(prefix="zt-bench-slices-")
    try:
        sp, zp, zz = (os.path.join(tmp, n) for n in ("m.safetensors", "m.zt", "z.zt"))
        st.save_file(tensors, sp)
        zt.save_file(tensors, zp)
        zt.save_file(tensors, zz, compression=3)
        how = plan(tensors)
        rows_only = {k: 0 for k in tensors}
        cols_only = {k: 1 for k in tensors}
        del tensors
        gc.collect()
        print(f"zstd file: {os.path.getsize(zz) / 2**30:.2f} GiB (level 3)")

        rows = {}
        for n in (2, 4):
            for touch in (False, True):
                tag = f"N={n} {'+touch' if touch else 'lazy'}"

                def ranks(open_fn, path, how=how, n=n, touch=touch):
                    return lambda: [rank_load(open_fn, path, n, r, how, touch) for r in range(n)]

                rows[f"{tag} safetensors"] = timeit(ranks(st_open, sp), sp, args.repeats, n)
                rows[f"{tag} ztensor .zt"] = timeit(ranks(zt_open, zp), zp, args.repeats, n)
                rows[f"{tag} ztensor .safetensors"] = timeit(ranks(zt_open, sp), sp, args.repeats, n)
            for label, h in (("mixed", how), ("rows", rows_only), ("columns", cols_only)):
                rows[f"N={n} zstd rank ({label})"] = timeit(
                    lambda h=h, n=n: [rank_load(zt_open, zz, n, r, h, False) for r in range(n)],
                    zz,
                    args.repeats,
                    n,
                )
        rows["zstd full decompression"] = timeit(lambda: zt.load_file(zz), zz, args.repeats)
        rows["raw full load_file+touch"] = timeit(
            lambda: [t.reshape(-1).view(torch.uint8)[::4096].sum() for t in zt.load_file(zp).values()],
            zp,
            args.repeats,
        )

        print(f"\n{'one rank':<40}{'median':>12}{'best':>12}")
        for k, (med, best) in rows.items():
            print(f"{k:<40}{med * 1e3:>10.2f}ms{best * 1e3:>10.2f}ms")

        print("\nratios (median, best):")
        for n in (2, 4):
            for touch in ("lazy", "+touch"):
                for ours in (".zt", ".safetensors"):
                    a, b = rows[f"N={n} {touch} ztensor {ours}"], rows[f"N={n} {touch} safetensors"]
                    m, bst = a[0] / b[0], a[1] / b[1]
                    label = f"N={n} {touch}: ztensor {ours} / safetensors"
                    verdict = f"{'PASS' if m <= 1.0 else 'FAIL'} (target <= 1.0)" if touch == "+touch" else ""
                    print(f"  {label:<58} {m:7.3f} {bst:7.3f} {verdict}")
            full = rows["zstd full decompression"]
            for label in ("mixed", "rows", "columns"):
                a = rows[f"N={n} zstd rank ({label})"]
                print(
                    f"  {f'N={n} zstd rank ({label}) / full decompression':<58} "
                    f"{a[0] / full[0]:7.3f} {a[1] / full[1]:7.3f}"
                )
        print(f"\nztensor {ztensor.__version__}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
