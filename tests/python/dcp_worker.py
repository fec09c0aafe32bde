"""One rank of a torch.distributed.checkpoint test (run by test_dcp.py as a
subprocess per rank, gloo on CPU, rendezvous through a file: no ports).

``python dcp_worker.py '<json>'`` with ``rank``, ``world_size``, ``init`` (a
file:// URL) and ``tasks``: a list of ``{"task": ..., arguments}`` run in order. Every check is an assert:
a failing rank exits non-zero with its traceback on stderr.
"""

from __future__ import annotations

import json
import sys
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

from ztensor.torch.dcp import ZTensorStorageReader, ZTensorStorageWriter

warnings.filterwarnings("ignore", category=UserWarning)  # DCP's "overwriting" and no_dist notes


def global_tensors() -> dict:
    """The checkpoint's global tensors, the same on every rank and in the test."""
    g = torch.Generator().manual_seed(1234)
    return {
        "model.w_f32": torch.randn(16, 12, generator=g),
        "model.w_bf16": torch.randn(8, 10, generator=g).to(torch.bfloat16),
        "model.i64": torch.arange(24 * 6, dtype=torch.int64).reshape(24, 6) - 70,
        "model.i32": torch.randint(-(2**31), 2**31 - 1, (6, 4, 10), dtype=torch.int32, generator=g),
        "model.bias": torch.randn(5, generator=g),
    }


def non_tensor_state() -> dict:
    torch.manual_seed(99)
    return {"step": 42, "lr": 0.125, "names": ["adam", 3, None], "rng": torch.get_rng_state()}


# Placements per layout name; "model.bias" stays replicated in every layout.
LAYOUTS = {
    "shard0": lambda: [Shard(0)],
    "shard1": lambda: [Shard(1)],
    "replicate": lambda: [Replicate()],
    "2d": lambda: [Shard(0), Shard(1)],
}


def mesh_for(layout: str, world: int):
    if layout == "2d":
        return init_device_mesh("cpu", (2, world // 2))
    return init_device_mesh("cpu", (world,))


def state(layout: str, world: int, zeros: bool) -> dict:
    mesh = mesh_for(layout, world)
    out = {}
    for name, t in global_tensors().items():
        placements = [Replicate()] * mesh.ndim if name == "model.bias" else LAYOUTS[layout]()
        out[name] = distribute_tensor(torch.zeros_like(t) if zeros else t, mesh, placements)
    extra = non_tensor_state()
    if zeros:
        extra = {"step": 0, "lr": 0.0, "names": [], "rng": torch.zeros_like(extra["rng"])}
    return {**out, "extra": extra}


def check_loaded(sd: dict, where: str) -> None:
    for name, expected in global_tensors().items():
        got = sd[name]
        assert isinstance(got, DTensor), (where, name)
        full = got.full_tensor()
        assert full.dtype == expected.dtype and torch.equal(full, expected), f"{where}: {name} differs"
    extra, expected = sd["extra"], non_tensor_state()
    assert extra["step"] == 42 and extra["lr"] == 0.125 and extra["names"] == ["adam", 3, None], (
        where,
        extra,
    )
    assert torch.equal(extra["rng"], expected["rng"]), where


def task_save(args, world):
    sd = state(args["layout"], world, zeros=False)
    dcp.save(sd, storage_writer=ZTensorStorageWriter(args["zt"], thread_count=args.get("threads", 1)))
    if args.get("fs"):
        dcp.save(sd, storage_writer=dcp.FileSystemWriter(args["fs"]))
    if args.get("async"):
        dcp.async_save(sd, storage_writer=ZTensorStorageWriter(args["async"], compression=True)).result()


def task_load(args, world):
    for key, reader in (
        ("zt", ZTensorStorageReader),
        ("fs", dcp.FileSystemReader),
        ("async", ZTensorStorageReader),
    ):
        if args.get(key):
            sd = state(args["layout"], world, zeros=True)
            dcp.load(sd, storage_reader=reader(args[key]))
            check_loaded(sd, f"{key} into {args['layout']} on {world} ranks")


def task_fsdp(args, world):
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from torch.distributed.fsdp import fully_shard

    def build(seed):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6))
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        optim = torch.optim.Adam(model.parameters(), lr=0.01)
        model(torch.randn(4, 12)).sum().backward()
        optim.step()
        return model, optim

    model, optim = build(0)
    msd, osd = get_state_dict(model, optim)
    dcp.save({"model": msd, "optim": osd}, storage_writer=ZTensorStorageWriter(args["zt"]))
    expected = {k: v.full_tensor() for k, v in msd.items()}

    other, other_optim = build(1)
    msd2, osd2 = get_state_dict(other, other_optim)
    assert any(not torch.equal(v.full_tensor(), expected[k]) for k, v in msd2.items())
    loaded = {"model": msd2, "optim": osd2}
    dcp.load(loaded, storage_reader=ZTensorStorageReader(args["zt"]))
    set_state_dict(other, other_optim, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
    for k, v in other.state_dict().items():
        assert torch.equal(v.full_tensor(), expected[k]), k
    for k, v in osd["state"].items():
        for s, t in v.items():
            a = t.full_tensor() if isinstance(t, DTensor) else t
            b = loaded["optim"]["state"][k][s]
            b = b.full_tensor() if isinstance(b, DTensor) else b
            assert torch.equal(a, b), (k, s)
    x = torch.randn(3, 12)
    assert torch.equal(model(x), other(x))


def main() -> None:
    args = json.loads(sys.argv[1])
    dist.init_process_group(
        "gloo", init_method=args["init"], rank=args["rank"], world_size=args["world_size"]
    )
    try:
        for task in args["tasks"]:  # several per process: each start costs a torch import
            {"save": task_save, "load": task_load, "fsdp": task_fsdp}[task["task"]](task, args["world_size"])
            dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
