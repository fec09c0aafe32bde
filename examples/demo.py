"""zTensor demo: save, load, compress, verify and convert real tensors.

Run through ./scripts/demo.sh, which builds the package first.
"""

import os
import tempfile
import time

import numpy as np

import ztensor
from ztensor.numpy import load_file, save_file


def llama_like(seed: int = 0) -> dict:
    """A small Llama-shaped checkpoint: bf16 matrices, fp32 norms, int64 ids."""
    import ml_dtypes

    rng = np.random.default_rng(seed)
    d, ff, vocab = 256, 688, 4096
    t = {"model.embed_tokens.weight": rng.standard_normal((vocab, d), np.float32).astype(ml_dtypes.bfloat16)}
    for i in range(4):
        p = f"model.layers.{i}."
        for name, shape in [
            ("self_attn.q_proj", (d, d)),
            ("self_attn.k_proj", (d, d)),
            ("self_attn.v_proj", (d, d)),
            ("self_attn.o_proj", (d, d)),
            ("mlp.gate_proj", (ff, d)),
            ("mlp.up_proj", (ff, d)),
            ("mlp.down_proj", (d, ff)),
        ]:
            t[p + name + ".weight"] = (rng.standard_normal(shape, np.float32) * 0.02).astype(
                ml_dtypes.bfloat16
            )
        t[p + "input_layernorm.weight"] = np.ones(d, np.float32)
    t["position_ids"] = np.arange(2048, dtype=np.int64)
    return t


def same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a
    )


def main() -> None:
    out = tempfile.mkdtemp(prefix="ztensor-demo-")
    tensors = llama_like()
    nbytes = sum(v.nbytes for v in tensors.values())
    print(f"ztensor {ztensor.__version__}: {len(tensors)} tensors, {nbytes / 2**20:.1f} MiB")

    raw = os.path.join(out, "model.zt")
    t0 = time.perf_counter()
    save_file(tensors, raw, metadata={"format": "pt", "source": "demo", "layers": 4})
    print(f"saved {raw}: {os.path.getsize(raw)} bytes in {1e3 * (time.perf_counter() - t0):.1f} ms")

    t0 = time.perf_counter()
    lazy = load_file(raw)
    print(
        f"load_file (zero-copy): {1e3 * (time.perf_counter() - t0):.2f} ms, bit-exact: {same(tensors, lazy)}"
    )
    t0 = time.perf_counter()
    copied = load_file(raw, copy=True)
    print(
        f"load_file(copy=True):  {1e3 * (time.perf_counter() - t0):.2f} ms, "
        f"bit-exact: {same(tensors, copied)}"
    )

    lazy["position_ids"][0] = -1  # copy-on-write: the file does not change
    print("after writing to a zero-copy array, the file still holds", load_file(raw)["position_ids"][:3])

    packed = os.path.join(out, "model.zstd.zt")
    with ztensor.Writer(packed, metadata={"compressed": True}) as w:
        for name, arr in tensors.items():
            w.add(name, arr, compress=3, checksum="crc32c")
    print(
        f"zstd-3 + crc32c: {os.path.getsize(packed)} bytes "
        f"({os.path.getsize(packed) / os.path.getsize(raw):.1%} of raw), "
        f"bit-exact: {same(tensors, load_file(packed))}"
    )

    with ztensor.Reader(packed) as r:
        m = r.metadata("model.embed_tokens.weight")
        c = m.components["data"]
        print(f"metadata: {m}; encoding={c['encoding']} digest={c['digest']}; file metadata {r.metadata()}")
        r.verify()
        print("verify(): every digest and zstd stream checked, no problems")

    damaged = os.path.join(out, "damaged.zt")
    data = bytearray(open(packed, "rb").read())
    data[c["offset"] + 100] ^= 0x01
    open(damaged, "wb").write(bytes(data))
    try:
        ztensor.Reader(damaged).verify()
        print("BUG: a flipped bit was not detected")
    except ztensor.ZTensorError as e:
        print(f"a flipped bit is caught: {e}")

    try:
        import safetensors.numpy as st

        src = os.path.join(out, "model.safetensors")
        st.save_file(tensors, src, metadata={"source": "demo"})
        conv = os.path.join(out, "converted.zt")
        with ztensor.Reader(src) as r:  # any format loads through the same Reader
            print(f"read {src}: format={r.format}, {len(r)} tensors, metadata {r.metadata()}")
            save_file(r.load_numpy(), conv, metadata=r.metadata())
        print(
            f"converted {src} -> {conv}: bit-exact: "
            f"{same(dict(sorted(tensors.items())), dict(sorted(load_file(conv).items())))}"
        )
    except ImportError:
        print("(safetensors not installed: conversion step skipped)")

    sharded = os.path.join(out, "sharded", "model.zt")
    os.makedirs(os.path.dirname(sharded))
    save_file(tensors, sharded, max_shard_size="3MB")  # shards + model.zt.index.json
    shards = sorted(f for f in os.listdir(os.path.dirname(sharded)) if f != "model.zt.index.json")
    back = load_file(sharded + ".index.json")  # or the folder: one set of names across shards
    print(
        f"sharded save (max_shard_size='3MB'): {len(shards)} shards + index, bit-exact: {same(tensors, back)}"
    )
    print(f"files are in {out}")


if __name__ == "__main__":
    main()
