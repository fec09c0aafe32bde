"""Reading sharded checkpoints: an index file (``*.safetensors.index.json``,
``pytorch_model.bin.index.json``, ``model.zt.index.json``) or the directory
holding it, through every front end.

Checkpoints are made here by their own tools (``huggingface_hub``'s
``save_torch_state_dict``, ``torch.save`` shards with a hand-made index)
and read back bit for bit against ``safetensors`` and ``torch.load``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from huggingface_hub import save_torch_state_dict

import ztensor
import ztensor.numpy as ztnp
import ztensor.torch as ztt
from ztensor import ZTensorError

INDEX = "model.safetensors.index.json"


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (NaNs and -0.0 included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(
        a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)
    )


def state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {f"model.layers.{i}.weight": torch.randn(32, 48, generator=g) for i in range(6)}
    sd["model.embed.weight"] = torch.randn(100, 16, generator=g).to(torch.bfloat16)
    sd["model.norm.weight"] = torch.randn(48, generator=g).to(torch.float16)
    sd["ids"] = torch.arange(-5, 20, dtype=torch.int64)
    sd["mask"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(float("nan"))
    sd["empty"] = torch.zeros(0, 3)
    return sd


@pytest.fixture
def hf(tmp_path) -> tuple[Path, dict]:
    """A safetensors checkpoint in several shards, by huggingface_hub."""
    sd = state()
    save_torch_state_dict(sd, tmp_path, max_shard_size=8000)
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) >= 3
    return tmp_path, sd


def reference(directory: Path) -> dict:
    """What transformers does: each shard by safetensors, one after another."""
    index = json.loads((directory / INDEX).read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        out.update(safetensors.torch.load_file(directory / shard))
    return out


# ---------------------------------------------------------------------------
# reading, bit for bit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("copy", [False, True])
@pytest.mark.parametrize("backend", ["mmap", "pread"])
@pytest.mark.parametrize("via", ["index", "dir"])
def test_torch_load_file_matches_safetensors(hf, copy, backend, via):
    directory, sd = hf
    path = directory / INDEX if via == "index" else directory
    got = ztt.load_file(path, copy=copy, backend=backend)
    ref = reference(directory)
    assert set(got) == set(ref) == set(sd)
    for name, t in ref.items():
        assert same_bits(got[name], t), name
        assert same_bits(got[name], sd[name]), name


def test_numpy_load_file_matches_safetensors(hf):
    directory, sd = hf
    for copy in (False, True):
        got = ztnp.load_file(directory, copy=copy)
        assert set(got) == set(sd)
        for name, t in sd.items():
            a = got[name]
            if t.dtype == torch.bfloat16:
                assert a.dtype == ml_dtypes.bfloat16
            assert a.shape == tuple(t.shape)
            assert a.tobytes() == t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes(), name


def test_arrays_are_writable_and_private(hf):
    directory, sd = hf
    a = ztnp.load_file(directory)["ids"]
    a[0] = 99
    assert ztnp.load_file(directory)["ids"][0] == -5


def test_reader_lists_names_from_the_index_without_opening_shards(hf):
    directory, sd = hf
    with ztensor.Reader(directory) as r:
        index = json.loads((directory / INDEX).read_text())
        # Remove every shard: listing still works, reading names the missing file.
        shards = sorted(set(index["weight_map"].values()))
        for s in shards:
            os.rename(directory / s, directory / (s + ".away"))
        assert r.keys() == sorted(sd)
        assert len(r) == len(sd)
        assert "ids" in r and "nope" not in r and 3 not in r
        assert r.format == "sharded"
        assert r.metadata() == index["metadata"]
        assert r.metadata()["total_size"] == index["metadata"]["total_size"]
        shard_of_ids = index["weight_map"]["ids"]
        with pytest.raises(FileNotFoundError) as e:
            r["ids"]
        assert shard_of_ids in str(e.value)
        # Put one shard back: its tensors read, the others still fail.
        os.rename(directory / (shard_of_ids + ".away"), directory / shard_of_ids)
        assert same_bits(torch.from_numpy(r["ids"]), sd["ids"])
        other = next(n for n, f in index["weight_map"].items() if f != shard_of_ids)
        with pytest.raises(FileNotFoundError):
            r.read_tensor(other)
    assert "closed" in repr(r)


def test_reader_reads_and_describes(hf):
    directory, sd = hf
    r = ztensor.open(directory / INDEX)
    meta = r.metadata("model.embed.weight")
    assert (meta.shape, meta.dtype) == ([100, 16], "bfloat16")
    many = r.read_tensors(["scalar", "model.layers.3.weight"], copy=True)
    assert list(many) == ["scalar", "model.layers.3.weight"]
    assert same_bits(torch.from_numpy(many["model.layers.3.weight"]), sd["model.layers.3.weight"])
    torch_all = r.load_torch()
    assert all(same_bits(torch_all[n], sd[n]) for n in sd)
    r.verify()
    with pytest.raises(KeyError):
        r["missing"]
    r.close()
    with pytest.raises(ValueError):
        r.keys()


def test_safe_open_and_slices_match_safetensors(hf):
    directory, sd = hf
    index = json.loads((directory / INDEX).read_text())
    name = "model.layers.4.weight"
    with safetensors.safe_open(directory / index["weight_map"][name], "pt") as ref:
        want = ref.get_slice(name)[3:9, ::5]
    for fw in ("pt", "np"):
        with ztensor.safe_open(directory, fw) as f:
            assert f.keys() == sorted(sd)
            assert f.metadata() == index["metadata"]
            assert set(f.offset_keys()) == set(sd)
            s = f.get_slice(name)
            assert s.get_shape() == [32, 48] and s.get_dtype() == "F32"
            got = s[3:9, ::5]
            got = got if fw == "pt" else torch.from_numpy(got)
            assert same_bits(got, want)
            whole = f.get_tensor("model.norm.weight")
            whole = whole if fw == "pt" else torch.from_numpy(whole.view(np.uint16)).view(torch.float16)
            assert same_bits(whole, sd["model.norm.weight"])
    with ztensor.safe_open(directory, "pt") as f:
        got = f.get_tensors()
    assert all(same_bits(got[n], sd[n]) for n in sd)


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(64, 32)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(32, 32) for _ in range(4))
        self.head = torch.nn.Linear(32, 64, bias=False)
        self.head.weight = self.embed.weight


def test_load_model_with_tied_weights(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    save_torch_state_dict(model.state_dict(), tmp_path, max_shard_size=6000)
    index = json.loads((tmp_path / INDEX).read_text())
    assert len(set(index["weight_map"].values())) >= 2
    fresh = Tied()
    missing, unexpected = ztt.load_model(fresh, tmp_path)
    assert not missing and not unexpected
    assert fresh.head.weight is fresh.embed.weight
    for (n, p), (_, q) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert same_bits(p, q), n


def test_pytorch_bin_shards(tmp_path):
    """transformers' older layout: torch.save shards and pytorch_model.bin.index.json."""
    sd = state(1)
    names = list(sd)
    shards = {"pytorch_model-00001-of-00002.bin": names[:5], "pytorch_model-00002-of-00002.bin": names[5:]}
    weight_map = {}
    for file, part in shards.items():
        torch.save({n: sd[n] for n in part}, tmp_path / file)
        weight_map.update(dict.fromkeys(part, file))
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}, indent=2)
    )
    ref = {}
    for file in shards:
        ref.update(torch.load(tmp_path / file, weights_only=True))
    for path in (tmp_path, tmp_path / "pytorch_model.bin.index.json"):
        for copy in (False, True):
            got = ztt.load_file(path, copy=copy)
            assert set(got) == set(ref)
            assert all(same_bits(got[n], ref[n]) for n in ref)
    with ztensor.Reader(tmp_path, strict=True) as r:
        assert r.keys() == sorted(sd)


def test_zt_shards(tmp_path):
    arrays = {f"w{i}": np.arange(i * 10, dtype=np.float32) for i in range(1, 5)}
    weight_map = {}
    for k, names in enumerate((["w1", "w2"], ["w3", "w4"])):
        file = f"model-{k + 1:05d}-of-00002.zt"
        ztnp.save_file({n: arrays[n] for n in names}, tmp_path / file, compression=k == 1)
        weight_map.update(dict.fromkeys(names, file))
    (tmp_path / "model.zt.index.json").write_text(
        json.dumps({"metadata": {"total_size": 400, "note": "x"}, "weight_map": weight_map})
    )
    got = ztnp.load_file(tmp_path / "model.zt.index.json")
    assert list(got) == ["w1", "w2", "w3", "w4"]
    for n, a in arrays.items():
        np.testing.assert_array_equal(got[n], a)
    assert ztensor.Reader(tmp_path).metadata() == {"total_size": 400, "note": "x"}


def test_skipped_pickle_globals_warn_when_the_shard_opens(tmp_path):
    import argparse

    torch.save({"w": torch.ones(2), "args": argparse.Namespace(lr=1)}, tmp_path / "a.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"w": "a.bin"}}))
    r = ztensor.Reader(tmp_path)
    with pytest.warns(UserWarning, match=r"a\.bin: skipped .*argparse\.Namespace"):
        r["w"]
    with pytest.raises(ZTensorError, match="argparse.Namespace"):
        ztensor.Reader(tmp_path, strict=True)["w"]


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def write_index(directory: Path, weight_map, name: str = INDEX, metadata=None) -> Path:
    doc = {"metadata": metadata or {"total_size": 0}, "weight_map": weight_map}
    path = directory / name
    path.write_text(json.dumps(doc))
    return path


def shard(path: Path, **tensors) -> None:
    safetensors.torch.save_file({n: torch.tensor(v) for n, v in tensors.items()}, path)


def test_a_name_missing_from_its_shard(tmp_path):
    shard(tmp_path / "s1.safetensors", a=[1.0])
    write_index(tmp_path, {"a": "s1.safetensors", "b": "s1.safetensors"})
    r = ztensor.Reader(tmp_path)
    assert r["a"].tolist() == [1.0]
    with pytest.raises(ZTensorError, match=r"s1\.safetensors: tensor 'b': the index .* does not hold it"):
        r["b"]
    with pytest.raises(ZTensorError, match="tensor 'b'"):
        ztt.load_file(tmp_path)
    with pytest.raises(ZTensorError, match="tensor 'b'"):
        r.verify()


def test_two_shards_holding_one_name(tmp_path):
    shard(tmp_path / "s1.safetensors", a=[1.0])
    shard(tmp_path / "s2.safetensors", a=[2.0], b=[3.0])
    write_index(tmp_path, {"a": "s1.safetensors", "b": "s2.safetensors"})
    with pytest.raises(
        ZTensorError, match=r"s2\.safetensors: tensor 'a': also held by shard 's1\.safetensors'"
    ):
        ztt.load_file(tmp_path)


def test_names_a_shard_holds_beyond_the_index_are_ignored(tmp_path):
    shard(tmp_path / "s1.safetensors", a=[1.0], extra=[2.0])
    write_index(tmp_path, {"a": "s1.safetensors"})
    assert list(ztt.load_file(tmp_path)) == ["a"]


@pytest.mark.parametrize(
    "bad", ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors", ""]
)
def test_shard_paths_leaving_the_directory_are_refused(tmp_path, bad):
    (tmp_path / "ckpt").mkdir()
    shard(tmp_path / "outside.safetensors", a=[1.0])
    write_index(tmp_path / "ckpt", {"a": bad})
    with pytest.raises(ZTensorError, match=r"leaves the index's directory"):
        ztensor.Reader(tmp_path / "ckpt")


def test_symlinks_out_of_the_directory_are_refused(tmp_path):
    (tmp_path / "ckpt").mkdir()
    shard(tmp_path / "outside.safetensors", a=[1.0])
    os.symlink(tmp_path / "outside.safetensors", tmp_path / "ckpt" / "s1.safetensors")
    write_index(tmp_path / "ckpt", {"a": "s1.safetensors"})
    with pytest.raises(ZTensorError, match="outside the directory of the index"):
        ztnp.load_file(tmp_path / "ckpt")
    # A link that stays inside is fine.
    shard(tmp_path / "ckpt" / "real.safetensors", a=[1.0])
    os.remove(tmp_path / "ckpt" / "s1.safetensors")
    os.symlink("real.safetensors", tmp_path / "ckpt" / "s1.safetensors")
    assert ztnp.load_file(tmp_path / "ckpt")["a"].tolist() == [1.0]


def test_hub_cache_snapshot_links_into_blobs(tmp_path):
    """huggingface_hub's cache: snapshots/<rev>/ files link to ../../blobs/<hash>."""
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "0123abc"
    blobs.mkdir()
    snap.mkdir(parents=True)
    shard(blobs / "9f86d08", a=[4.0])
    os.symlink("../../blobs/9f86d08", snap / "model-00001-of-00001.safetensors")
    write_index(blobs, {"a": "model-00001-of-00001.safetensors"}, name="e3b0c44")
    os.symlink("../../blobs/e3b0c44", snap / INDEX)
    assert ztnp.load_file(snap)["a"].tolist() == [4.0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not a valid sharded checkpoint index"),
        ('{"metadata": {"total_size": 1}}', "missing field `weight_map`"),
        ('{"weight_map": {"a": 3}}', "invalid type"),
        ('{"weight_map": {"a": "s.safetensors", "a": "t.safetensors"}}', "tensor 'a' is listed twice"),
        ('[{}, {"a": "s.safetensors"}]', "expected a JSON object"),
    ],
)
def test_malformed_index(tmp_path, text, message):
    (tmp_path / INDEX).write_text(text)
    with pytest.raises(ZTensorError, match=message) as e:
        ztensor.Reader(tmp_path / INDEX)
    assert INDEX in str(e.value)


def test_directory_with_several_or_no_index(tmp_path):
    with pytest.raises(IsADirectoryError, match="without a sharded checkpoint index"):
        ztensor.Reader(tmp_path)
    write_index(tmp_path, {})
    assert len(ztensor.Reader(tmp_path)) == 0
    write_index(tmp_path, {}, name="pytorch_model.bin.index.json")
    with pytest.raises(ZTensorError) as e:
        ztt.load_file(tmp_path)
    assert "2 checkpoint indexes (model.safetensors.index.json, pytorch_model.bin.index.json)" in str(e.value)
    with pytest.raises(FileNotFoundError):
        ztensor.Reader(tmp_path / "missing.index.json")


# ---------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------


def zt(*args) -> subprocess.CompletedProcess:
    from test_cli import run, script_cmd

    return run(script_cmd(), *args)


@pytest.mark.parametrize("via", ["index", "dir"])
def test_cli_info_verify_diff(hf, tmp_path, via):
    directory, sd = hf
    path = directory / INDEX if via == "index" else directory
    index = json.loads((directory / INDEX).read_text())
    shards = sorted(set(index["weight_map"].values()))

    r = zt("info", path)
    assert r.returncode == 0, r.stderr
    assert f"index:     {directory / INDEX}" in r.stdout
    assert f"format:    sharded ({len(shards)} shards)" in r.stdout
    assert f"tensors:   {len(sd)}" in r.stdout
    for s in shards:
        assert f"file:      {directory / s}" in r.stdout

    r = zt("info", "--json", path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "sharded" and doc["tensor_count"] == len(sd)
    assert doc["metadata"] == index["metadata"] and doc["problems"] == []
    assert doc["shard_files"] == shards
    listed = {t["name"]: t for s in doc["shards"] for t in s["tensors"]}
    assert set(listed) == set(sd)
    assert listed["model.embed.weight"]["shape"] == [100, 16]

    r = zt("verify", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{directory / INDEX}: OK: {len(sd)} tensors in {len(shards)} shards" in r.stdout

    # The same tensors as one .zt file: identical; a changed one: a difference.
    single = tmp_path / "single.zt"
    ztt.save_file(reference(directory), single)
    r = zt("diff", path, single)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"identical: {len(sd)} tensors" in r.stdout
    changed = dict(reference(directory))
    changed["ids"] = changed["ids"] + 1
    ztt.save_file(changed, single)
    r = zt("diff", single, path)
    assert r.returncode == 1
    assert "data differs: ids (25 of 25 elements, first at index 0)" in r.stdout


def test_cli_reports_a_broken_checkpoint(hf):
    directory, sd = hf
    index = json.loads((directory / INDEX).read_text())
    victim = index["weight_map"]["ids"]
    os.remove(directory / victim)
    r = zt("verify", directory)
    assert r.returncode == 1
    assert victim in r.stdout and "FAILED" in r.stdout
    r = zt("info", directory)
    assert r.returncode == 1
    assert victim in r.stderr
    r = zt("diff", directory, directory)
    assert r.returncode == 1
    assert "unreadable: ids" in r.stdout
