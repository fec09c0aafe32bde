"""Loading foreign formats through ztensor vs each format's own library, in
one run, on a ~1 GiB Llama-shaped checkpoint (warm page cache).

A benchmark, not a test: prints median/best of --repeats (after a warm-up)
and ratios ztensor/peer (< 1: ztensor faster) with PASS/FAIL next to the
foreign-format targets.

    python bench/bench_formats.py [--size-mib 1024] [--repeats 5] [--only part1|part2]

part1: .safetensors, .pt, .npz; part2: .gguf, .h5, .onnx.
"""

import argparse
import gc
import os
import tempfile

import numpy as np
import torch
from _common import timeit_warm as timeit
from _common import touch


def checkpoint(size_mib: int, dtype) -> dict:
    g = torch.Generator().manual_seed(0)
    d, vocab, ff = 2048, 32000, 5504
    t = {"model.embed_tokens.weight": torch.randn(vocab, d, generator=g).to(dtype)}
    per_layer = (4 * d * d + 3 * d * ff) * 2
    for i in range(max(1, (size_mib * 2**20 - vocab * d * 2) // per_layer)):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[p + f"self_attn.{n}.weight"] = torch.randn(d, d, generator=g).to(dtype)
        for n, shape in (("gate_proj", (ff, d)), ("up_proj", (ff, d)), ("down_proj", (d, ff))):
            t[p + f"mlp.{n}.weight"] = torch.randn(*shape, generator=g).to(dtype)
        t[p + "input_layernorm.weight"] = torch.ones(d)
    return t


def report(rows, pairs):
    print(f"{'operation':<46}{'median':>12}{'best':>12}")
    for k, (m, b) in rows.items():
        print(f"{k:<46}{m * 1e3:>10.2f}ms{b * 1e3:>10.2f}ms")
    print("\nratios ztensor/peer (median, best):")
    for a, b, label in pairs:
        m, bst = rows[a][0] / rows[b][0], rows[a][1] / rows[b][1]
        print(f"  {label:<52} {m:7.3f} {bst:7.3f} {'PASS' if m <= 1.0 else 'FAIL'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=("part1", "part2"))
    args = ap.parse_args()
    if args.only != "part2":
        part1(args)
    if args.only != "part1":
        part2(args)


def part1(args):
    import safetensors.numpy as stn
    import safetensors.torch as st

    import ztensor.numpy as zn
    import ztensor.torch as zt

    tmp = tempfile.mkdtemp(prefix="zt-bench-formats-")
    sp, pp, npz = (os.path.join(tmp, n) for n in ("m.safetensors", "m.pt", "m.npz"))
    tensors = checkpoint(args.size_mib, torch.bfloat16)
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    st.save_file(tensors, sp)
    torch.save(tensors, pp)
    del tensors
    half = checkpoint(args.size_mib, torch.float16)  # npz has no bfloat16
    np.savez(npz, **{k: v.numpy() for k, v in half.items()})
    del half
    gc.collect()
    print(f"checkpoint: {total / 2**30:.2f} GiB; load average {os.getloadavg()[0]:.2f}")

    r = args.repeats
    rows = {
        "safetensors lazy: ztensor.torch": timeit(lambda: zt.load_file(sp), sp, r),
        "safetensors lazy: safetensors.torch": timeit(lambda: st.load_file(sp), sp, r),
        "safetensors touched: ztensor.torch": timeit(lambda: touch(zt.load_file(sp)), sp, r),
        "safetensors touched: safetensors.torch": timeit(lambda: touch(st.load_file(sp)), sp, r),
        "safetensors copy: ztensor.torch copy=True": timeit(lambda: zt.load_file(sp, copy=True), sp, r),
        "safetensors copy: safetensors.torch+clone": timeit(
            lambda: {k: v.clone() for k, v in st.load_file(sp).items()}, sp, r
        ),
        "safetensors copy: ztensor.numpy copy=True": timeit(lambda: zn.load_file(sp, copy=True), sp, r),
        "safetensors copy: safetensors.numpy": timeit(lambda: stn.load_file(sp), sp, r),
        "pt lazy: ztensor.torch": timeit(lambda: zt.load_file(pp), pp, r),
        "pt lazy: torch.load(mmap=True)": timeit(lambda: torch.load(pp, mmap=True, weights_only=True), pp, r),
        "pt copy: ztensor.torch copy=True": timeit(lambda: zt.load_file(pp, copy=True), pp, r),
        "pt copy: torch.load": timeit(lambda: torch.load(pp, weights_only=True), pp, r),
        "npz: ztensor.numpy": timeit(lambda: zn.load_file(npz), npz, r),
        "npz: ztensor.numpy copy=True": timeit(lambda: zn.load_file(npz, copy=True), npz, r),
        "npz: np.load (all members)": timeit(lambda: dict(np.load(npz)), npz, r),
    }
    report(
        rows,
        (
            ("safetensors lazy: ztensor.torch", "safetensors lazy: safetensors.torch", ".safetensors lazy"),
            (
                "safetensors touched: ztensor.torch",
                "safetensors touched: safetensors.torch",
                ".safetensors lazy + touch",
            ),
            (
                "safetensors copy: ztensor.torch copy=True",
                "safetensors copy: safetensors.torch+clone",
                ".safetensors materialized (torch)",
            ),
            (
                "safetensors copy: ztensor.numpy copy=True",
                "safetensors copy: safetensors.numpy",
                ".safetensors materialized (numpy)",
            ),
            (
                "pt lazy: ztensor.torch",
                "pt lazy: torch.load(mmap=True)",
                ".pt vs torch.load(mmap=True, weights_only=True)",
            ),
            (
                "pt copy: ztensor.torch copy=True",
                "pt copy: torch.load",
                ".pt copy vs torch.load(weights_only=True)",
            ),
            ("npz: ztensor.numpy", "npz: np.load (all members)", ".npz vs np.load"),
        ),
    )
    for p in (sp, pp, npz):
        os.remove(p)
    os.rmdir(tmp)


def part2(args):
    """.gguf, .h5 and .onnx: the same checkpoint (float16, norms float32)
    written by each format's own library, read by it and by ztensor."""
    import gguf
    import h5py
    import onnx
    from onnx import numpy_helper

    import ztensor.numpy as zn

    tmp = tempfile.mkdtemp(prefix="zt-bench-formats2-")
    gp, hp, op = (os.path.join(tmp, n) for n in ("m.gguf", "m.h5", "m.onnx"))
    arrays = {k: v.numpy() for k, v in checkpoint(args.size_mib, torch.float16).items()}
    total = sum(a.nbytes for a in arrays.values())
    w = gguf.GGUFWriter(gp, arch="llama")
    for k, a in arrays.items():
        w.add_tensor(k, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with h5py.File(hp, "w") as f:
        for k, a in arrays.items():
            f.create_dataset(k, data=a)
    graph = onnx.helper.make_graph(
        [], "g", [], [], [numpy_helper.from_array(a, k) for k, a in arrays.items()]
    )
    onnx.save(onnx.helper.make_model(graph), op)
    del arrays, graph
    gc.collect()
    print(f"\npart 2 checkpoint: {total / 2**30:.2f} GiB float16; load average {os.getloadavg()[0]:.2f}")

    def gguf_touched():
        return touch({t.name: np.asarray(t.data) for t in gguf.GGUFReader(gp).tensors})

    def gguf_copied():
        return {t.name: np.array(t.data) for t in gguf.GGUFReader(gp).tensors}

    def h5py_all():
        with h5py.File(hp, "r") as f:
            out = {}
            f.visititems(lambda k, d: out.__setitem__(k, d[()]) if isinstance(d, h5py.Dataset) else None)
            return out

    def onnx_all():
        m = onnx.load(op)
        return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}

    r = args.repeats
    rows = {
        "gguf touched: ztensor.numpy": timeit(lambda: touch(zn.load_file(gp)), gp, r),
        "gguf touched: gguf.GGUFReader": timeit(gguf_touched, gp, r),
        "gguf copy: ztensor.numpy copy=True": timeit(lambda: zn.load_file(gp, copy=True), gp, r),
        "gguf copy: gguf.GGUFReader + np.array": timeit(gguf_copied, gp, r),
        "h5 lazy+touch: ztensor.numpy": timeit(lambda: touch(zn.load_file(hp)), hp, r),
        "h5 copy: ztensor.numpy copy=True": timeit(lambda: zn.load_file(hp, copy=True), hp, r),
        "h5: h5py (every dataset)": timeit(h5py_all, hp, r),
        "onnx lazy+touch: ztensor.numpy": timeit(lambda: touch(zn.load_file(op)), op, r),
        "onnx copy: ztensor.numpy copy=True": timeit(lambda: zn.load_file(op, copy=True), op, r),
        "onnx: onnx.load + numpy_helper": timeit(onnx_all, op, r),
    }
    report(
        rows,
        (
            (
                "gguf touched: ztensor.numpy",
                "gguf touched: gguf.GGUFReader",
                ".gguf lazy + touch vs GGUFReader + touch",
            ),
            (
                "gguf copy: ztensor.numpy copy=True",
                "gguf copy: gguf.GGUFReader + np.array",
                ".gguf copy vs GGUFReader + np.array",
            ),
            ("h5 lazy+touch: ztensor.numpy", "h5: h5py (every dataset)", ".h5 lazy + touch vs h5py"),
            ("h5 copy: ztensor.numpy copy=True", "h5: h5py (every dataset)", ".h5 copy vs h5py"),
            (
                "onnx lazy+touch: ztensor.numpy",
                "onnx: onnx.load + numpy_helper",
                ".onnx lazy + touch vs onnx.load",
            ),
            (
                "onnx copy: ztensor.numpy copy=True",
                "onnx: onnx.load + numpy_helper",
                ".onnx copy vs onnx.load",
            ),
        ),
    )
    for p in (gp, hp, op):
        os.remove(p)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
