"""Sharded checkpoints: ztensor vs the Hugging Face stack, in one run, on the
~1 GiB Llama-shaped checkpoint of bench_torch.py split into 4 safetensors
shards by ``huggingface_hub.save_torch_state_dict``.

Load rows (``load_rows``): ztensor reads the checkpoint through its index
(``ztensor.torch.load_file(directory)``), lazily (copy-on-write views) and
with ``copy=True`` (shards read in parallel); the peer is what transformers
does, ``safetensors.torch.load_file`` on each shard one after another.
"+touch" rows read one byte of every page of every tensor, what a loader
pays before the weights are usable; lazy rows without it time the opening
alone. ``copy=True`` gives memory the tensors own: its peer is the
shard-by-shard load with every tensor cloned (what filling a model's
parameters costs); against the lazy load+touch it is shown for reference.
Warm page cache (every shard read before each run).

Each row is a function returning ``{label: (median, best)}``; ``main`` runs
the groups asked for and prints every row, then ratios ztensor/peer
(< 1: ztensor faster).

    python bench/bench_sharded.py [--size-mib 1024] [--shards 4] [--repeats 5]

The files live in a temporary folder (under $TMPDIR), deleted at the end.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import timeit, touch
from bench_torch import checkpoint, warm  # noqa: E402

INDEX = "model.safetensors.index.json"
SHARDS = 4  # the save rows' shard count


def shards_of(directory: str) -> list:
    index = json.load(open(os.path.join(directory, INDEX)))
    return [os.path.join(directory, f) for f in sorted(set(index["weight_map"].values()))]


def make_checkpoint(directory: str, size_mib: int, shards: int) -> int:
    """The checkpoint as ``shards`` safetensors shards by huggingface_hub; its bytes."""
    from huggingface_hub import save_torch_state_dict, split_torch_state_dict_into_shards

    tensors = checkpoint(size_mib)
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    # Greedy filling leaves shards short of the limit: the smallest limit
    # (in MiB steps) that gives `shards` shards.
    limit = total // shards
    while len(split_torch_state_dict_into_shards(tensors, max_shard_size=limit).filename_to_tensors) > shards:
        limit += 2**20
    save_torch_state_dict(tensors, directory, max_shard_size=limit)
    return total


# ---------------------------------------------------------------- load rows


def load_rows(directory: str, repeats: int) -> dict:
    """Loading the whole checkpoint: ztensor via the index vs safetensors shard by shard."""
    import safetensors.torch as st

    import ztensor.torch as zt

    files = shards_of(directory)

    def warm_all():
        for f in files:
            warm(f)

    def hf_sequential():
        out = {}
        for f in files:
            out.update(st.load_file(f))
        return out

    rows = {}
    rows["load lazy: safetensors shard by shard"] = timeit(hf_sequential, repeats, warm_all)
    rows["load lazy: ztensor index"] = timeit(lambda: zt.load_file(directory), repeats, warm_all)
    rows["load +touch: safetensors shard by shard"] = timeit(
        lambda: touch(hf_sequential()), repeats, warm_all
    )
    rows["load +touch: ztensor index"] = timeit(lambda: touch(zt.load_file(directory)), repeats, warm_all)
    # Owned memory, what copy=True gives (and what loading into a model's
    # parameters costs the peer): each tensor copied after the lazy load.
    rows["load copied: safetensors shard by shard + clone"] = timeit(
        lambda: {k: v.clone() for k, v in hf_sequential().items()}, repeats, warm_all
    )
    rows["load copy=True: ztensor index"] = timeit(
        lambda: zt.load_file(directory, copy=True), repeats, warm_all
    )
    return rows


LOAD_RATIOS = [
    # (ours, peer, target)
    ("load lazy: ztensor index", "load lazy: safetensors shard by shard", 1.0),
    ("load +touch: ztensor index", "load +touch: safetensors shard by shard", 1.0),
    ("load copy=True: ztensor index", "load copied: safetensors shard by shard + clone", 1.0),
    ("load copy=True: ztensor index", "load +touch: safetensors shard by shard", None),
]

# ---------------------------------------------------------------- save rows


def limit_for(tensors: dict, shards: int) -> int:
    """A max_shard_size that splits ``tensors`` into exactly ``shards`` shards
    by the plan both libraries follow (Hugging Face's greedy one)."""
    from ztensor._ztensor import _plan_shards

    sizes = [v.numel() * v.element_size() for v in tensors.values()]
    limit = sum(sizes) // shards
    while len(_plan_shards(sizes, limit)) > shards:
        limit += max(sizes) // 64
    return limit


def save_rows(directory: str, repeats: int) -> dict:
    """Saving the checkpoint as shards + index: ztensor vs huggingface_hub,
    the same limit (the same grouping), into an emptied folder each run."""
    from huggingface_hub import save_torch_state_dict

    import ztensor.torch as zt

    tensors = {}
    for f in shards_of(directory):
        import safetensors.torch as st

        tensors.update({k: v.clone() for k, v in st.load_file(f).items()})
    limit = limit_for(tensors, SHARDS)
    out = os.path.join(os.path.dirname(directory), "out")

    def empty():
        shutil.rmtree(out, ignore_errors=True)
        os.mkdir(out)

    rows = {}
    rows[f"save {SHARDS} shards: huggingface_hub save_torch_state_dict"] = timeit(
        lambda: save_torch_state_dict(tensors, out, max_shard_size=limit), repeats, empty
    )
    rows[f"save {SHARDS} shards: ztensor save_file(max_shard_size=)"] = timeit(
        lambda: zt.save_file(tensors, os.path.join(out, "model.zt"), max_shard_size=limit), repeats, empty
    )
    # The same, shards written one after another instead of on threads.
    import ztensor._sharded_save as sharded_save

    threads, sharded_save._MAX_THREADS = sharded_save._MAX_THREADS, 1
    try:
        rows[f"save {SHARDS} shards: ztensor, one shard at a time"] = timeit(
            lambda: zt.save_file(tensors, os.path.join(out, "model.zt"), max_shard_size=limit), repeats, empty
        )
    finally:
        sharded_save._MAX_THREADS = threads
    shards = len(set(json.load(open(os.path.join(out, "model.zt.index.json")))["weight_map"].values()))
    assert shards == SHARDS, shards
    # Saving again over the same shard names goes through staging names
    # and hard links, so the old checkpoint stays complete until the index.
    rows[f"save {SHARDS} shards: ztensor over its previous save"] = timeit(
        lambda: zt.save_file(tensors, os.path.join(out, "model.zt"), max_shard_size=limit), repeats
    )
    return rows


SAVE_RATIOS = [
    (
        f"save {SHARDS} shards: ztensor save_file(max_shard_size=)",
        f"save {SHARDS} shards: huggingface_hub save_torch_state_dict",
        1.0,
    ),
    (
        f"save {SHARDS} shards: ztensor over its previous save",
        f"save {SHARDS} shards: huggingface_hub save_torch_state_dict",
        None,
    ),
    (
        f"save {SHARDS} shards: ztensor save_file(max_shard_size=)",
        f"save {SHARDS} shards: ztensor, one shard at a time",
        None,
    ),
]

GROUPS = {"load": (load_rows, LOAD_RATIOS), "save": (save_rows, SAVE_RATIOS)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated, of {list(GROUPS)}")
    args = ap.parse_args()
    import huggingface_hub
    import safetensors

    import ztensor

    tmp = tempfile.mkdtemp(prefix="zt-bench-sharded-")
    try:
        directory = os.path.join(tmp, "hf")
        os.mkdir(directory)
        total = make_checkpoint(directory, args.size_mib, args.shards)
        files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
        print(
            f"checkpoint: {total / 2**30:.2f} GiB in {len(files)} safetensors shards "
            f"({', '.join(f'{os.path.getsize(f) / 2**20:.0f} MiB' for f in files)}); "
            f"safetensors {safetensors.__version__}, huggingface_hub {huggingface_hub.__version__}, "
            f"torch {torch.__version__}, ztensor {ztensor.__version__}, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.2f}; {args.repeats} repeats after a warm-up, warm page cache"
        )
        rows, ratios = {}, []
        for g in args.groups.split(","):
            fn, r = GROUPS[g]
            rows.update(fn(directory, args.repeats))
            ratios += r
        print(f"\n{'':<44}{'median':>12}{'best':>12}")
        for k, (med, best) in rows.items():
            print(f"{k:<44}{med * 1e3:>10.1f}ms{best * 1e3:>10.1f}ms")
        print("\nratios ztensor / peer (median, best):")
        for ours, peer, target in ratios:
            m, b = rows[ours][0] / rows[peer][0], rows[ours][1] / rows[peer][1]
            verdict = f"{'PASS' if m <= target else 'FAIL'} (target <= {target})" if target else ""
            print(f"  {ours + ' / ' + peer:<84} {m:7.3f} {b:7.3f} {verdict}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
