"""The PyTorch front end (``ztensor.torch``), checked against torch itself,
``safetensors.torch`` on the same inputs, and the reference ztensor==1.2.3.

Every tensor comparison is bit-exact: same layout, dtype and shape, and the
same bytes (``.view(torch.uint8)`` of the contiguous, flattened tensor, complex
through ``view_as_real``), so NaN payloads, -0.0 and every float8 / 16-bit
float bit pattern must survive.

GPU loading lives in test_torch_cuda.py; here the device logic is checked
with the ``meta`` device and by watching the CUDA staging function.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402

import ztensor._torch_device as ztdev  # noqa: E402
import ztensor.numpy as ztnp  # noqa: E402
import ztensor.torch as ztorch  # noqa: E402
from conftest import (  # noqa: E402
    ALL_DTYPE_NAMES,
    DTYPE_INFO,
    ML_DTYPE_NAMES,
    all_dtypes,
    assert_bits_equal,
    file_sha256,
    np_dtype,
)
from torch_common import TORCH_DTYPES, Tied  # noqa: E402
from ztensor import Reader, ZTensorError  # noqa: E402

nn = torch.nn

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

#: dtypes safetensors.torch can store (it has no complex128)
ST_DTYPES = tuple(n for n in ALL_DTYPE_NAMES if n != "complex128")
#: dtypes the reference 1.2.3 torch front end can save and load
REF_TORCH_DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)

SHAPES = [(), (0,), (0, 3), (7, 13)]
SHAPE_IDS = ["0d", "empty", "0x3", "7x13"]


def np_to_torch(a: np.ndarray) -> torch.Tensor:
    """A torch tensor with the same dtype, shape and bits as a numpy array."""
    a = np.asarray(a).copy(order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
    name = a.dtype.name
    if name in ML_DTYPE_NAMES:
        return torch.from_numpy(a.view(f"u{a.dtype.itemsize}").copy()).view(TORCH_DTYPES[name])
    t = torch.from_numpy(a.copy())
    assert t.dtype == TORCH_DTYPES[name], (name, t.dtype)
    return t


def torch_to_np(t: torch.Tensor) -> np.ndarray:
    """The inverse of np_to_torch (ml_dtypes for bfloat16 / float8)."""
    t = t.detach().cpu().contiguous()
    for name, dt in TORCH_DTYPES.items():
        if dt == t.dtype and name in ML_DTYPE_NAMES:
            u = {1: torch.uint8, 2: torch.int16}[t.element_size()]
            a = t.view(u).numpy()
            return a.view(np.dtype(getattr(ml_dtypes, name)))
    return t.numpy()


SAMPLES_NP = all_dtypes()
SAMPLES = {k: np_to_torch(v) for k, v in SAMPLES_NP.items()}


def raw_bytes(t: torch.Tensor) -> torch.Tensor:
    """The tensor's C-order bytes as a 1-D uint8 CPU tensor."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.uint8)
    t = t.contiguous().reshape(-1)
    if t.is_complex():
        t = torch.view_as_real(t).reshape(-1)
    return t.view(torch.uint8)


def assert_same(actual, expected, what=""):
    """Bit-exact equality of two tensors (dense or sparse)."""
    assert isinstance(actual, torch.Tensor), f"{what}: {type(actual)}"
    assert actual.layout == expected.layout, f"{what}: layout {actual.layout} != {expected.layout}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    if actual.layout == torch.sparse_coo:
        e = expected.coalesce()
        assert torch.equal(actual._indices(), e._indices()), f"{what}: indices differ"
        assert_same(actual._values(), e._values(), what + " values")
        return
    if actual.layout == torch.sparse_csr:
        assert torch.equal(actual.crow_indices(), expected.crow_indices()), f"{what}: crow_indices differ"
        assert torch.equal(actual.col_indices(), expected.col_indices()), f"{what}: col_indices differ"
        assert_same(actual.values(), expected.values(), what + " values")
        return
    a, e = raw_bytes(actual), raw_bytes(expected)
    if not torch.equal(a, e):
        bad = torch.nonzero(a != e).reshape(-1)
        raise AssertionError(f"{what}: {bad.numel()} differing bytes, first at byte {int(bad[0])}")


def assert_same_dicts(actual: dict, expected: dict, what="", order=True):
    if order:
        assert list(actual) == list(expected), f"{what}: keys {list(actual)} != {list(expected)}"
    else:
        assert set(actual) == set(expected), f"{what}: keys {sorted(actual)} != {sorted(expected)}"
    for k in expected:
        assert_same(actual[k], expected[k], f"{what}[{k!r}]")


def make(dtype: str, shape) -> torch.Tensor:
    """A tensor of `dtype` and `shape` filled with the sample's bit patterns."""
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return torch.empty(shape, dtype=TORCH_DTYPES[dtype])
    src = SAMPLES_NP[dtype].reshape(-1)
    return np_to_torch(src[np.arange(n) % src.size].reshape(shape))


def st_roundtrip(tensors: dict, tmp_path: Path, metadata=None) -> dict:
    p = tmp_path / "st.safetensors"
    st.save_file(tensors, str(p), metadata=metadata)
    return st.load_file(str(p))


def sha(path) -> str:
    return file_sha256(path)


def listdir(path) -> list:
    return sorted(os.listdir(path))


# ---------------------------------------------------------------------------
# every dtype, shape and kind of input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("copy", [False, True], ids=["zerocopy", "copy"])
@pytest.mark.parametrize("dtype", ALL_DTYPE_NAMES)
def test_every_dtype_roundtrips_bit_exactly(dtype, copy, tmp_path):
    t = SAMPLES[dtype]
    p = tmp_path / "t.zt"
    ztorch.save_file({"x": t}, p)
    got = ztorch.load_file(p, copy=copy)
    assert list(got) == ["x"]
    assert_same(got["x"], t, dtype)

    meta = Reader(p).metadata("x")
    assert (meta.dtype, meta.type) == DTYPE_INFO[dtype][:2]
    assert meta.shape == list(t.shape)
    assert meta.format == "dense"

    if dtype in ST_DTYPES:
        ref = st_roundtrip({"x": t}, tmp_path)
        assert_same(got["x"], ref["x"], f"{dtype} vs safetensors")


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", ALL_DTYPE_NAMES)
def test_shapes_0d_and_empty(dtype, shape, tmp_path):
    t = make(dtype, shape)
    assert tuple(t.shape) == shape
    p = tmp_path / "t.zt"
    ztorch.save_file({"x": t, "after": torch.arange(3)}, p)

    for copy in (False, True):
        got = ztorch.load_file(p, copy=copy)
        assert list(got) == ["x", "after"]
        assert got["x"].dim() == len(shape)  # 0-d stays 0-d
        assert_same(got["x"], t, f"{dtype}{shape} copy={copy}")
        assert_same(got["after"], torch.arange(3))
    assert Reader(p).metadata("x").shape == list(shape)

    got_b = ztorch.load(ztorch.save({"x": t}))
    assert_same(got_b["x"], t, f"{dtype}{shape} bytes API")

    if dtype in ST_DTYPES:
        ref = st_roundtrip({"x": t}, tmp_path)
        assert_same(got["x"], ref["x"], f"{dtype}{shape} vs safetensors")


@pytest.mark.parametrize("dtype", ["float32", "int64", "bfloat16", "uint16", "complex64", "uint8"])
def test_empty_tensor_with_zero_stride(dtype, tmp_path):
    """Empty tensors may carry any strides, e.g. torch.from_numpy of an empty
    numpy array (numpy gives those stride 0). safetensors saves them."""
    tensors = {
        "strided": torch.empty_strided((0,), (0,), dtype=TORCH_DTYPES[dtype]),
        "from_numpy": np_to_torch(np.zeros((5,), dtype=np_dtype(dtype))[np.arange(0)]),
    }
    if dtype in ST_DTYPES:
        ref = st_roundtrip(tensors, tmp_path)
        assert_same_dicts(ref, tensors, "safetensors", order=False)
    p = tmp_path / "e.zt"
    ztorch.save_file(tensors, p)
    assert_same_dicts(ztorch.load_file(p), tensors, order=False)


NONCONTIG_VIEWS = {
    "transpose": lambda x: x.t(),
    "step": lambda x: x[::2],
    "cols": lambda x: x[:, 1:5:2],
    "expand": lambda x: x[:1].expand(5, x.shape[1]),
    "permute3d": lambda x: x.reshape(2, 4, 6).permute(2, 0, 1),
    "diagonal": lambda x: x.diagonal(),
}


@pytest.mark.parametrize("kind", list(NONCONTIG_VIEWS))
@pytest.mark.parametrize(
    "dtype", ["float32", "bfloat16", "int64", "bool", "float8_e5m2", "uint16", "complex64", "complex128"]
)
def test_non_contiguous_inputs(dtype, kind, tmp_path):
    base = make(dtype, (8, 6))
    view = NONCONTIG_VIEWS[kind](base)
    assert not view.is_contiguous()
    before = raw_bytes(base).clone()
    stride = view.stride()

    p = tmp_path / "t.zt"
    ztorch.save_file({"v": view, "base_sum": torch.ones(2)}, p)
    got = ztorch.load_file(p)
    assert got["v"].is_contiguous()
    assert_same(got["v"], view.contiguous(), f"{dtype} {kind}")
    assert_same(ztorch.load(ztorch.save({"v": view}))["v"], view.contiguous(), "bytes API")

    # the input is left alone
    assert torch.equal(raw_bytes(base), before)
    assert view.stride() == stride

    if dtype in ST_DTYPES:
        ref = st_roundtrip({"v": view.contiguous()}, tmp_path)
        assert_same(got["v"], ref["v"], "vs safetensors of .contiguous()")


def test_requires_grad_parameters_save(tmp_path):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3, 4))
    leaf = torch.randn(4, requires_grad=True)
    nonleaf = leaf * 2
    half = nn.Parameter(torch.randn(2, 2).to(torch.bfloat16))
    tensors = {"w": w, "leaf": leaf, "nonleaf": nonleaf, "half": half}
    p = tmp_path / "t.zt"
    ztorch.save_file(tensors, p)
    got = ztorch.load_file(p)
    ref = st_roundtrip(tensors, tmp_path)
    for k, t in tensors.items():
        assert_same(got[k], t.detach(), k)
        assert_same(got[k], ref[k], k + " vs safetensors")
        assert not got[k].requires_grad
        assert type(got[k]) is torch.Tensor
    assert w.requires_grad and w.grad is None  # untouched
    assert_same(ztorch.load(ztorch.save(tensors))["w"], w.detach())


# ---------------------------------------------------------------------------
# save_file / load_file against safetensors.torch
# ---------------------------------------------------------------------------


def mixed_tensors() -> dict:
    """Every safetensors dtype plus awkward shapes and names, in a non-sorted order."""
    d = {"zeta": torch.arange(7, dtype=torch.float32)}
    for k in ST_DTYPES:
        d[k] = SAMPLES[k]
    d["é"] = torch.tensor([1.5, -2.0, 3.25])
    d["10"] = torch.tensor([[1, 2], [3, 4]], dtype=torch.int16)
    d["9"] = torch.zeros(0)
    d["B"] = torch.zeros(0, 3, dtype=torch.int64)
    d["scalar"] = torch.tensor(-0.0, dtype=torch.float64)
    d["big"] = torch.randn(300, 77, generator=torch.Generator().manual_seed(5))
    d["a.b"] = torch.ones(3, 1, 2, dtype=torch.bfloat16)
    d["Aa"] = torch.tensor(True)
    return d


@pytest.mark.parametrize("copy", [False, True], ids=["zerocopy", "copy"])
def test_save_file_load_file_match_safetensors(copy, tmp_path):
    d = mixed_tensors()
    p = tmp_path / "m.zt"
    ztorch.save_file(d, p)
    got = ztorch.load_file(p, copy=copy)
    # same names in save order, same values as the input
    assert_same_dicts(got, d, "ztensor vs input")
    # and the same as safetensors on the same input (its order may differ)
    ref = st_roundtrip(d, tmp_path)
    assert_same_dicts(got, ref, "ztensor vs safetensors", order=False)
    # path as str and as Path both work
    assert_same_dicts(ztorch.load_file(str(p), copy=copy), d)


@pytest.mark.parametrize(
    "names",
    [
        ["zeta", "alpha", "10", "9", "é", "B", "a"],
        ["b", "a"],
        [f"layer.{i}.weight" for i in (10, 2, 1, 33, 0)],
        ["b_empty", "z_empty", "m", "a_empty", "y_empty"],
    ],
    ids=["mixed", "ba", "layers", "empties"],
)
def test_load_order_is_save_order(names, tmp_path):
    # names ending in "_empty" get zero-element tensors (they store no bytes).
    # The format has no order field: order is recovered from data offsets, and
    # zero-length blobs written back to back share one offset, so among such a
    # run of empties the order is by name (here chosen to match save order).
    d = {
        n: torch.zeros(0, i) if n.endswith("_empty") else torch.full((i + 1,), float(i))
        for i, n in enumerate(names)
    }
    p = tmp_path / "o.zt"
    ztorch.save_file(d, p)
    assert list(ztorch.load_file(p)) == names
    assert list(ztorch.load_file(p, copy=True)) == names
    assert list(ztorch.load(ztorch.save(d))) == names
    assert list(Reader(p).load_torch()) == names


def test_reader_load_torch_matches_load_file(tmp_path):
    d = mixed_tensors()
    p = tmp_path / "m.zt"
    ztorch.save_file(d, p)
    with Reader(p) as r:
        assert_same_dicts(r.load_torch(), d)
        assert_same_dicts(r.load_torch(copy=True), d)
        assert_same_dicts(r.load_torch(device="cpu"), d)


def test_metadata_str_dict_roundtrips_like_safetensors(tmp_path):
    md = {"format": "pt", "author": "me", "empty": "", "unicode": "é✓ 漢字", "json": '{"a": [1, 2]}'}
    d = {"x": torch.arange(4.0)}
    p = tmp_path / "m.zt"
    ztorch.save_file(d, p, metadata=md)
    assert Reader(p).metadata() == md
    sp = tmp_path / "m.safetensors"
    st.save_file(d, str(sp), metadata=md)
    with safe_open(str(sp), "pt") as f:
        assert f.metadata() == md
    assert_same_dicts(ztorch.load_file(p), d)

    # through the bytes API too
    bp = tmp_path / "b.zt"
    bp.write_bytes(ztorch.save(d, metadata=md))
    assert Reader(bp).metadata() == md


def test_metadata_json_like_values_roundtrip(tmp_path):
    md = {
        "int": 1,
        "neg": -7,
        "big": 2**40,
        "float": 2.5,
        "true": True,
        "false": False,
        "none": None,
        "str": "s",
        "list": [1, "a", [2, 3.5], None],
        "nested": {"k": {"x": -3, "y": ["z"]}},
        "empty_list": [],
        "empty_dict": {},
    }
    d = {"x": torch.arange(4.0)}
    p = tmp_path / "m.zt"
    ztorch.save_file(d, p, metadata=md)
    got = Reader(p).metadata()
    assert got == md
    assert json.dumps(got, sort_keys=True) == json.dumps(
        md, sort_keys=True
    )  # types too (1 vs 1.0, True vs 1)
    bp = tmp_path / "b.zt"
    bp.write_bytes(ztorch.save(d, metadata=md))
    assert Reader(bp).metadata() == md


def test_no_metadata_reads_back_empty(tmp_path):
    p = tmp_path / "m.zt"
    ztorch.save_file({"x": torch.zeros(2)}, p)
    assert Reader(p).metadata() == {}
    ztorch.save_file({"x": torch.zeros(2)}, p, metadata={})
    assert Reader(p).metadata() == {}


@pytest.mark.parametrize("compression", [True, 1, 3, 19, 22], ids=lambda c: f"compression={c}")
def test_compression_roundtrips(compression, tmp_path):
    d = mixed_tensors()
    d["zeros"] = torch.zeros(256, 1024)
    p = tmp_path / "c.zt"
    ztorch.save_file(d, p, compression=compression)
    raw = tmp_path / "r.zt"
    ztorch.save_file(d, raw)
    assert p.stat().st_size < raw.stat().st_size - 900_000

    r = Reader(p)
    assert r.metadata("zeros").components["data"]["encoding"] == "zstd"
    assert Reader(raw).metadata("zeros").components["data"]["encoding"] == "raw"
    for copy in (False, True):
        assert_same_dicts(ztorch.load_file(p, copy=copy), d, f"copy={copy}")
    assert_same_dicts(ztorch.load(ztorch.save(d, compression=compression)), d, "bytes API")
    ref = st_roundtrip(d, tmp_path)
    assert_same_dicts(ztorch.load_file(p), ref, "vs safetensors", order=False)


@pytest.mark.parametrize("compression", [False, 0, None])
def test_no_compression_values(compression, tmp_path):
    p = tmp_path / "c.zt"
    d = {"zeros": torch.zeros(1000)}
    ztorch.save_file(d, p, compression=compression)
    assert Reader(p).metadata("zeros").components["data"]["encoding"] == "raw"
    assert_same_dicts(ztorch.load_file(p), d)


def test_bytes_api_matches_safetensors(tmp_path):
    d = mixed_tensors()
    data = ztorch.save(d)
    assert isinstance(data, bytes)
    got = ztorch.load(data)
    assert_same_dicts(got, d, "load(save())")
    assert_same_dicts(got, st.load(st.save(d)), "vs safetensors bytes API", order=False)

    # the bytes are a .zt file
    p = tmp_path / "b.zt"
    p.write_bytes(data)
    assert_same_dicts(ztorch.load_file(p), d, "load_file of save() bytes")
    # and the file of save_file is loadable by load()
    q = tmp_path / "f.zt"
    ztorch.save_file(d, q)
    assert_same_dicts(ztorch.load(q.read_bytes()), d, "load() of save_file bytes")

    for other in (bytearray(data), memoryview(data)):
        assert_same_dicts(ztorch.load(other), d, type(other).__name__)


def test_bytes_api_tensors_outlive_the_bytes_and_are_writable():
    d = {"a": torch.arange(1000, dtype=torch.float32), "b": torch.arange(10)}
    data = ztorch.save(d)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = ztorch.load(data)
        del data
        gc.collect()
        got["a"].add_(1)
        got["b"][0] = 42
    assert [str(x.message) for x in w] == []
    assert torch.equal(got["a"], d["a"] + 1)
    assert got["b"].tolist() == [42] + list(range(1, 10))
    assert torch.equal(d["a"], torch.arange(1000, dtype=torch.float32))  # the input is untouched


def test_input_validation_like_safetensors(tmp_path):
    p = tmp_path / "v.zt"
    for bad in ([torch.zeros(1)], torch.zeros(1)):
        with pytest.raises(ValueError):
            st.save_file(bad, str(tmp_path / "x.safetensors"))
        with pytest.raises(ValueError):
            ztorch.save_file(bad, p)
        with pytest.raises(ValueError):
            ztorch.save(bad)
    with pytest.raises(ValueError):
        st.save_file({"a": np.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="`a`"):
        ztorch.save_file({"a": np.zeros(2)}, p)
    assert not p.exists()


def test_unsupported_dtype_is_refused_and_leaves_no_file(tmp_path):
    p = tmp_path / "u.zt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ComplexHalf support is experimental"
        c32 = torch.zeros(2, dtype=torch.complex32)
    with pytest.raises(ZTensorError):
        ztorch.save_file({"ok": torch.ones(2), "c32": c32}, p)
    assert listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# shared storage
# ---------------------------------------------------------------------------


def _shared_cases():
    x = torch.arange(24.0).reshape(4, 6)
    p = nn.Parameter(torch.ones(3, 3))
    return {
        "same": {"a": x, "b": x},
        "view": {"a": x, "b": x.view(6, 4)},
        "overlap": {"a": x, "b": x[1:]},
        "transpose": {"a": x, "b": x.t()},
        "param": {"emb": p, "head": p, "other": torch.zeros(2)},
        "three": {"a": x, "b": x, "c": x[0]},
    }


@pytest.mark.parametrize("case", list(_shared_cases()))
def test_save_file_refuses_shared_memory(case, tmp_path):
    tensors = _shared_cases()[case]
    contiguous = all(t.is_contiguous() for t in tensors.values())
    if contiguous:
        with pytest.raises(RuntimeError, match="Some tensors share memory"):
            st.save_file(tensors, str(tmp_path / "s.safetensors"))
        assert listdir(tmp_path) == []

    p = tmp_path / "s.zt"
    with pytest.raises(RuntimeError, match="Some tensors share memory") as ei:
        ztorch.save_file(tensors, p)
    assert "save_model" in str(ei.value)
    assert listdir(tmp_path) == [], "a refused save left files behind"
    with pytest.raises(RuntimeError, match="Some tensors share memory"):
        ztorch.save(tensors)

    # an existing file is left as it was
    ztorch.save_file({"old": torch.ones(3)}, p)
    before = sha(p)
    with pytest.raises(RuntimeError, match="Some tensors share memory"):
        ztorch.save_file(tensors, p)
    assert sha(p) == before
    assert listdir(tmp_path) == ["s.zt"]


def test_disjoint_views_of_one_storage_save_like_safetensors(tmp_path):
    """safetensors only refuses tensors whose memory *overlaps*; disjoint slices
    of one storage (e.g. x[0] and x[1]) save fine. A drop-in replacement should
    accept the same inputs."""
    x = torch.arange(12.0).reshape(3, 4)
    tensors = {"a": x[0], "b": x[1], "c": x[2]}
    ref = st_roundtrip(tensors, tmp_path)
    assert_same_dicts(ref, tensors, order=False)
    p = tmp_path / "d.zt"
    ztorch.save_file(tensors, p)
    assert_same_dicts(ztorch.load_file(p), tensors)


# ---------------------------------------------------------------------------
# models: save_model / load_model
# ---------------------------------------------------------------------------


class Untied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 100, bias=False)


class TiedWithProj(Tied):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 4)


class TiedWithOther(Tied):
    def __init__(self):
        super().__init__()
        self.other = nn.Linear(16, 3)
        self.register_buffer("steps", torch.tensor(7))


def build(cls, seed):
    torch.manual_seed(seed)
    m = cls()
    with torch.no_grad():
        for prm in m.parameters():
            prm.uniform_(-1, 1)
    return m


def state_equal(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert_same(sa[k], sb[k], k)


def test_save_model_stores_tied_weights_once(tmp_path):
    model = build(Tied, 0)
    p, sp = tmp_path / "m.zt", tmp_path / "m.safetensors"
    ztorch.save_model(model, p)
    st.save_model(model, str(sp))

    r = Reader(p)
    with safe_open(str(sp), "pt") as f:
        st_keys, st_meta = set(f.keys()), f.metadata()
    assert set(r.keys()) == st_keys == {"emb.weight", "norm.weight", "norm.bias"}
    assert len(r) == 3
    # the dropped name -> the kept name, as safetensors records it
    assert r.metadata() == {"head.weight": "emb.weight"} == st_meta
    # one copy of the 100x16 matrix on disk
    stored = sum(c["length"] for n in r.keys() for c in r.metadata(n).components.values())
    assert stored == (100 * 16 + 16 + 16) * 4
    assert p.stat().st_size < 2 * 100 * 16 * 4

    got = ztorch.load_file(p)
    assert_same(got["emb.weight"], model.emb.weight.detach())
    assert_same_dicts(got, st.load_file(str(sp)), "vs safetensors", order=False)


def test_save_model_keeps_user_metadata(tmp_path):
    model = build(Tied, 0)
    p, sp = tmp_path / "m.zt", tmp_path / "m.safetensors"
    user = {"head.weight": "mine", "k": "v"}
    ztorch.save_model(model, p, metadata=dict(user))
    st.save_model(model, str(sp), metadata=dict(user))
    with safe_open(str(sp), "pt") as f:
        assert Reader(p).metadata() == f.metadata() == user
    user2 = {"k": "v"}
    ztorch.save_model(model, p, metadata=dict(user2))
    st.save_model(model, str(sp), metadata=dict(user2))
    with safe_open(str(sp), "pt") as f:
        assert Reader(p).metadata() == f.metadata() == {"k": "v", "head.weight": "emb.weight"}


@pytest.mark.parametrize("copy", [False, True], ids=["zerocopy", "copy"])
def test_load_model_restores_tied_weights(copy, tmp_path):
    model = build(Tied, 0)
    p, sp = tmp_path / "m.zt", tmp_path / "m.safetensors"
    ztorch.save_model(model, p)
    st.save_model(model, str(sp))

    fresh, fresh_st = build(Tied, 1), build(Tied, 1)
    assert not torch.equal(fresh.emb.weight, model.emb.weight)
    result = ztorch.load_model(fresh, p, copy=copy)
    result_st = st.load_model(fresh_st, str(sp))
    assert result == result_st
    missing, unexpected = result
    assert not missing and not unexpected

    # tied after load: one storage, holding the saved values
    assert fresh.head.weight is fresh.emb.weight
    assert fresh.head.weight.data_ptr() == fresh.emb.weight.data_ptr()
    assert fresh.emb.weight.untyped_storage().data_ptr() == fresh.head.weight.untyped_storage().data_ptr()
    assert_same(fresh.head.weight.detach(), model.emb.weight.detach())
    state_equal(fresh, model)
    state_equal(fresh, fresh_st)
    # still trainable parameters
    assert isinstance(fresh.emb.weight, nn.Parameter) and fresh.emb.weight.requires_grad

    # the model does not alias the file: changing the model leaves a reload untouched
    with torch.no_grad():
        fresh.emb.weight.add_(1)
    assert_same(ztorch.load_file(p)["emb.weight"], model.emb.weight.detach())


def _file_from_model(cls, seed, tmp_path, tag):
    m = build(cls, seed)
    p, sp = tmp_path / f"{tag}.zt", tmp_path / f"{tag}.safetensors"
    ztorch.save_model(m, p)
    st.save_model(m, str(sp))
    return p, sp


def _file_from_dict(d, tmp_path, tag):
    p, sp = tmp_path / f"{tag}.zt", tmp_path / f"{tag}.safetensors"
    ztorch.save_file(d, p)
    st.save_file(d, str(sp))
    return p, sp


def _untied_state(seed):
    return {k: v.clone() for k, v in build(Untied, seed).state_dict().items()}


# (file maker, model class): missing / unexpected keys in various combinations
LOAD_CASES = {
    # file has "other.*" and "steps", model has "proj.*" instead
    "other_vs_proj": (lambda tp: _file_from_model(TiedWithOther, 3, tp, "f"), TiedWithProj),
    # plain tied file into a model with an extra layer
    "missing_proj": (lambda tp: _file_from_model(Tied, 3, tp, "f"), TiedWithProj),
    # file with an extra layer into the plain model
    "unexpected_other": (lambda tp: _file_from_model(TiedWithOther, 3, tp, "f"), Tied),
    # file keeps the head's name instead of the embedding's
    "head_name_only": (
        lambda tp: _file_from_dict({k: v for k, v in _untied_state(4).items() if k != "emb.weight"}, tp, "f"),
        Tied,
    ),
    # untied file (both names) into the tied model: the alias is unexpected
    "both_names": (lambda tp: _file_from_dict(_untied_state(4), tp, "f"), Tied),
    # tied file into an untied model: the head is missing
    "tied_into_untied": (lambda tp: _file_from_model(Tied, 3, tp, "f"), Untied),
    # nothing in common
    "disjoint": (lambda tp: _file_from_dict({"x.weight": torch.ones(2), "y": torch.zeros(1)}, tp, "f"), Tied),
}


@pytest.mark.parametrize("case", list(LOAD_CASES))
def test_load_model_missing_unexpected_like_safetensors(case, tmp_path):
    make_file, cls = LOAD_CASES[case]
    p, sp = make_file(tmp_path)

    # strict=False: the same (missing, unexpected) as safetensors, same model state
    ours_model, st_model = build(cls, 9), build(cls, 9)
    ours = ztorch.load_model(ours_model, p, strict=False)
    theirs = st.load_model(st_model, str(sp), strict=False)
    assert type(ours) is type(theirs)
    assert len(ours) == 2
    assert type(ours[0]) is type(theirs[0]) and type(ours[1]) is type(theirs[1])
    assert ours[0] == theirs[0], "missing"
    assert sorted(ours[1]) == sorted(theirs[1]), "unexpected"
    state_equal(ours_model, st_model)
    if hasattr(ours_model, "head") and isinstance(ours_model, Tied):
        assert ours_model.head.weight.data_ptr() == ours_model.emb.weight.data_ptr()

    # strict=True: the same error (or the same result when nothing is left over)
    ours_model, st_model = build(cls, 9), build(cls, 9)
    try:
        theirs = st.load_model(st_model, str(sp), strict=True)
    except RuntimeError as e:
        st_err = str(e)
    else:
        st_err = None
    if st_err is None:
        assert ztorch.load_model(ours_model, p, strict=True) == theirs
    else:
        with pytest.raises(RuntimeError) as ei:
            ztorch.load_model(ours_model, p, strict=True)
        msg = str(ei.value)
        assert msg == st_err
        missing, unexpected = ours
        if missing:
            assert "Missing key(s)" in msg
        if unexpected:
            assert "Unexpected key(s)" in msg
        for k in list(missing) + list(unexpected):
            assert f'"{k}"' in msg
        assert cls.__name__ in msg


def test_load_model_strict_error_names_the_keys(tmp_path):
    p, _ = _file_from_model(TiedWithOther, 3, tmp_path, "f")
    model = build(TiedWithProj, 9)
    with pytest.raises(RuntimeError) as ei:
        ztorch.load_model(model, p)  # strict defaults to True
    msg = str(ei.value)
    assert msg.startswith("Error(s) in loading state_dict for TiedWithProj:")
    assert 'Missing key(s) in state_dict: "proj.bias", "proj.weight"' in msg
    assert 'Unexpected key(s) in state_dict: "other.bias", "other.weight", "steps"' in msg


class NonContiguous(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 4).t())
        self.lin = nn.Linear(3, 2)
        self.register_buffer("buf", torch.arange(24.0).reshape(4, 6).t())


@pytest.mark.parametrize("force_contiguous", [True, False])
def test_save_model_force_contiguous(force_contiguous, tmp_path):
    model = build(NonContiguous, 0)
    assert not model.w.is_contiguous() and not model.buf.is_contiguous()
    w_ptr, w_stride = model.w.data_ptr(), model.w.stride()
    p = tmp_path / "m.zt"
    ztorch.save_model(model, p, force_contiguous=force_contiguous)
    # the model is not changed by saving
    assert model.w.data_ptr() == w_ptr and model.w.stride() == w_stride

    got = ztorch.load_file(p)
    for k, v in model.state_dict().items():
        assert_same(got[k], v.detach().contiguous(), k)
    if force_contiguous:
        sp = tmp_path / "m.safetensors"
        st.save_model(model, str(sp))
        assert_same_dicts(got, st.load_file(str(sp)), order=False)
    else:
        # safetensors refuses non-contiguous tensors here; ztensor packs them
        with pytest.raises(ValueError, match="force_contiguous"):
            st.save_model(model, str(tmp_path / "x.safetensors"), force_contiguous=False)

    fresh = build(NonContiguous, 1)
    assert ztorch.load_model(fresh, p) == (set(), [])
    for k, v in model.state_dict().items():
        assert_same(fresh.state_dict()[k].contiguous(), v.contiguous(), k)


def test_save_model_plain_module(tmp_path):
    model = build(lambda: nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2)), 0)
    p = tmp_path / "m.zt"
    ztorch.save_model(model, p)
    assert Reader(p).metadata() == {}
    fresh = build(lambda: nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2)), 1)
    assert ztorch.load_model(fresh, p) == (set(), [])
    state_equal(fresh, model)


# ---------------------------------------------------------------------------
# sparse tensors
# ---------------------------------------------------------------------------


def _coo(indices, values, shape):
    return torch.sparse_coo_tensor(
        torch.tensor(indices, dtype=torch.int64).reshape(len(shape), -1), values, shape, check_invariants=True
    )


def sparse_cases() -> dict:
    g = torch.Generator().manual_seed(7)
    dense = torch.randn(6, 9, generator=g)
    dense[dense.abs() < 0.8] = 0
    return {
        "coo_f32": dense.to_sparse(),
        "coo_uncoalesced": _coo([[0, 2, 0, 3], [1, 4, 1, 0]], torch.tensor([1.0, 2.0, 3.0, -0.0]), (4, 5)),
        "coo_3d_i64": _coo([[0, 1, 1], [2, 0, 3], [4, 4, 0]], torch.tensor([-5, 2**40, 7]), (2, 4, 5)),
        "coo_1d_bf16": _coo([[1, 5, 8]], torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16), (10,)),
        "coo_c64": _coo([[0, 1], [1, 0]], torch.tensor([1 + 2j, -3j], dtype=torch.complex64), (2, 2)),
        "coo_bool": _coo([[0, 3]], torch.tensor([True, True]), (4,)),
        "coo_f64_nan": _coo([[0], [0]], torch.tensor([float("nan")], dtype=torch.float64), (1, 1)),
        "coo_empty": torch.sparse_coo_tensor(
            torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0), (3, 3), check_invariants=True
        ),
        "csr_f32": dense.to_sparse_csr(),
        "csr_f64_empty_rows": torch.tensor(
            [[0.0, 0, 0], [1, 0, 2], [0, 0, 0], [0, 3, 0]], dtype=torch.float64
        ).to_sparse_csr(),
        "csr_i32": torch.tensor([[0, 5], [7, 0]], dtype=torch.int32).to_sparse_csr(),
        "csr_empty": torch.zeros(3, 4).to_sparse_csr(),
        "csr_bf16": torch.eye(5, dtype=torch.bfloat16).to_sparse_csr(),
    }


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
    SPARSE = sparse_cases()


@pytest.mark.parametrize("compression", [False, True], ids=["raw", "zstd"])
@pytest.mark.parametrize("name", list(SPARSE))
def test_sparse_roundtrip(name, compression, tmp_path):
    t = SPARSE[name]
    p = tmp_path / "s.zt"
    d = {"before": torch.arange(3), name: t, "after": torch.ones(2, 2)}
    ztorch.save_file(d, p, compression=compression)
    meta = Reader(p).metadata(name)
    assert meta.format == ("sparse_coo" if t.layout == torch.sparse_coo else "sparse_csr")
    assert meta.shape == list(t.shape)
    for copy in (False, True):
        got = ztorch.load_file(p, copy=copy)
        assert list(got) == list(d)
        assert_same(got[name], t, f"{name} copy={copy}")
        assert_same(got["before"], d["before"])
        assert_same(got["after"], d["after"])
        # same dense contents
        assert_same(got[name].to_dense(), t.to_dense(), name + " to_dense")
    assert_same(ztorch.load(ztorch.save(d))[name], t, "bytes API")


def test_sparse_coo_loads_coalesced(tmp_path):
    """The writer coalesces COO tensors, so the loaded tensor is coalesced: it
    should say so, or .indices()/.values() (which work on the saved tensor) fail."""
    t = SPARSE["coo_f32"]
    assert t.is_coalesced()
    p = tmp_path / "s.zt"
    ztorch.save_file({"s": t}, p)
    got = ztorch.load_file(p)["s"]
    assert got.is_coalesced()
    assert torch.equal(got.indices(), t.indices())


def test_safetensors_refuses_what_we_store_sparse(tmp_path):
    with pytest.raises(ValueError):
        st.save_file({"s": SPARSE["coo_f32"]}, str(tmp_path / "s.safetensors"))


def _patch_u64(path, offset, value):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<Q", value % 2**64))


def _crafted(tmp_path, t, component, index, value):
    p = tmp_path / "bad.zt"
    ztorch.save_file({"ok": torch.ones(2), "s": t}, p)
    comp = Reader(p).metadata("s").components[component]
    assert comp["encoding"] == "raw" and comp["dtype"] == "uint64"
    assert 8 * index < comp["length"]
    _patch_u64(p, comp["offset"] + 8 * index, value)
    return p


@pytest.mark.parametrize(
    "component,index,value",
    [
        ("coords", 0, 4),  # row 4 of a 4-row tensor
        ("coords", 5, 1000),  # column out of range (second row of coords)
        ("coords", 1, -1),  # negative as int64
        ("coords", 2, 2**63),  # most negative int64
    ],
    ids=["row", "col", "neg", "min"],
)
def test_crafted_coo_out_of_range_raises(component, index, value, tmp_path):
    t = _coo([[0, 1, 3], [2, 0, 4]], torch.tensor([1.0, 2.0, 3.0]), (4, 5))
    p = _crafted(tmp_path, t, component, index, value)
    with pytest.raises(ZTensorError):
        ztorch.load_file(p)
    with pytest.raises(ZTensorError):
        ztorch.load_file(p, copy=True)
    with pytest.raises(ZTensorError):
        Reader(p).load_torch()
    with pytest.raises(ZTensorError):
        ztorch.load(p.read_bytes())


@pytest.mark.parametrize(
    "component,index,value",
    [
        ("indices", 1, 3),  # column 3 of a 3-column matrix
        ("indices", 0, -1),
        ("indptr", 1, 3),  # row pointers not monotone
        ("indptr", 3, 2),  # last pointer != nnz
        ("indptr", 0, 1),  # first pointer != 0
    ],
    ids=["col", "neg", "nonmonotone", "last", "first"],
)
def test_crafted_csr_out_of_range_raises(component, index, value, tmp_path):
    t = torch.tensor([[1.0, 0, 2], [0, 0, 3], [4, 0, 0]]).to_sparse_csr()
    assert t.crow_indices().tolist() == [0, 2, 3, 4]
    p = _crafted(tmp_path, t, component, index, value)
    with pytest.raises(ZTensorError):
        ztorch.load_file(p)
    with pytest.raises(ZTensorError):
        ztorch.load_file(p, copy=True)


# ---------------------------------------------------------------------------
# copy-on-write and copy=True
# ---------------------------------------------------------------------------


def cow_tensors():
    g = torch.Generator().manual_seed(11)
    return {
        "big": torch.randn(1024, 1024, generator=g),  # several pages
        "i64": torch.arange(5000, dtype=torch.int64),
        "bf16": torch.randn(33, 7, generator=g).to(torch.bfloat16),
        "c64": torch.randn(10, dtype=torch.complex64, generator=g),
        "f8": SAMPLES["float8_e4m3fn"].clone(),
        "scalar": torch.tensor(3.0),
    }


def _mutate(got):
    got["big"].add_(1)
    got["big"][0, 0] = 123.0
    got["i64"][10:20] = -1
    got["bf16"].mul_(2)
    got["c64"][0] = 5 + 5j
    got["f8"].view(torch.uint8)[:] = 0
    got["scalar"].fill_(-1)


def _check_mutated(got, orig):
    assert got["big"][0, 0].item() == 123.0
    assert torch.equal(got["big"].reshape(-1)[1:], (orig["big"] + 1).reshape(-1)[1:])
    assert got["i64"][10:20].tolist() == [-1] * 10
    assert got["scalar"].item() == -1.0


@pytest.mark.parametrize("compression", [False, True], ids=["raw", "zstd"])
def test_copy_on_write_mutation_never_touches_the_file(compression, tmp_path):
    d = cow_tensors()
    p = tmp_path / "cow.zt"
    ztorch.save_file(d, p, compression=compression)
    digest = sha(p)
    mtime = p.stat().st_mtime_ns

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        first = ztorch.load_file(p)  # copy=False is the default
        other = ztorch.load_file(p, copy=False)
        _mutate(first)
    assert [f"{x.category.__name__}: {x.message}" for x in w] == []
    _check_mutated(first, d)

    assert sha(p) == digest
    assert p.stat().st_mtime_ns == mtime
    # a load made before the mutation, and one made after, see the original
    assert_same_dicts(other, d, "earlier load")
    assert_same_dicts(ztorch.load_file(p), d, "later load")
    assert_same_dicts(ztorch.load_file(p, copy=True), d, "later copy load")
    assert_bits_equal(Reader(p).read_tensor("big"), d["big"].numpy(), "numpy read")
    del first
    gc.collect()
    assert sha(p) == digest


def test_no_warnings_in_a_fresh_interpreter(tmp_path):
    """torch warns only once per process (e.g. about non-writable buffers), so
    check loading and mutating in a fresh interpreter with warnings as errors."""
    p = tmp_path / "w.zt"
    ztorch.save_file(cow_tensors(), p)
    digest = sha(p)
    code = (
        "import sys, warnings, torch, ztensor.torch as zt\n"
        "warnings.simplefilter('error')\n"
        f"p = {str(p)!r}\n"
        "for copy in (False, True):\n"
        "    d = zt.load_file(p, copy=copy)\n"
        "    d['big'].add_(1); d['i64'][0] = 5; d['bf16'].mul_(2)\n"
        "with open(p, 'rb') as f:\n"
        "    d = zt.load(f.read())\n"
        "d['big'].add_(1)\n"
        "print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"
    assert out.stderr == ""
    assert sha(p) == digest


def test_copy_false_is_zero_copy_and_aligned(tmp_path):
    d = cow_tensors()
    p = tmp_path / "z.zt"
    ztorch.save_file(d, p)
    got = ztorch.load_file(p)
    for k, t in got.items():
        assert t.data_ptr() % 64 == 0, k
    # zero-copy: the tensors live in one mapping, laid out as in the file
    r = Reader(p)
    base = got["big"].data_ptr() - r.metadata("big").components["data"]["offset"]
    for k, t in got.items():
        assert t.data_ptr() - base == r.metadata(k).components["data"]["offset"], k


def test_copy_true_tensors_are_independent(tmp_path):
    d = cow_tensors()
    p = tmp_path / "c.zt"
    ztorch.save_file(d, p)
    digest = sha(p)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = ztorch.load_file(p, copy=True)
        b = ztorch.load_file(p, copy=True)
        z = ztorch.load_file(p, copy=False)
    assert [str(x.message) for x in w] == []
    for k in d:
        assert a[k].data_ptr() != b[k].data_ptr(), k
        assert a[k].data_ptr() != z[k].data_ptr(), k
        assert_same(a[k], d[k], k)
    _mutate(a)
    _check_mutated(a, d)
    assert_same_dicts(b, d, "other copy load")
    assert_same_dicts(z, d, "zero-copy load")
    assert sha(p) == digest
    # independent of the file: survives its removal
    os.remove(p)
    gc.collect()
    assert_same_dicts(b, d, "after removal")


def test_tensors_outlive_reader_and_file(tmp_path):
    d = cow_tensors()
    p = tmp_path / "l.zt"
    ztorch.save_file(d, p)
    got = ztorch.load_file(p)
    with Reader(p) as r:
        via_reader = r.load_torch()
    os.remove(p)
    gc.collect()
    assert_same_dicts(got, d, "load_file after removal")
    assert_same_dicts(via_reader, d, "Reader.load_torch after close and removal")
    got["big"].add_(1)  # still writable


# ---------------------------------------------------------------------------
# devices (no GPU needed)
# ---------------------------------------------------------------------------


def device_tensors():
    d = {k: SAMPLES[k] for k in ALL_DTYPE_NAMES}
    d["scalar"] = torch.tensor(1.5, dtype=torch.float16)
    d["empty"] = torch.zeros(0, 3, dtype=torch.int8)
    return d


def _no_stage(*a, **k):
    raise AssertionError("_stage_cuda called for a non-CUDA device")


def test_meta_device(tmp_path, monkeypatch):
    monkeypatch.setattr(ztdev, "_stage_cuda", _no_stage)
    d = device_tensors()
    p = tmp_path / "d.zt"
    ztorch.save_file(d, p)
    for dev in ("meta", torch.device("meta")):
        for copy in (False, True):
            got = ztorch.load_file(p, device=dev, copy=copy)
            assert list(got) == list(d)
            for k, t in d.items():
                assert got[k].is_meta, k
                assert got[k].device == torch.device("meta")
                assert got[k].dtype == t.dtype, k
                assert got[k].shape == t.shape, k
    got = Reader(p).load_torch(device="meta")
    assert all(t.is_meta for t in got.values())


@pytest.mark.parametrize(
    "device",
    ["cpu", torch.device("cpu"), "cpu:0", torch.device("cpu", 0)],
    ids=["str", "device", "str0", "device0"],
)
def test_cpu_devices(device, tmp_path, monkeypatch):
    monkeypatch.setattr(ztdev, "_stage_cuda", _no_stage)
    d = device_tensors()
    d["sparse"] = SPARSE["coo_f32"]
    p = tmp_path / "d.zt"
    ztorch.save_file(d, p)
    for copy in (False, True):
        got = ztorch.load_file(p, device=device, copy=copy)
        for k in d:
            assert got[k].device.type == "cpu", k
        assert_same_dicts(got, d)
    assert_same_dicts(Reader(p).load_torch(device=device), d)
    model = build(Tied, 0)
    ztorch.save_model(model, p)
    fresh = build(Tied, 1)
    assert ztorch.load_model(fresh, p, device=device) == (set(), [])
    state_equal(fresh, model)


def test_parse_device():
    pd = ztdev.parse_device
    assert pd(0) == torch.device("cuda", 0)
    assert pd(3) == torch.device("cuda", 3)
    assert pd("cuda:1") == torch.device("cuda", 1)
    assert pd("cpu") == torch.device("cpu")
    assert pd("meta") == torch.device("meta")
    assert pd(torch.device("cpu")) == torch.device("cpu")
    for bad in (True, 1.0, None, [0]):
        with pytest.raises(TypeError):
            pd(bad)


@pytest.mark.parametrize(
    "device,expected",
    [
        (0, torch.device("cuda", 0)),
        (1, torch.device("cuda", 1)),
        ("cuda:0", torch.device("cuda", 0)),
        ("cuda", torch.device("cuda")),
        (torch.device("cuda", 2), torch.device("cuda", 2)),
    ],
    ids=["int0", "int1", "str", "bare", "device"],
)
def test_cuda_devices_dispatch_to_staging(device, expected, tmp_path, monkeypatch):
    """Without a GPU: a CUDA device reaches the staging path with the host tensors."""
    calls = []

    def fake_stage(tensors, dev, staging_bytes):
        calls.append((dict(tensors), dev, staging_bytes))
        return {k: v.clone() for k, v in tensors.items()}

    monkeypatch.setattr(ztdev, "_stage_cuda", fake_stage)
    d = device_tensors()
    p = tmp_path / "d.zt"
    ztorch.save_file(d, p)
    for copy in (False, True):
        calls.clear()
        got = ztorch.load_file(p, device=device, copy=copy)
        assert len(calls) == 1
        tensors, dev, staging = calls[0]
        assert dev == expected
        assert staging == ztdev.STAGING_BYTES
        assert list(tensors) == list(d)
        assert_same_dicts(tensors, d, "staged host tensors")
        assert_same_dicts(got, d)


def test_staging_size_follows_the_module_setting(tmp_path, monkeypatch):
    """STAGING_BYTES is the knob for the pinned staging size (test_torch_cuda.py
    sets it to 1 MiB to force chunking); the CUDA path must use its current value."""
    seen = []

    def fake_stage(tensors, dev, staging_bytes):
        seen.append(staging_bytes)
        return dict(tensors)

    monkeypatch.setattr(ztdev, "_stage_cuda", fake_stage)
    monkeypatch.setattr(ztdev, "STAGING_BYTES", 1 << 20)
    p = tmp_path / "d.zt"
    ztorch.save_file({"x": torch.zeros(10)}, p)
    ztorch.load_file(p, device="cuda:0")
    assert seen == [1 << 20]


def test_load_model_passes_device_through(tmp_path, monkeypatch):
    calls = []

    def fake_stage(tensors, dev, staging_bytes):
        calls.append(dev)
        return dict(tensors)

    monkeypatch.setattr(ztdev, "_stage_cuda", fake_stage)
    model = build(Tied, 0)
    p = tmp_path / "m.zt"
    ztorch.save_model(model, p)
    fresh = build(Tied, 1)
    ztorch.load_model(fresh, p, device=0)
    assert calls == [torch.device("cuda", 0)]
    state_equal(fresh, model)


# ---------------------------------------------------------------------------
# the numpy front end and the torch front end read each other's files
# ---------------------------------------------------------------------------


def test_numpy_written_files_load_in_torch(tmp_path):
    p = tmp_path / "n.zt"
    ztnp.save_file(dict(SAMPLES_NP), p)
    got = ztorch.load_file(p)
    assert list(got) == list(SAMPLES_NP)
    for k, a in SAMPLES_NP.items():
        assert_same(got[k], np_to_torch(a), k)


def test_torch_written_files_read_in_numpy(tmp_path):
    p = tmp_path / "t.zt"
    ztorch.save_file(dict(SAMPLES), p)
    with Reader(p) as r:
        for k, a in SAMPLES_NP.items():
            assert_bits_equal(r.read_tensor(k), a, k)
    got = ztnp.load_file(p)
    for k, a in SAMPLES_NP.items():
        assert_bits_equal(got[k], a, k)


def test_import_ztensor_torch_without_torch_is_a_clear_import_error():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import ztensor\n"
        "try:\n"
        "    import ztensor.torch\n"
        "except ImportError as e:\n"
        "    print('IMPORTERROR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("IMPORTERROR"), out.stdout + out.stderr
    assert "torch" in out.stdout.lower()


# ---------------------------------------------------------------------------
# interoperability with the reference ztensor==1.2.3 torch front end
# ---------------------------------------------------------------------------


def ref_inputs(with_empty: bool, with_0d: bool) -> dict:
    d = {"zeta": np.arange(7, dtype=np.float32)}
    for k in REF_TORCH_DTYPES:
        d[k] = SAMPLES_NP[k]
    d["é"] = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    d["10"] = np.array([[1, 2], [3, 4]], dtype=np.int16)
    d["big"] = np.random.default_rng(3).standard_normal((500, 33))
    d["a.b"] = np.ones((3, 1, 2), dtype=ml_dtypes.bfloat16)
    d["one"] = np.array([7], dtype=np.uint8)
    if with_empty:
        d["9"] = np.zeros((0,), dtype=np.float32)
        d["B"] = np.zeros((0, 3), dtype=np.int64)
    if with_0d:
        for k in ("float64", "float32", "bfloat16", "int64", "int8", "uint8", "bool"):
            d["s_" + k] = SAMPLES_NP[k].reshape(-1)[1:2].reshape(())
    return d


_REF_TO_TORCH = r"""
def to_torch(a):
    a = np.asarray(a).copy(order="C")
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)
def to_np(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()
"""


@pytest.fixture(scope="module")
def ref_written(run_ref_torch, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref_torch_written")
    inputs = ref_inputs(with_empty=True, with_0d=False)
    code = (
        _REF_TO_TORCH
        + f"""
OUTDIR = {str(out)!r}
tensors = {{k: to_torch(v) for k, v in INPUTS.items()}}
zt_torch.save_file(tensors, os.path.join(OUTDIR, "plain.zt"))
zt_torch.save_file(tensors, os.path.join(OUTDIR, "zstd.zt"), compression=True)
zt_torch.save_file(tensors, os.path.join(OUTDIR, "zstd9.zt"), compression=9)
with open(os.path.join(OUTDIR, "bytes.zt"), "wb") as f:
    f.write(zt_torch.save(tensors))
# a tied model via the reference's save_model
{TIED_SRC}
torch.manual_seed(0)
m = Tied()
zt_torch.save_model(m, os.path.join(OUTDIR, "model.zt"))
OUT = {{"model." + k: to_np(v) for k, v in m.state_dict().items()}}
RESULT = {{k: [str(t.dtype), list(t.shape)] for k, t in tensors.items()}}
"""
    )
    outs, result = run_ref_torch(code, inputs=inputs)
    return out, inputs, outs, result


TIED_SRC = """
class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(100, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.head = torch.nn.Linear(16, 100, bias=False)
        self.head.weight = self.emb.weight
"""


@pytest.mark.parametrize("fname", ["plain.zt", "zstd.zt", "zstd9.zt", "bytes.zt"])
def test_reference_torch_files_read_by_ours(ref_written, fname):
    out, inputs, _, result = ref_written
    p = out / fname
    expected = {k: np_to_torch(v) for k, v in inputs.items()}
    for k, t in expected.items():  # the reference saw the same tensors
        assert result[k] == [str(t.dtype), list(t.shape)], k
    for copy in (False, True):
        got = ztorch.load_file(p, copy=copy)
        assert_same_dicts(got, expected, f"{fname} copy={copy}", order=False)
    assert_same_dicts(ztorch.load(p.read_bytes()), expected, fname + " via load()", order=False)


def test_reference_save_model_file_loads_into_our_tied_model(ref_written):
    out, _, outs, _ = ref_written
    model = build(Tied, 5)
    missing, unexpected = ztorch.load_model(model, out / "model.zt")
    assert not missing and not unexpected
    assert model.head.weight.data_ptr() == model.emb.weight.data_ptr()
    for k, v in model.state_dict().items():
        assert_same(v, np_to_torch(outs["model." + k]), k)


@pytest.fixture(scope="module")
def ours_read_by_ref(run_ref_torch, tmp_path_factory):
    out = tmp_path_factory.mktemp("ours_torch_written")
    inputs = ref_inputs(with_empty=False, with_0d=True)
    tensors = {k: np_to_torch(v) for k, v in inputs.items()}
    ztorch.save_file(tensors, out / "plain.zt")
    ztorch.save_file(tensors, out / "zstd.zt", compression=True)
    ztorch.save_file(tensors, out / "meta.zt", metadata={"a": "b", "n": 1})
    (out / "bytes.bin").write_bytes(ztorch.save(tensors))
    ztorch.save_model(build(Tied, 0), out / "model.zt")
    code = (
        _REF_TO_TORCH
        + f"""
OUTDIR = {str(out)!r}
RESULT = {{}}
for fname in ("plain.zt", "zstd.zt", "meta.zt"):
    for copy in (False, True):
        got = zt_torch.load_file(os.path.join(OUTDIR, fname), copy=copy)
        tag = "%s-%s" % (fname, copy)
        RESULT[tag] = {{k: [str(t.dtype), list(t.shape)] for k, t in got.items()}}
        for k, t in got.items():
            OUT[tag + "/" + k] = to_np(t)
with open(os.path.join(OUTDIR, "bytes.bin"), "rb") as f:
    got = zt_torch.load(f.read())
RESULT["bytes"] = {{k: [str(t.dtype), list(t.shape)] for k, t in got.items()}}
for k, t in got.items():
    OUT["bytes/" + k] = to_np(t)
{TIED_SRC}
torch.manual_seed(5)
m = Tied()
RESULT["model"] = [sorted(x) for x in zt_torch.load_model(m, os.path.join(OUTDIR, "model.zt"))]
RESULT["model_tied"] = m.head.weight.data_ptr() == m.emb.weight.data_ptr()
for k, v in m.state_dict().items():
    OUT["model/" + k] = to_np(v)
"""
    )
    outs, result = run_ref_torch(code)
    return tensors, outs, result


@pytest.mark.parametrize(
    "tag", ["plain.zt-False", "plain.zt-True", "zstd.zt-False", "zstd.zt-True", "meta.zt-False", "bytes"]
)
def test_our_torch_files_read_by_reference(ours_read_by_ref, tag):
    tensors, outs, result = ours_read_by_ref
    seen = result[tag]
    assert set(seen) == set(tensors)
    for k, t in tensors.items():
        # the reference's torch load keeps 0-d tensors 0-d
        assert seen[k] == [str(t.dtype), list(t.shape)], k
        assert_same(np_to_torch(outs[f"{tag}/{k}"]), t, f"{tag}/{k}")


def test_our_save_model_file_loads_in_reference(ours_read_by_ref):
    _, outs, result = ours_read_by_ref
    assert result["model"] == [[], []]
    assert result["model_tied"] is True
    model = build(Tied, 0)
    for k, v in model.state_dict().items():
        assert_same(np_to_torch(outs["model/" + k]), v, k)
