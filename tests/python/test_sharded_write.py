"""Writing sharded checkpoints (``max_shard_size=``): Hugging Face's layout
with ``.zt`` shards, checked against ``huggingface_hub.save_torch_state_dict``,
read back through the index and shard by shard, and crash-safe."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import ml_dtypes
import numpy as np
import pytest
import torch
from huggingface_hub import save_torch_state_dict
from huggingface_hub.serialization._base import parse_size_to_int

import ztensor
import ztensor._sharded_save
import ztensor.numpy as ztnp
import ztensor.torch as ztt
from conftest import assert_bits_equal
from ztensor._sharded_save import shard_size_limit


def _bits(t: torch.Tensor) -> np.ndarray:
    """A tensor's bytes, for bit-exact comparison (bfloat16 and NaNs included)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()


def _state_dict(seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(64, 32, generator=g),  # 8192 bytes
        "layers.0.weight": torch.randn(32, 32, generator=g).to(torch.bfloat16),  # 2048
        "layers.0.bias": torch.randn(32, generator=g).to(torch.float16),  # 64
        "layers.1.weight": torch.randint(-128, 127, (48, 32), generator=g, dtype=torch.int8),  # 1536
        "layers.1.mask": torch.rand(40, generator=g) > 0.5,  # 40
        "layers.1.ids": torch.arange(100, dtype=torch.int64),  # 800
        "norm.weight": torch.full((3,), float("nan")),  # 12
        "head.weight": torch.randn(16, 64, generator=g),  # 4096
        "scalar": torch.tensor(2.5, dtype=torch.float64),  # 8
    }


def _files(d) -> list[str]:
    return sorted(os.listdir(d))


def _index(path) -> dict:
    with open(path) as f:
        return json.load(f)


def _check_shards(index_path, expected: dict) -> None:
    """Each shard, opened on its own, holds exactly the tensors the index
    maps to it, bit for bit; no shard holds file metadata."""
    index = _index(index_path)
    by_file: dict[str, list[str]] = {}
    for name, file in index["weight_map"].items():
        by_file.setdefault(file, []).append(name)
    assert sorted(index["weight_map"]) == sorted(expected)
    for file, names in by_file.items():
        shard = ztt.load_file(os.path.join(os.path.dirname(index_path), file))
        assert sorted(shard) == sorted(names), file
        for name in names:
            assert shard[name].dtype == expected[name].dtype
            assert shard[name].shape == expected[name].shape
            assert_bits_equal(_bits(shard[name]), _bits(expected[name]), name)
        with ztensor.Reader(os.path.join(os.path.dirname(index_path), file)) as r:
            assert r.metadata() in (None, {}), file


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("limit", [1, 2048, 5000, 9000, "10KB", "10KiB", 12_000])
def test_torch_round_trip_through_index_and_shards(tmp_path, limit):
    sd = _state_dict()
    path = tmp_path / "model.zt"
    ztt.save_file(sd, path, metadata={"purpose": "test"}, max_shard_size=limit)
    index_path = tmp_path / "model.zt.index.json"
    index = _index(index_path)
    shards = sorted(set(index["weight_map"].values()))
    assert _files(tmp_path) == sorted([*shards, "model.zt.index.json"])
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.zt" for i in range(1, len(shards) + 1)]
    assert index["metadata"] == {"total_size": sum(t.nbytes for t in sd.values()), "purpose": "test"}
    # Every shard is within the limit unless it holds one tensor over it.
    limit_bytes = shard_size_limit(limit)
    for file in shards:
        names = [n for n, f in index["weight_map"].items() if f == file]
        size = sum(sd[n].nbytes for n in names)
        assert size <= limit_bytes or (len(names) == 1 and size > limit_bytes), (file, names)
    _check_shards(index_path, sd)
    for where in (index_path, tmp_path):  # the index, or its folder
        for copy in (False, True):
            back = ztt.load_file(where, copy=copy)
            assert list(back) == list(sd) or sorted(back) == sorted(sd)
            for name, t in sd.items():
                assert back[name].dtype == t.dtype and back[name].shape == t.shape
                assert_bits_equal(_bits(back[name]), _bits(t), name)
    with ztensor.Reader(index_path) as r:
        assert r.metadata()["purpose"] == "test"


@pytest.mark.parametrize("limit", [1, 700, "1KB", "3KiB", 1 << 20])
def test_numpy_round_trip(tmp_path, limit):
    rng = np.random.default_rng(3)
    arrays = {
        "a": rng.standard_normal((20, 10)).astype(np.float32),  # 800
        "b": np.arange(60, dtype=np.int64),  # 480
        "c": rng.standard_normal(100).astype(ml_dtypes.bfloat16),  # 200
        "d": np.array([[True, False]]),  # 2
        "e": (np.arange(30) + 1j).astype(np.complex64),  # 240
        "f": np.zeros((0, 4), np.float32),  # 0
    }
    path = tmp_path / "weights.zt"
    ztnp.save_file(arrays, path, max_shard_size=limit)
    total = sum(a.nbytes for a in arrays.values())
    if shard_size_limit(limit) >= total:
        assert _files(tmp_path) == ["weights.zt"]
        where = path
    else:
        index = _index(tmp_path / "weights.zt.index.json")
        assert index["metadata"] == {"total_size": total}
        for file in set(index["weight_map"].values()):
            names = [n for n, f in index["weight_map"].items() if f == file]
            shard = ztnp.load_file(tmp_path / file)
            assert sorted(shard) == sorted(names)
            for n in names:
                assert_bits_equal(shard[n], arrays[n], n)
        where = tmp_path / "weights.zt.index.json"
    back = ztnp.load_file(where)
    assert sorted(back) == sorted(arrays)
    for n, a in arrays.items():
        assert_bits_equal(back[n], a, n)


def test_compressed_shards_round_trip(tmp_path):
    sd = {f"w{i}": torch.zeros(1000) + i for i in range(6)}
    ztt.save_file(sd, tmp_path / "m.zt", compression=True, max_shard_size=8000)
    index = _index(tmp_path / "m.zt.index.json")
    assert len(set(index["weight_map"].values())) == 3  # the limit counts tensor bytes, not stored ones
    with ztensor.Reader(tmp_path / "m-00001-of-00003.zt") as r:
        assert r.metadata("w0").components["data"]["encoding"] == "zstd"
    back = ztt.load_file(tmp_path / "m.zt.index.json")
    assert all(torch.equal(back[k], v) for k, v in sd.items())


# ---------------------------------------------------------------- Hugging Face


@pytest.mark.parametrize("limit", [1, 3000, 5000, 8192, 9000, "10KB", 100_000])
def test_index_matches_huggingface_save_torch_state_dict(tmp_path, limit):
    """Same grouping, shard names (up to the extension), total_size and
    metadata as huggingface_hub for the same state dict and limit."""
    sd = _state_dict()
    hf_dir, zt_dir = tmp_path / "hf", tmp_path / "zt"
    hf_dir.mkdir()
    zt_dir.mkdir()
    save_torch_state_dict(dict(sd), hf_dir, max_shard_size=limit, metadata={"k": "v"})
    ztt.save_file(sd, zt_dir / "model.zt", metadata={"k": "v"}, max_shard_size=limit)
    hf_files = [f.replace(".safetensors", ".zt") for f in _files(hf_dir)]
    assert _files(zt_dir) == hf_files
    if "model.safetensors.index.json" not in _files(hf_dir):
        assert _files(zt_dir) == ["model.zt"]
        assert ztensor.Reader(zt_dir / "model.zt").metadata() == {"k": "v"}
        return
    hf = _index(hf_dir / "model.safetensors.index.json")
    ours = _index(zt_dir / "model.zt.index.json")
    assert ours["metadata"] == hf["metadata"]
    assert ours["metadata"]["total_size"] == hf["metadata"]["total_size"]
    assert ours["weight_map"] == {k: v.replace(".safetensors", ".zt") for k, v in hf["weight_map"].items()}


def test_tensor_over_the_limit_gets_a_shard_of_its_own(tmp_path):
    sd = {"a": torch.ones(10), "big": torch.ones(1000), "b": torch.ones(10), "c": torch.ones(240)}
    ztt.save_file(sd, tmp_path / "m.zt", max_shard_size=1000)
    wm = _index(tmp_path / "m.zt.index.json")["weight_map"]
    # As in huggingface_hub: the big tensor's shard is numbered where it is
    # met; the shard being filled continues after it.
    assert wm == {
        "big": "m-00001-of-00003.zt",
        "a": "m-00002-of-00003.zt",
        "b": "m-00002-of-00003.zt",
        "c": "m-00003-of-00003.zt",
    }
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    save_torch_state_dict(sd, hf_dir, max_shard_size=1000)
    hf = _index(hf_dir / "model.safetensors.index.json")["weight_map"]
    assert {k: v.replace("model", "m").replace(".safetensors", ".zt") for k, v in hf.items()} == wm


def test_tied_weights_across_shards_round_trip_with_load_model(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(64, 32)
            self.layers = torch.nn.Sequential(*[torch.nn.Linear(32, 32) for _ in range(4)])
            self.lm_head = torch.nn.Linear(32, 64, bias=False)
            self.lm_head.weight = self.embed.weight

    torch.manual_seed(0)
    model = Tied()
    path = tmp_path / "model.zt"
    ztt.save_model(model, path, metadata={"arch": "tied"}, max_shard_size=6000)
    index = _index(tmp_path / "model.zt.index.json")
    shards = set(index["weight_map"].values())
    assert len(shards) >= 3
    # Stored once, under the kept name; the dropped name recorded as in safetensors.
    assert "lm_head.weight" not in index["weight_map"]
    assert index["weight_map"]["embed.weight"] == f"model-00001-of-{len(shards):05d}.zt"
    assert index["metadata"]["lm_head.weight"] == "embed.weight"
    assert index["metadata"]["arch"] == "tied"
    # The same index huggingface_hub writes for the state dict.
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    save_torch_state_dict(model.state_dict(), hf_dir, max_shard_size=6000, metadata={"arch": "tied"})
    hf = _index(hf_dir / "model.safetensors.index.json")
    assert index["metadata"] == hf["metadata"]
    assert index["weight_map"] == {k: v.replace(".safetensors", ".zt") for k, v in hf["weight_map"].items()}

    torch.manual_seed(1)
    fresh = Tied()
    missing, unexpected = ztt.load_model(fresh, tmp_path / "model.zt.index.json")
    assert (sorted(missing), sorted(unexpected)) == ([], [])
    assert fresh.lm_head.weight is fresh.embed.weight
    for name, t in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], t), name
    # Loading through the folder works the same.
    fresh = Tied()
    ztt.load_model(fresh, tmp_path)
    assert torch.equal(fresh.lm_head.weight, model.embed.weight)


def test_shared_tensors_are_refused_across_shards(tmp_path):
    base = torch.zeros(100)
    sd = {"a": base, "pad": torch.ones(1000), "b": base}
    with pytest.raises(RuntimeError, match="Some tensors share memory"):
        ztt.save_file(sd, tmp_path / "m.zt", max_shard_size=500)
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize("text", ["5GB", "1.5MB", "0.5KB", " 7 mb ", "2TB", "10kb", "1.0001KB", "3.14159GB"])
def test_decimal_sizes_agree_with_huggingface(text):
    assert shard_size_limit(text) == parse_size_to_int(text)


@pytest.mark.parametrize(
    ("size", "expected"),
    [("5GiB", 5 << 30), ("512MiB", 512 << 20), ("1kib", 1024), ("1TiB", 1 << 40), ("100", 100), (7, 7)],
)
def test_binary_sizes_and_bytes(size, expected):
    assert shard_size_limit(size) == expected


@pytest.mark.parametrize(
    ("size", "exc", "match"),
    [
        ("5XB", ValueError, "unknown unit"),
        ("-1GB", ValueError, "not a number"),
        ("GB", ValueError, "not a number"),
        ("1e3MB", ValueError, "unknown unit"),
        ("0MB", ValueError, "at least 1 byte"),
        (0, ValueError, "positive number of bytes"),
        (-5, ValueError, "positive number of bytes"),
        (1 << 70, ValueError, "positive number of bytes"),
        (True, TypeError, "must be an int"),
        (1.5, TypeError, "must be an int"),
        (None, TypeError, "must be an int"),
    ],
)
def test_bad_sizes_are_refused_before_writing(tmp_path, size, exc, match):
    if size is not None:
        with pytest.raises(exc, match=match):
            ztt.save_file({"a": torch.ones(4)}, tmp_path / "m.zt", max_shard_size=size)
        with pytest.raises(exc, match=match):
            ztnp.save_file({"a": np.ones(4)}, tmp_path / "m.zt", max_shard_size=size)
        assert _files(tmp_path) == []
    with pytest.raises(exc, match=match):
        shard_size_limit(size)


# ---------------------------------------------------------------- replacing


def test_one_shard_writes_the_plain_file_and_no_index(tmp_path):
    sd = _state_dict()
    ztt.save_file(sd, tmp_path / "plain.zt", metadata={"a": "b"})
    ztt.save_file(sd, tmp_path / "model.zt", metadata={"a": "b"}, max_shard_size="1GB")
    assert _files(tmp_path) == ["model.zt", "plain.zt"]
    assert (tmp_path / "model.zt").read_bytes() == (tmp_path / "plain.zt").read_bytes()
    total = sum(t.nbytes for t in sd.values())
    ztt.save_file(sd, tmp_path / "exact.zt", max_shard_size=total)  # exactly at the limit: one shard
    assert "exact.zt.index.json" not in _files(tmp_path)


def test_stale_shards_and_files_are_removed(tmp_path):
    sd = {f"w{i}": torch.full((250,), float(i)) for i in range(8)}  # 1000 bytes each
    keep = ["model-00001-of-00002.safetensors", "other-00001-of-00002.zt", "model-00001-of-00002.zt.bak"]
    for name in keep:
        (tmp_path / name).write_bytes(b"not ours")
    path = tmp_path / "model.zt"
    ztt.save_file(sd, path)  # a plain file first
    ztt.save_file(sd, path, max_shard_size=2000)
    four = [f"model-0000{i}-of-00004.zt" for i in range(1, 5)]
    assert _files(tmp_path) == sorted([*keep, *four, "model.zt.index.json"]), "the plain file is replaced"
    ztt.save_file(sd, path, max_shard_size=2000)  # same names again (staged, then linked)
    assert _files(tmp_path) == sorted([*keep, *four, "model.zt.index.json"])
    ztt.save_file(sd, path, max_shard_size=4000)
    two = ["model-00001-of-00002.zt", "model-00002-of-00002.zt"]
    assert _files(tmp_path) == sorted([*keep, *two, "model.zt.index.json"])
    assert set(_index(tmp_path / "model.zt.index.json")["weight_map"].values()) == set(two)
    back = ztt.load_file(tmp_path)
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    ztt.save_file(sd, path, max_shard_size="1MB")
    assert _files(tmp_path) == sorted([*keep, "model.zt"])
    for name in keep:
        assert (tmp_path / name).read_bytes() == b"not ours"


def test_resaving_same_shard_names_keeps_old_shards_until_the_index(tmp_path):
    """With as many shards as before, new shards are staged under other
    names: the old shards stay as they were until the new index is written."""
    old = {f"w{i}": torch.full((250,), 1.0) for i in range(4)}
    ztt.save_file(old, tmp_path / "m.zt", max_shard_size=2000)
    first = (tmp_path / "m-00001-of-00002.zt").read_bytes()
    seen = []
    real = ztt._write

    def spy(w, tensors, compression):
        seen.append(sorted(os.listdir(tmp_path)))
        assert (tmp_path / "m-00001-of-00002.zt").read_bytes() == first
        real(w, tensors, compression)

    ztt._write = spy
    threads = ztensor._sharded_save._MAX_THREADS
    ztensor._sharded_save._MAX_THREADS = 1  # one shard after the other: the second sees the first written
    try:
        ztt.save_file({k: v * 2 for k, v in old.items()}, tmp_path / "m.zt", max_shard_size=2000)
    finally:
        ztt._write = real
        ztensor._sharded_save._MAX_THREADS = threads
    assert len(seen) == 2
    back = ztt.load_file(tmp_path / "m.zt.index.json")
    assert all(torch.equal(back[k], v * 2) for k, v in old.items())
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".staged")]


def test_failed_save_leaves_the_old_checkpoint(tmp_path):
    good = {"a": np.ones(300, np.float32), "b": np.ones(300, np.float32)}
    ztnp.save_file(good, tmp_path / "m.zt", max_shard_size=1500)
    before = {n: (tmp_path / n).read_bytes() for n in _files(tmp_path)}
    bad = {"a": np.ones(300, np.float32), "b": np.ones(300, np.float32), "c": np.array([object()])}
    with pytest.raises((TypeError, ValueError)):
        ztnp.save_file(bad, tmp_path / "m.zt", max_shard_size=1500)
    assert {n: (tmp_path / n).read_bytes() for n in _files(tmp_path)} == before
    # A fresh target: nothing is left behind.
    with pytest.raises((TypeError, ValueError)):
        ztnp.save_file(bad, tmp_path / "new.zt", max_shard_size=1500)
    assert _files(tmp_path) == sorted(before)


@pytest.mark.parametrize(
    ("metadata", "exc", "match"),
    [
        ({"total_size": "1"}, ValueError, "'total_size' is reserved"),
        ({"x": {1, 2}}, TypeError, "JSON-serializable"),
        ({1: "x"}, TypeError, "keys must be str"),
    ],
)
def test_bad_metadata_is_refused_before_writing(tmp_path, metadata, exc, match):
    with pytest.raises(exc, match=match):
        tensors = {"a": torch.ones(100), "b": torch.ones(100)}
        ztt.save_file(tensors, tmp_path / "m.zt", metadata, max_shard_size=400)
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- crash safety

CHILD = r"""
import sys, numpy as np
from ztensor.numpy import save_file
path = sys.argv[1]
variants = [
    ({f"t{i}": np.full((256, 1024), v, np.float32) for i in range(n)}, limit)
    for v, n, limit in ((1, 4, 2 << 20), (2, 6, 3 << 20), (3, 6, 3 << 20))
]
k = 0
while True:
    tensors, limit = variants[k % 3]
    save_file(tensors, path, max_shard_size=limit)
    k += 1
"""


def _state(folder) -> str:
    """Which complete checkpoint the folder holds: 'v0'..'v3' or a problem."""
    index = [n for n in os.listdir(folder) if n.endswith(".index.json")]
    assert index == ["model.zt.index.json"], index
    for file in set(_index(folder / index[0])["weight_map"].values()):
        with ztensor.Reader(folder / file) as r:
            r.verify()
    t = ztnp.load_file(folder)
    values = {float(a.reshape(-1)[0]) for a in t.values()}
    if len(values) != 1 or not all(np.all(a == next(iter(values))) for a in t.values()):
        return f"mixed content {sorted(values)}"
    v = int(values.pop())
    expected = {0: 2, 1: 4, 2: 6, 3: 6}[v]
    if sorted(t) != sorted(f"t{i}" for i in range(expected)):
        return f"v{v} with tensors {sorted(t)}"
    return f"v{v}"


def test_sigkill_during_sharded_save_leaves_a_complete_checkpoint(tmp_path):
    path = tmp_path / "model.zt"
    old = {f"t{i}": np.zeros((256, 1024), np.float32) for i in range(2)}
    ztnp.save_file(old, path, max_shard_size=1 << 20)
    rng = random.Random(13)
    seen: dict[str, int] = {}
    for i in range(30):
        if i % 10 == 0:
            ztnp.save_file(old, path, max_shard_size=1 << 20)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)])
        time.sleep(0.3 + rng.random() * 0.5)
        child.send_signal(signal.SIGKILL)
        child.wait()
        state = _state(tmp_path)
        assert state in ("v0", "v1", "v2", "v3"), state
        seen[state] = seen.get(state, 0) + 1
    assert set(seen) - {"v0"}, seen
    # The next complete save leaves no staged files nor shards it does not name.
    ztnp.save_file(old, path, max_shard_size=1 << 20)
    names = set(_index(tmp_path / "model.zt.index.json")["weight_map"].values())
    visible = {n for n in os.listdir(tmp_path) if not n.startswith(".")}
    assert visible == names | {"model.zt.index.json"}
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".staged")]


# ---------------------------------------------------------------- zt convert --max-shard-size


def _zt(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ztensor._cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_cli_converts_a_huggingface_checkpoint_to_zt_shards(tmp_path):
    from safetensors.torch import load_file as st_load

    sd = _state_dict()
    hf = tmp_path / "hf"
    hf.mkdir()
    save_torch_state_dict(dict(sd), hf, max_shard_size=5000, metadata={"k": "v"})
    out = tmp_path / "out"
    out.mkdir()
    r = _zt("convert", hf / "model.safetensors.index.json", out / "model.zt", "--max-shard-size", "9KB")
    assert r.returncode == 0, r.stderr
    index = _index(out / "model.zt.index.json")
    assert index["metadata"] == {"total_size": sum(t.nbytes for t in sd.values()), "k": "v"}
    # The grouping save_file gives the tensors in the order the shards hold them.
    order = [n for f in sorted(set(_index(hf / "model.safetensors.index.json")["weight_map"].values()))
             for n in ztensor.Reader(hf / f)._names_in_file_order()]  # fmt: skip
    ours = tmp_path / "ours"
    ours.mkdir()
    ztt.save_file({n: sd[n] for n in order}, ours / "model.zt", metadata={"k": "v"}, max_shard_size="9KB")
    assert index == _index(ours / "model.zt.index.json")
    expected = {}
    for f in set(_index(hf / "model.safetensors.index.json")["weight_map"].values()):
        expected.update(st_load(hf / f))
    _check_shards(out / "model.zt.index.json", expected)
    # The folder works as input too, and one shard's worth writes one file.
    r = _zt("convert", hf, tmp_path / "one.zt", "--max-shard-size", "1GB")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "one.zt.index.json").exists()
    back = ztt.load_file(tmp_path / "one.zt")
    assert sorted(back) == sorted(expected)
    assert all(
        torch.equal(back[n].view(torch.uint8), expected[n].view(torch.uint8)) for n in back if back[n].dim()
    )
    assert ztensor.Reader(tmp_path / "one.zt").metadata() == {"k": "v"}


def test_cli_splits_a_single_file(tmp_path):
    arrays = {f"t{i}": np.full((100, 10), i, np.float32) for i in range(7)}  # 4000 bytes each
    ztnp.save_file(arrays, tmp_path / "big.zt", metadata={"m": 1})
    r = _zt("convert", tmp_path / "big.zt", tmp_path / "split.zt", "--max-shard-size", "10000", "--compress")
    assert r.returncode == 0, r.stderr
    index = _index(tmp_path / "split.zt.index.json")
    assert index["metadata"] == {"total_size": 28000, "m": 1}
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"split-0000{i}-of-00004.zt" for i in range(1, 5)]
    assert [sorted(n for n, f in index["weight_map"].items() if f == file) for file in files] == [
        ["t0", "t1"],
        ["t2", "t3"],
        ["t4", "t5"],
        ["t6"],
    ]
    back = ztnp.load_file(tmp_path / "split.zt.index.json")
    for n, a in arrays.items():
        assert_bits_equal(back[n], a, n)
    with ztensor.Reader(tmp_path / files[0]) as s:
        assert s.metadata("t0").components["data"]["encoding"] == "zstd"
    # Converting again with a larger limit replaces the shards.
    r = _zt("convert", tmp_path / "split.zt.index.json", tmp_path / "split.zt", "--max-shard-size", "20KB")
    assert r.returncode == 0, r.stderr
    assert sorted(n for n in _files(tmp_path) if n.startswith("split")) == [
        "split-00001-of-00002.zt",
        "split-00002-of-00002.zt",
        "split.zt.index.json",
    ]
    assert ztnp.load_file(tmp_path).keys() == arrays.keys()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-shard-size", "5XB"], 'invalid shard size "5XB": unknown unit'),
        (["--max-shard-size", "0"], "at least 1 byte"),
        (["--max-shard-size=-1GB"], "not a number"),
    ],
)
def test_cli_refuses_bad_shard_sizes(tmp_path, args, message):
    ztnp.save_file({"a": np.ones(4)}, tmp_path / "a.zt")
    r = _zt("convert", tmp_path / "a.zt", tmp_path / "b.zt", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert _files(tmp_path) == ["a.zt"]


def test_cli_shards_are_zt_only(tmp_path):
    ztnp.save_file({"a": np.ones(4)}, tmp_path / "a.zt")
    r = _zt("convert", tmp_path / "a.zt", tmp_path / "b.safetensors", "--max-shard-size", "1KB")
    assert r.returncode == 2 and "--max-shard-size applies to .zt output only" in r.stderr
    ztnp.save_file({"a": np.ones(400), "b": np.ones(400)}, tmp_path / "s.zt", max_shard_size=4000)
    r = _zt("convert", tmp_path / "s.zt.index.json", tmp_path / "b.safetensors")
    assert r.returncode == 2 and "is a sharded checkpoint" in r.stderr


MEMORY_CHILD = r"""
import sys
from ztensor._ztensor import cli_main

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS mark
base = peak()
rc = cli_main(["zt", "convert", *sys.argv[1:], "--quiet"])
print(rc, peak() - base)
"""


@pytest.mark.parametrize("limit", ["40MB", "1GB"])
def test_cli_convert_of_a_sharded_checkpoint_is_bounded_by_the_largest_tensor(tmp_path, limit):
    """Converting 128 MiB in 4 shards, to shards or one file, grows the
    resident set by about one tensor (16 MiB), not by the checkpoint."""
    largest = 16 << 20
    sd = {f"t{i}": torch.full((largest // 4,), float(i)) for i in range(8)}
    hf = tmp_path / "hf"
    hf.mkdir()
    save_torch_state_dict(sd, hf, max_shard_size=40 << 20)
    del sd
    out = tmp_path / "out.zt"
    r = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(hf), str(out), "--max-shard-size", limit],
        capture_output=True,
        text=True,
        timeout=300,
    )
    rc, growth = map(int, r.stdout.split())
    assert rc == 0, r.stderr
    assert growth < 2 * largest + (16 << 20), f"peak RSS grew by {growth / 2**20:.0f} MiB"
    back = ztt.load_file(out if limit == "1GB" else tmp_path / "out.zt.index.json")
    assert sorted(back) == [f"t{i}" for i in range(8)]
    assert all(float(back[f"t{i}"][-1]) == i for i in range(8))


def test_a_folder_is_not_a_target(tmp_path):
    sd = {"a": torch.ones(100), "b": torch.ones(100)}
    (tmp_path / "sub").mkdir()
    for target in (tmp_path / "sub", str(tmp_path / "new") + "/"):
        with pytest.raises(IsADirectoryError, match="a folder, not a file name"):
            ztt.save_file(sd, target, max_shard_size=400)
    assert _files(tmp_path) == ["sub"] and _files(tmp_path / "sub") == []
