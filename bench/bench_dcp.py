"""torch.distributed.checkpoint on 2 ranks: ztensor's storage backend vs
DCP's FileSystemWriter and HuggingFaceStorageWriter, in one run.

The state dict is ~1 GiB of DTensors sharded with Shard(0) over a CPU mesh
of 2 ranks (gloo): 8 float32 and 16 bfloat16 4096x4096 weights. Each repeat
saves and loads it with every backend (order rotated per repeat), timed on
rank 0 between barriers, after one warm-up round that is not kept (the
first touch of fresh memory and files costs several times more on this VM
and would land on whichever backend runs first); the figures are medians
over --repeats, and ratios
are ztensor/peer (< 1: ztensor faster). Loads read a checkpoint just written
(warm page cache), into preallocated DTensors of the same placements.
Every backend fsyncs its files (DCP's defaults; ours sync_files=True).

"Usable single checkpoint": the time from the state dict to a checkpoint an
inference job loads as full tensors: ours is the save itself (
``ztensor.torch.load_file(dir)`` reads it, stitching chunks), HF is its save
with ``enable_consolidation=True`` (sharded save + consolidation into
``model.safetensors``). The first full-tensor load of each (rank 0, one
process) is timed too, as is ``ztensor.torch.dcp.consolidate`` into one .zt.

    python bench/bench_dcp.py [--repeats 3] [--out bench/results/...]

Files live in a temporary folder (under $TMPDIR), deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROWS = 4096
SHAPES = [("f32", ROWS, "float32")] * 8 + [("bf16", ROWS, "bfloat16")] * 16


def rank_main(args) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageReader, HuggingFaceStorageWriter
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    from ztensor.torch.dcp import ZTensorStorageReader, ZTensorStorageWriter

    rank, world = args.rank, args.world
    dist.init_process_group("gloo", init_method=args.init, rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    g = torch.Generator().manual_seed(rank)

    def local(dtype):
        return torch.randn(ROWS // world, ROWS, generator=g).to(getattr(torch, dtype))

    sd = {
        f"layers.{i}.{kind}.weight": DTensor.from_local(local(dtype), mesh, [Shard(0)], run_check=False)
        for i, (kind, _, dtype) in enumerate(SHAPES)
    }
    target = {k: DTensor.from_local(torch.empty_like(v.to_local()), mesh, [Shard(0)]) for k, v in sd.items()}

    backends = {
        "ztensor": (lambda p: ZTensorStorageWriter(p), lambda p: ZTensorStorageReader(p)),
        "filesystem": (lambda p: FileSystemWriter(p), lambda p: FileSystemReader(p)),
        "hf": (
            lambda p: HuggingFaceStorageWriter(p, save_distributed=True),
            lambda p: HuggingFaceStorageReader(p),
        ),
    }
    times: dict = {}

    def timed(key, fn, *fn_args, **fn_kwargs):
        dist.barrier()
        t = time.perf_counter()
        fn(*fn_args, **fn_kwargs)
        dist.barrier()
        times.setdefault(key, []).append(time.perf_counter() - t)

    def fresh(path):
        if rank == 0 and os.path.exists(path):
            shutil.rmtree(path)
        dist.barrier()

    names = list(backends)
    for rep in range(-1, args.repeats):  # rep -1: warm-up (first touch of memory and files), not kept
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            writer, reader = backends[name]
            path = os.path.join(args.dir, name)
            fresh(path)
            timed(f"save {name}", dcp.save, sd, storage_writer=writer(path))
            for v in target.values():
                v.to_local().zero_()
            timed(f"load {name}", dcp.load, target, storage_reader=reader(path))
            if rep == -1:
                for k, v in sd.items():
                    assert torch.equal(target[k].to_local(), v.to_local()), (name, k)
            # the usable single checkpoint of HF: sharded save + consolidation
            if name == "hf":
                single = os.path.join(args.dir, "hf_single")
                fresh(single)
                hf = HuggingFaceStorageWriter(single, save_distributed=True, enable_consolidation=True)
                timed("usable hf (save+consolidate)", dcp.save, sd, storage_writer=hf)
        if rep == -1:
            times.clear()
    if rank == 0:
        with open(os.path.join(args.dir, "times.json"), "w") as f:
            json.dump(times, f)
    dist.barrier()
    dist.destroy_process_group()


def full_loads(tmp: str, repeats: int) -> dict:
    """One process, rank 0's view of an inference job: the first load of
    every global tensor from each usable single checkpoint, and consolidate."""
    import safetensors.torch

    import ztensor.torch
    from ztensor.torch.dcp import consolidate

    times: dict = {}
    single = os.path.join(tmp, "hf_single", "model.safetensors")
    if not os.path.exists(single):
        single = os.path.join(tmp, "hf_single", "model-00001-of-00001.safetensors")
    for rep in range(-1, repeats):
        if rep == 0:
            times.clear()
        for key, fn in (
            (
                "full load ztensor dir (stitched)",
                lambda: ztensor.torch.load_file(os.path.join(tmp, "ztensor")),
            ),
            ("full load hf consolidated", lambda: safetensors.torch.load_file(single)),
        ):
            t = time.perf_counter()
            tensors = fn()
            for v in tensors.values():  # touch: what a loader pays before use
                v.reshape(-1)[:: 4096 // v.element_size()].sum()
            times.setdefault(key, []).append(time.perf_counter() - t)
            del tensors
        out = os.path.join(tmp, "consolidated.zt")
        t = time.perf_counter()
        consolidate(os.path.join(tmp, "ztensor"), out)
        times.setdefault("consolidate ztensor -> one .zt", []).append(time.perf_counter() - t)
        os.remove(out)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--init", default=None)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    if args.rank is not None:
        rank_main(args)
        return
    import torch

    tmp = tempfile.mkdtemp(prefix="bench_dcp_")
    try:
        init = f"file://{tmp}/rendezvous-{uuid.uuid4().hex}"
        cmd = [sys.executable, os.path.abspath(__file__), "--repeats", str(args.repeats), "--init", init]
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        procs = [
            subprocess.Popen([*cmd, "--rank", str(r), "--world", str(args.world), "--dir", tmp], env=env)
            for r in range(args.world)
        ]
        if any(p.wait() for p in procs):
            raise SystemExit("a rank failed")
        with open(os.path.join(tmp, "times.json")) as f:
            times = json.load(f)
        times.update(full_loads(tmp, args.repeats))
        med = {k: statistics.median(v) for k, v in times.items()}
        gib = sum(ROWS * ROWS * (4 if dt == "float32" else 2) for _, _, dt in SHAPES) / 2**30
        lines = [
            f"bench_dcp: {args.world} ranks (gloo, CPU), {gib:.2f} GiB state dict "
            f"({len(SHAPES)} tensors {ROWS}x{ROWS}, Shard(0)), torch {torch.__version__}, "
            f"median of {args.repeats}; machine shared with other jobs (2 cores)",
        ]
        for k, v in times.items():
            lines.append(f"  {k:40s} median {med[k]:7.3f} s   runs {', '.join(f'{x:.3f}' for x in v)}")
        lines.append("ratios (ztensor / peer, < 1: ztensor faster):")
        for op in ("save", "load"):
            for peer in ("filesystem", "hf"):
                lines.append(f"  {op} vs {peer:11s} {med[f'{op} ztensor'] / med[f'{op} {peer}']:.2f}x")
        usable, hf_usable = med["save ztensor"], med["usable hf (save+consolidate)"]
        lines.append(
            f"  usable single checkpoint: ztensor save {usable:.3f} s vs HF save+consolidate "
            f"{hf_usable:.3f} s: {usable / hf_usable:.2f}x"
        )
        both = usable + med["consolidate ztensor -> one .zt"]
        lines.append(f"  with our consolidate too: {both:.3f} s: {both / hf_usable:.2f}x")
        lines.append(
            f"  first full load: stitched dir vs HF consolidated file "
            f"{med['full load ztensor dir (stitched)'] / med['full load hf consolidated']:.2f}x"
        )
        text = "\n".join(lines)
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
