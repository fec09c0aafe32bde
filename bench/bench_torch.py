"""PyTorch front end benchmark: ztensor.torch vs safetensors.torch (and
torch.save/torch.load) on a ~1 GiB Llama-shaped checkpoint, in one run.

A benchmark, not a test: it prints times (median and best of --repeats after
one warm-up, warm page cache) and ratios ztensor/peer (< 1: ztensor faster),
and PASS/FAIL next to the targets of the torch front end.

    python bench/bench_torch.py [--size-mib 1024] [--repeats 5]
"""

import argparse
import gc
import os
import tempfile

import torch
from _common import timeit, touch, warm


def checkpoint(size_mib: int) -> dict:
    g = torch.Generator().manual_seed(0)
    d, vocab = 2048, 32000
    t = {
        "model.embed_tokens.weight": torch.randn(vocab, d, generator=g).bfloat16(),
        "lm_head.weight": torch.randn(vocab, d, generator=g).bfloat16(),
    }
    per_layer = (4 * d * d + 3 * d * 5504) * 2 + 2 * d * 4
    layers = max(1, (size_mib * 2**20 - 2 * vocab * d * 2) // per_layer)
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[p + f"self_attn.{n}.weight"] = torch.randn(d, d, generator=g).bfloat16()
        for n, shape in (("gate_proj", (5504, d)), ("up_proj", (5504, d)), ("down_proj", (d, 5504))):
            t[p + f"mlp.{n}.weight"] = torch.randn(*shape, generator=g).bfloat16()
        t[p + "input_layernorm.weight"] = torch.ones(d)
        t[p + "post_attention_layernorm.weight"] = torch.ones(d)
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import safetensors.torch as st

    import ztensor.torch as zt

    tensors = checkpoint(args.size_mib)
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    print(
        f"checkpoint: {len(tensors)} tensors, {total / 2**30:.2f} GiB; "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    tmp = tempfile.mkdtemp(prefix="zt-bench-torch-")
    zp, sp, tp = (os.path.join(tmp, n) for n in ("m.zt", "m.safetensors", "m.pt"))

    def fresh(p):
        return lambda: (os.path.exists(p) and os.remove(p), os.sync())

    rows = {}
    rows["save zt"] = timeit(lambda: zt.save_file(tensors, zp), args.repeats, fresh(zp))
    rows["save st"] = timeit(lambda: st.save_file(tensors, sp), args.repeats, fresh(sp))
    torch.save(tensors, tp)
    tensors = None  # frees the checkpoint before the loads
    gc.collect()

    rows["lazy zt"] = timeit(lambda: zt.load_file(zp), args.repeats, lambda: warm(zp))
    rows["lazy st"] = timeit(lambda: st.load_file(sp), args.repeats, lambda: warm(sp))
    rows["lazy+touch zt"] = timeit(lambda: touch(zt.load_file(zp)), args.repeats, lambda: warm(zp))
    rows["lazy+touch st"] = timeit(lambda: touch(st.load_file(sp)), args.repeats, lambda: warm(sp))
    rows["copy zt"] = timeit(lambda: zt.load_file(zp, copy=True), args.repeats, lambda: warm(zp))
    rows["copy st"] = timeit(
        lambda: {k: v.clone() for k, v in st.load_file(sp).items()}, args.repeats, lambda: warm(sp)
    )
    rows["torch.load mmap"] = timeit(
        lambda: torch.load(tp, mmap=True, weights_only=True), args.repeats, lambda: warm(tp)
    )
    rows["torch.load"] = timeit(lambda: torch.load(tp, weights_only=True), args.repeats, lambda: warm(tp))

    print(f"{'operation':<22}{'median':>12}{'best':>12}")
    for k, (med, best) in rows.items():
        print(f"{k:<22}{med * 1e3:>10.2f}ms{best * 1e3:>10.2f}ms")

    def ratio(a, b):
        return rows[a][0] / rows[b][0], rows[a][1] / rows[b][1]

    print("\nratios ztensor/peer (median, best) and targets:")
    for a, b, target, label in (
        ("lazy zt", "lazy st", 1.2, "lazy load_file within 1.2x of safetensors.torch (lazy)"),
        ("lazy+touch zt", "lazy+touch st", None, "lazy load + touch every page"),
        ("copy zt", "copy st", 1.0, "load_file(copy=True) faster than safetensors load + clone"),
        ("save zt", "save st", 1.0, "save_file no slower than safetensors.torch.save_file"),
        ("lazy zt", "torch.load mmap", None, "vs torch.load(mmap=True, weights_only=True)"),
        ("copy zt", "torch.load", None, "copy load vs torch.load(weights_only=True)"),
    ):
        med, best = ratio(a, b)
        verdict = "" if target is None else ("PASS" if med <= target else "FAIL")
        print(f"  {label:<62} {med:6.3f} {best:6.3f} {verdict}")
    for p in (zp, sp, tp):
        os.remove(p)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
