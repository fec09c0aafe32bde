"""ztensor.torch.dcp: .zt as a storage backend for torch.distributed.checkpoint.

Multi-rank cases run dcp_worker.py as one subprocess per rank (gloo on CPU,
rendezvous through a file); single-process cases use ``no_dist=True``. The
oracle is torch itself: the global tensors the workers build, and DCP's own
FileSystemWriter/FileSystemReader on the same state dict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")

from torch.distributed.checkpoint.api import CheckpointException  # noqa: E402

import ztensor  # noqa: E402
from ztensor.torch import load_file  # noqa: E402
from ztensor.torch.dcp import ZTensorStorageReader, ZTensorStorageWriter, consolidate  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dcp_worker import global_tensors, non_tensor_state  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def fails(match: str):
    """DCP reports a rank's error as a CheckpointException quoting it."""
    return pytest.raises((ztensor.ZTensorError, CheckpointException), match=match)


def run_ranks(tmp: Path, world: int, *tasks: dict) -> None:
    """Runs ``tasks`` in order on ``world`` ranks of ``dcp_worker.py``; fails
    with the ranks' stderr."""
    init = f"file://{tmp}/rendezvous-{uuid.uuid4().hex}"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    spec = {"tasks": list(tasks), "world_size": world, "init": init}
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "dcp_worker.py"), json.dumps({**spec, "rank": r})],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in range(world)
    ]
    try:
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    failed = [(r, e) for r, (p, e) in enumerate(zip(procs, errors, strict=True)) if p.returncode]
    assert not failed, "\n".join(f"rank {r}:\n{e[-3000:]}" for r, e in failed)


def full_targets() -> dict:
    """A state dict of plain full-size tensors to load into in one process."""
    sd = {name: torch.zeros_like(t) for name, t in global_tensors().items()}
    sd["extra"] = {"step": 0, "lr": 0.0, "names": [], "rng": torch.zeros_like(non_tensor_state()["rng"])}
    return sd


def assert_full(sd: dict) -> None:
    for name, expected in global_tensors().items():
        assert sd[name].dtype == expected.dtype and torch.equal(sd[name], expected), name
    assert sd["extra"]["step"] == 42 and sd["extra"]["names"] == ["adam", 3, None]
    assert torch.equal(sd["extra"]["rng"], non_tensor_state()["rng"])


def copy_of(src: str, tmp_path: Path) -> str:
    dst = str(tmp_path / "copy")
    shutil.copytree(src, dst)
    return dst


def load_fails(ck: str, match: str) -> None:
    """Loading the checkpoint folder ``ck`` through DCP fails with ``match``."""
    with fails(match):
        dcp.load(full_targets(), storage_reader=ZTensorStorageReader(ck), no_dist=True)


def edit_description(ck: str, edit, resign: bool = False) -> dict:
    """Rewrites the folder's ``ztensor-dcp.json`` after ``edit(doc)``, with a
    matching ``crc32`` when ``resign`` (else the old one); returns the doc."""
    from ztensor._dcp_source import digest

    path = os.path.join(ck, "ztensor-dcp.json")
    with open(path) as f:
        doc = json.load(f)
    crc = doc.pop("crc32")
    edit(doc)
    doc["crc32"] = digest(doc) if resign else crc
    with open(path, "w") as f:
        json.dump(doc, f)
    return doc


# ------------------------------------------------------------ multi-rank


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One checkpoint saved on 2 ranks with Shard(0): ours, FileSystemWriter's
    and ours through async_save (zstd), from the same state dict."""
    tmp = tmp_path_factory.mktemp("dcp2")
    dirs = {"zt": str(tmp / "zt"), "fs": str(tmp / "fs"), "async": str(tmp / "async")}
    run_ranks(tmp, 2, {"task": "save", "layout": "shard0", **dirs})
    return tmp, dirs


@pytest.fixture(scope="module")
def saved4(saved):
    """On 4 ranks: the 2-rank checkpoints loaded as Shard(1) (resharding up,
    placements changed; ours, FileSystemWriter's and async_save's to the same
    global tensors), then saved from a 2x2 mesh (Shard(0), Shard(1)), two
    files per rank."""
    tmp, dirs = saved
    ck = str(tmp / "zt4")
    run_ranks(
        tmp,
        4,
        {"task": "load", "layout": "shard1", **dirs},
        {"task": "save", "layout": "2d", "zt": ck, "threads": 2},
    )
    return tmp, ck


def test_2_ranks_shard0_to_4_ranks_shard1_then_2d_save(saved4):
    _, ck = saved4
    assert sorted(f for f in os.listdir(ck) if f.endswith(".zt")) == [
        f"__{r}_{n}.zt" for r in range(4) for n in (0, 1)
    ]


def test_4_ranks_2d_to_2_ranks_replicate_and_fsdp2(saved4):
    """Resharding down to Replicate() on 2 ranks; then FSDP2 (fully_shard on
    CPU with gloo): model and Adam state saved and loaded into a differently
    initialised model, which then computes the same."""
    tmp, ck = saved4
    run_ranks(
        tmp,
        2,
        {"task": "load", "layout": "replicate", "zt": ck},
        {"task": "fsdp", "zt": str(tmp / "fsdp")},
    )


def test_4_ranks_2d_to_world_of_1(saved4):
    tmp, ck = saved4
    run_ranks(tmp, 1, {"task": "load", "layout": "shard0", "zt": ck})


# ------------------------------------------------------------ one process


def test_load_in_one_process_matches_filesystem_reader(saved):
    _, dirs = saved
    ours, theirs = full_targets(), full_targets()
    dcp.load(ours, storage_reader=ZTensorStorageReader(dirs["zt"], thread_count=2), no_dist=True)
    dcp.load(theirs, storage_reader=dcp.FileSystemReader(dirs["fs"]), no_dist=True)
    assert_full(ours)
    for name in global_tensors():
        assert torch.equal(ours[name], theirs[name])
    assert ours["extra"] == {**theirs["extra"], "rng": ours["extra"]["rng"]}


def test_no_dist_save_and_load(tmp_path):
    sd = {**global_tensors(), "extra": non_tensor_state()}
    dcp.save(sd, storage_writer=ZTensorStorageWriter(tmp_path / "ck", checksum="sha256"), no_dist=True)
    loaded = full_targets()
    dcp.load(loaded, storage_reader=ZTensorStorageReader(tmp_path / "ck"), no_dist=True)
    assert_full(loaded)


def test_no_dist_odd_shapes_and_dtypes_and_checkpoint_id(tmp_path):
    """0-d, empty, complex, float8 and bool tensors; the folder named by
    checkpoint_id= (DCP's reset) wins over the writer's path."""
    sd = {
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
        "c64": torch.randn(3, 2, dtype=torch.complex64),
        "f8": torch.randn(4, 4).to(torch.float8_e4m3fn),
        "mask": torch.rand(5) > 0.5,
    }
    ck = tmp_path / "named"
    dcp.save(sd, checkpoint_id=ck, storage_writer=ZTensorStorageWriter(tmp_path / "unused"))
    assert (ck / "ztensor-dcp.json").exists() and not (tmp_path / "unused").exists()
    loaded = {k: torch.zeros_like(v) for k, v in sd.items()}
    dcp.load(loaded, checkpoint_id=ck, storage_reader=ZTensorStorageReader(tmp_path / "unused"))
    full = load_file(ck)
    for k, v in sd.items():
        assert loaded[k].shape == v.shape and full[k].dtype == v.dtype, k
        bits = v.reshape(-1).view(torch.uint8)  # bit for bit (float8 has no ==)
        assert torch.equal(loaded[k].reshape(-1).view(torch.uint8), bits), k
        assert torch.equal(full[k].reshape(-1).view(torch.uint8), bits), k


def test_every_data_file_is_a_valid_zt(saved):
    _, dirs = saved
    for key in ("zt", "async"):
        files = sorted(f for f in os.listdir(dirs[key]) if f.endswith(".zt"))
        assert files == ["__0_0.zt", "__1_0.zt"]
        chunks = {}
        for f in files:
            with ztensor.Reader(os.path.join(dirs[key], f)) as r:
                r.verify()
                assert r.metadata()["dcp"]["format"] == "ztensor-dcp"
                for name in r.keys():
                    meta = r.metadata(name)
                    assert meta.components["data"]["digest"].startswith("crc32c")
                    if key == "async":
                        assert meta.components["data"]["encoding"] == "zstd"
                    attrs = meta.attributes
                    if attrs.get("dcp_bytes"):
                        continue
                    chunks.setdefault(attrs["dcp_fqn"], []).append(
                        (attrs["dcp_offsets"], r.read_tensor(name))
                    )
        # The chunks of each sharded tensor are its row blocks, bit for bit.
        for name, expected in global_tensors().items():
            assert name in chunks
            for offsets, arr in chunks[name]:
                block = expected[offsets[0] : offsets[0] + arr.shape[0]]
                got = torch.from_numpy(np.ascontiguousarray(arr).view(np.uint8).copy()).view(expected.dtype)
                assert torch.equal(got.reshape(block.shape), block), name


def test_description_is_json_and_checked(saved, tmp_path):
    _, dirs = saved
    ck = copy_of(dirs["zt"], tmp_path)

    def grow(doc):
        assert doc["format"] == "ztensor-dcp" and doc["tensors"]["model.w_f32"]["size"] == [16, 12]
        doc["tensors"]["model.w_f32"]["size"] = [17, 12]

    edit_description(ck, grow)
    load_fails(ck, "damaged")


def test_description_naming_a_file_outside_the_folder_is_refused(saved, tmp_path):
    _, dirs = saved
    ck = copy_of(dirs["zt"], tmp_path)
    edit_description(ck, lambda doc: doc["storage"][0].update(file="../__0_0.zt"), resign=True)
    load_fails(ck, "not a plain file name")
    with pytest.raises(ztensor.ZTensorError, match="not a plain file name"):
        load_file(ck)


def test_missing_description_is_refused(saved, tmp_path):
    _, dirs = saved
    ck = copy_of(dirs["zt"], tmp_path)
    os.remove(os.path.join(ck, "ztensor-dcp.json"))
    load_fails(ck, "no ztensor-dcp.json.*not a complete")


def test_interrupted_overwrite_is_refused(saved, tmp_path):
    """A save that dies after its first file leaves a folder that does not
    load (the old description was dropped before any data was written)."""
    _, dirs = saved
    ck = copy_of(dirs["zt"], tmp_path)

    class Dying(ZTensorStorageWriter):
        def _write_file(self, *args):
            super()._write_file(*args)
            raise RuntimeError("killed after one file")

    with fails("killed after one file"):
        dcp.save({**global_tensors()}, storage_writer=Dying(ck, thread_count=1), no_dist=True)
    load_fails(ck, "not a complete")


def test_flipped_bit_is_caught_naming_file_and_tensor(saved, tmp_path):
    _, dirs = saved
    ck = copy_of(dirs["zt"], tmp_path)
    path = os.path.join(ck, "__1_0.zt")
    with ztensor.Reader(path) as r:
        offset = r.metadata("model.w_f32").components["data"]["offset"]
    with open(path, "r+b") as f:
        f.seek(offset + 5)
        byte = f.read(1)[0]
        f.seek(offset + 5)
        f.write(bytes([byte ^ 0x10]))
    load_fails(ck, r"__1_0\.zt.*model\.w_f32|model\.w_f32.*__1_0\.zt")


def test_consolidate_equals_the_global_tensors(saved, tmp_path):
    _, dirs = saved
    for key in ("zt", "async"):
        out = tmp_path / f"{key}.zt"
        consolidate(dirs[key], out)
        with ztensor.Reader(out) as r:
            r.verify()
        loaded = load_file(out)
        expected = global_tensors()
        assert list(loaded) == [*expected, "extra.rng"]
        for name, t in expected.items():
            assert loaded[name].dtype == t.dtype and torch.equal(loaded[name], t), name


def test_consolidate_sharded(saved, tmp_path):
    """max_shard_size: shards beside the output and an index, as save_file shards."""
    _, dirs = saved
    out = tmp_path / "model.zt"
    consolidate(dirs["zt"], out, max_shard_size=2000)
    shards = sorted(p.name for p in tmp_path.glob("model-*.zt"))
    assert len(shards) >= 3 and (tmp_path / "model.zt.index.json").exists() and not out.exists()
    for shard in shards:
        with ztensor.Reader(tmp_path / shard) as r:
            r.verify()
    loaded = load_file(tmp_path / "model.zt.index.json")
    for name, t in global_tensors().items():
        assert torch.equal(loaded[name], t), name


def test_writer_is_picklable_and_checks_arguments(tmp_path):
    import pickle

    w = pickle.loads(pickle.dumps(ZTensorStorageWriter(tmp_path, compression=5, thread_count=2)))
    assert (w.level, w.thread_count, w.checksum) == (5, 2, "crc32c")
    with pytest.raises(ValueError, match="checksum"):
        ZTensorStorageWriter(tmp_path, checksum="md5")
    assert ZTensorStorageReader.validate_checkpoint_id(tmp_path) is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"x": torch.ones(2)}, storage_writer=ZTensorStorageWriter(tmp_path), no_dist=True)
    assert ZTensorStorageReader.validate_checkpoint_id(tmp_path) is True


def test_zt_consolidate_command(saved, tmp_path):
    _, dirs = saved
    out = tmp_path / "one.zt"
    cmd = [sys.executable, "-m", "ztensor._cli", "consolidate"]
    p = subprocess.run([*cmd, dirs["zt"], str(out), "--compress", "3"], capture_output=True, text=True)
    assert p.returncode == 0 and "wrote" in p.stdout, p.stderr
    with ztensor.Reader(out) as r:
        assert r.metadata("model.w_f32").components["data"]["encoding"] == "zstd"
    loaded = load_file(out)
    for name, t in global_tensors().items():
        assert torch.equal(loaded[name], t), name
    p = subprocess.run([*cmd, str(tmp_path), str(tmp_path / "x.zt")], capture_output=True, text=True)
    assert p.returncode == 1 and "no ztensor-dcp.json" in p.stderr and not (tmp_path / "x.zt").exists()


def test_load_file_open_and_safe_open_give_global_tensors(saved, saved4):
    """A DCP folder read as plain full tensors, stitched from row blocks (2
    ranks), from zstd chunks (async_save) and from 2-D blocks (2x2 mesh)."""
    _, dirs = saved
    expected = global_tensors()
    for ck in (dirs["zt"], dirs["async"], saved4[1]):
        loaded = load_file(ck)
        assert list(loaded) == [*expected, "extra.rng"]
        for name, t in expected.items():
            assert loaded[name].dtype == t.dtype and torch.equal(loaded[name], t), (ck, name)
        assert torch.equal(loaded["extra.rng"], non_tensor_state()["rng"])
        with ztensor.open(ck) as r:
            assert r.format == "dcp" and "model.i64" in r and len(r) == 6
            assert r.metadata("model.i32").shape == [6, 4, 10] and r.metadata("model.i32").dtype == "int32"
            assert np.array_equal(r["model.i64"], expected["model.i64"].numpy())
            r.verify()
        with ztensor.safe_open(ck, "pt") as f:
            w = f.get_slice("model.w_f32")
            assert w.get_shape() == [16, 12] and w.get_dtype() == "F32"
            full = expected["model.w_f32"]
            for index in (
                (slice(3, 11), slice(None, None, 2)),
                ([1, 9, 15], 5),
                (Ellipsis, -1),
                (slice(None, None, -3), slice(2, 11)),
                (7,),
            ):
                want = torch.from_numpy(full.numpy()[index].copy())  # NumPy: negative steps too
                assert torch.equal(w[index], want), index
            i32 = expected["model.i32"]
            assert torch.equal(f.get_slice("model.i32")[2:5, 1, 3:9], i32[2:5, 1, 3:9])
            assert torch.equal(f.get_tensor("model.w_bf16"), expected["model.w_bf16"])
            with pytest.raises(IndexError):
                w[16]


def test_flipped_bit_fails_full_tensor_load(saved, tmp_path):
    _, dirs = saved
    ck = copy_of(dirs["zt"], tmp_path)
    path = os.path.join(ck, "__0_0.zt")
    with ztensor.Reader(path) as r:
        offset = r.metadata("model.i64").components["data"]["offset"]
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 1]))
    with pytest.raises(ztensor.ZTensorError, match=r"__0_0\.zt.*model\.i64"):
        load_file(ck)
    with pytest.raises(ztensor.ZTensorError, match=r"__0_0\.zt"):
        ztensor.open(ck).verify()
