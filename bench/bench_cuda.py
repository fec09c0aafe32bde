"""Loading a ~1 GiB checkpoint onto a CUDA device: ztensor vs safetensors.

Each loader runs in its own subprocess so its peak host memory (ru_maxrss)
is its own. Prints wall times (warm page cache) and the ratios.

    python bench/bench_cuda.py [--size-mib 1024] [--repeats 3]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time, torch
which, path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
if which == "ztensor":
    import ztensor.torch as m
    load = lambda: m.load_file(path, device="cuda:0")
else:
    import safetensors.torch as m
    load = lambda: m.load_file(path, device="cuda:0")
torch.cuda.init(); torch.empty(1, device="cuda:0"); torch.cuda.synchronize()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); out = load(); torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
    del out
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"times": times, "peak_rss_growth_mib": (peak - base) / 1024}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import safetensors.torch as st
    import torch

    import ztensor.torch as zt

    d = 2048
    n_layers = max(1, (args.size_mib * 2**20 - 2 * 32000 * d * 2) // (12 * d * d * 2))
    g = torch.Generator().manual_seed(0)
    tensors = {
        "embed.weight": torch.randn(32000, d, generator=g).bfloat16(),
        "lm_head.weight": torch.randn(32000, d, generator=g).bfloat16(),
    }
    for i in range(n_layers):
        tensors[f"layers.{i}.attn.weight"] = torch.randn(4 * d, d, generator=g).bfloat16()
        tensors[f"layers.{i}.mlp.weight"] = torch.randn(8 * d, d, generator=g).bfloat16()
        tensors[f"layers.{i}.norm.weight"] = torch.ones(d)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    with tempfile.TemporaryDirectory() as tmp:
        zp, sp = os.path.join(tmp, "m.zt"), os.path.join(tmp, "m.safetensors")
        zt.save_file(tensors, zp)
        st.save_file(tensors, sp)
        del tensors
        for p in (zp, sp):
            with open(p, "rb") as f:
                while f.read(64 << 20):
                    pass
        res = {}
        for which, path in (("ztensor", zp), ("safetensors", sp)):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, which, path, str(args.repeats)],
                capture_output=True,
                text=True,
                check=True,
            )
            res[which] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"checkpoint: {total / 2**30:.2f} GiB, device {torch.cuda.get_device_name(0)}")
    for which, r in res.items():
        t = sorted(r["times"])
        print(
            f"  {which:<12} load_file(device='cuda:0'): best {t[0]:.3f} s, median {t[len(t) // 2]:.3f} s, "
            f"{total / t[0] / 2**30:.2f} GiB/s, peak host RSS growth {r['peak_rss_growth_mib']:.0f} MiB"
        )
    ratio = min(res["ztensor"]["times"]) / min(res["safetensors"]["times"])
    print(f"  ratio ztensor/safetensors (best): {ratio:.3f}")


if __name__ == "__main__":
    main()
