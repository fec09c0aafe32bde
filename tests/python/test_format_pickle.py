"""PyTorch checkpoints (.pt/.pth/.bin/.pkl) read through ztensor.

Every file is written at test time by torch itself (``torch.save`` in both
serializations, ``torch.jit.save``, ``pickle.dump``) and every tensor is
compared bit-exactly with torch's own loader (``torch.load(weights_only=True)``
or ``torch.jit.load``) and with the tensors that were saved, through
``ztensor.torch.load_file`` (zero-copy and copy), ``ztensor.numpy.load_file``
and ``ztensor.Reader``.

Hostile files (code-execution payloads, pickle bombs, truncations, bad
offsets and views) are opened in a child interpreter, so that a crash fails
the test instead of killing pytest; the child reports its peak memory.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ztensor  # noqa: E402
import ztensor.numpy as ztnp  # noqa: E402
import ztensor.torch as zt  # noqa: E402
from torch_common import TORCH_DTYPES  # noqa: E402
from ztensor import Reader, ZTensorError  # noqa: E402

PYTHON = sys.executable

#: dtypes whose tensors torch writes with _rebuild_tensor_v2 and a typed storage
#: (torch's own legacy loader cannot read the others back).
V2_DTYPES = [
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
    "complex64",
    "complex128",
]
SERIALIZATIONS = ["zip", "legacy"]

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def make(dtype: torch.dtype, shape, seed: int = 0) -> torch.Tensor:
    """Random bit patterns of `dtype` (NaNs and infinities included)."""
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape)) if len(shape) else 1
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), generator=g).bool().reshape(shape)
    width = torch.empty(0, dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * width,), generator=g, dtype=torch.uint8)
    return raw.view(dtype).reshape(shape)


def raw_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.bool:
        t = t.view(torch.uint8)
    return t.view(torch.uint8).numpy().tobytes()


def assert_same(actual, expected, what=""):
    __tracebackhide__ = True
    assert isinstance(actual, torch.Tensor), f"{what}: not a tensor: {type(actual)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    assert raw_bytes(actual) == raw_bytes(expected), f"{what}: values differ"


def assert_same_dicts(actual: dict, expected: dict, what=""):
    __tracebackhide__ = True
    assert sorted(actual) == sorted(expected), f"{what}: names {sorted(actual)} != {sorted(expected)}"
    for k in expected:
        assert_same(actual[k], expected[k], f"{what}[{k!r}]")


def flatten(obj, prefix="") -> dict:
    """The dotted names the reader gives the tensors of a torch.load result."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def save(obj, path: Path, serialization: str, **kw) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=(serialization == "zip"), **kw)
    return path


def load_all_ways(path) -> dict:
    """Loads through every front end; checks they agree; returns the torch dict."""
    ours = zt.load_file(path)
    ours_copy = zt.load_file(path, copy=True)
    assert_same_dicts(ours_copy, ours, "copy=True vs copy=False")
    with Reader(path) as r:
        assert r.format == "pickle"
        assert sorted(r.keys()) == sorted(ours)
        assert_same_dicts(r.load_torch(), ours, "Reader.load_torch")
    arrays = ztnp.load_file(path)
    assert sorted(arrays) == sorted(ours)
    for k, a in arrays.items():
        t = ours[k]
        assert tuple(a.shape) == tuple(t.shape), k
        assert np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes() == raw_bytes(t), k
    return ours


# ---------------------------------------------------------------------------
# every dtype, both serializations
# ---------------------------------------------------------------------------


def every_dtype() -> dict:
    return {name: make(dt, (3, 5), seed=i) for i, (name, dt) in enumerate(TORCH_DTYPES.items())}


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_every_dtype(serialization, tmp_path):
    tensors = every_dtype()
    path = save(tensors, tmp_path / "all.pt", serialization)
    ours = load_all_ways(path)
    assert_same_dicts(ours, tensors, "saved tensors")
    if serialization == "zip":
        assert_same_dicts(ours, torch.load(path, weights_only=True), "torch.load")
    with Reader(path) as r:
        md = r.metadata("complex64")
        assert (md.dtype, md.type, md.shape) == ("float32", "complex64", [3, 5])
        md = r.metadata("float8_e4m3fnuz")
        assert (md.dtype, md.type) == ("uint8", "f8_e4m3fnuz")
        assert r.metadata("uint16").dtype == "uint16"


def test_legacy_matches_torch_load(tmp_path):
    tensors = {name: make(TORCH_DTYPES[name], (4, 3), seed=7) for name in V2_DTYPES}
    tensors["t"] = tensors["float32"].t()
    path = save(tensors, tmp_path / "legacy.pt", "legacy")
    assert_same_dicts(load_all_ways(path), torch.load(path, weights_only=True), "torch.load")


@pytest.mark.parametrize("copy", [False, True], ids=["zerocopy", "copy"])
@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
def test_each_dtype_with_views(dtype, copy, tmp_path):
    base = make(TORCH_DTYPES[dtype], (6, 7), seed=3)
    tensors = {
        "base": base,
        "t": base.t(),
        "corner": base[1:, 2:],
        "row": base[4],
        "cols": base[:, ::3],
        "scalar": base[2, 3],
    }
    for serialization in SERIALIZATIONS:
        path = save(tensors, tmp_path / f"{serialization}.pt", serialization)
        ours = zt.load_file(path, copy=copy)
        assert_same_dicts(ours, {k: v.contiguous() for k, v in tensors.items()}, serialization)


# ---------------------------------------------------------------------------
# layouts: 0-d, empty, views, expand, shared storages
# ---------------------------------------------------------------------------


def layouts() -> dict:
    x = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    return {
        "x": x,
        "t": x.t(),
        "sub": x[1:, 2:],
        "step": x[::2, 1::3],
        "row": x[3],
        "tail": x.reshape(-1)[37:],
        "col": x[:, 4],
        "expand": torch.tensor([1.5, -2.0, 3.0]).expand(4, 3),
        "expand_scalar": torch.tensor(7, dtype=torch.int16).expand(2, 3),
        "scalar": torch.tensor(3.25, dtype=torch.float64),
        "scalar_view": x[2, 2],
        "empty": torch.empty(0, 3),
        "empty_view": x[:0],
        "empty_i8": torch.empty(2, 0, 4, dtype=torch.int8),
        "permuted": torch.arange(24, dtype=torch.int32).reshape(2, 3, 4).permute(2, 0, 1),
        "unsqueezed": x[1:3].unsqueeze(1),
    }


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_layouts(serialization, tmp_path):
    tensors = layouts()
    path = save(tensors, tmp_path / "layouts.pt", serialization)
    ours = load_all_ways(path)
    assert_same_dicts(ours, {k: v.contiguous() for k, v in tensors.items()}, "saved")
    assert_same_dicts(ours, torch.load(path, weights_only=True), "torch.load")


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_shared_storage_is_shared_zero_copy(serialization, tmp_path):
    x = torch.arange(40, dtype=torch.float32).reshape(4, 10)
    tensors = {"x": x, "row2": x[2], "tail": x.reshape(-1)[15:], "alias": x}
    path = save(tensors, tmp_path / "shared.pt", serialization)
    ours = zt.load_file(path)
    assert_same_dicts(ours, {k: v.contiguous() for k, v in tensors.items()})
    base = ours["x"].data_ptr()
    assert ours["row2"].data_ptr() == base + 20 * 4
    assert ours["tail"].data_ptr() == base + 15 * 4
    assert ours["alias"].data_ptr() == base
    # copy=True: independent tensors
    copies = zt.load_file(path, copy=True)
    copies["x"][0, 0] = 99.0
    assert copies["alias"][0, 0] == 0.0
    # zero-copy loads are copy-on-write views of the file: writes never reach it
    before = path.read_bytes()
    ours["x"][0, 0] = 123.0
    assert path.read_bytes() == before


def test_stored_zip_storages_are_zero_copy_ranges_of_the_file(tmp_path):
    x = make(torch.float32, (64, 64), seed=1)
    path = save({"x": x, "xt": x.t()}, tmp_path / "z.pt", "zip")
    with Reader(path) as r:
        assert r.metadata("x").components["data"]["encoding"] == "raw"
        assert r.metadata("xt").components["data"]["encoding"] == "strided"
        off = r.metadata("x").components["data"]["offset"]
        with zipfile.ZipFile(path) as z:
            info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
        assert path.read_bytes()[off : off + x.nbytes] == raw_bytes(x)
        assert info.compress_type == zipfile.ZIP_STORED


# ---------------------------------------------------------------------------
# names: nested containers, parameters, modules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_nested_containers_get_dotted_names(serialization, tmp_path):
    a, b, c = make(torch.float32, (2,), 1), make(torch.int64, (3,), 2), make(torch.float16, (2, 2), 3)
    obj = {
        "model": collections.OrderedDict([("layer.weight", a), ("bias", b)]),
        "list": [a, (b, {"deep": [c]})],
        "optimizer": {"state": {0: {"exp_avg": c, "step": 5}}, "param_groups": [{"lr": 0.1}]},
        "epoch": 3,
        "name": "run-1",
        "none": None,
    }
    path = save(obj, tmp_path / "nested.pt", serialization)
    ours = load_all_ways(path)
    expected = flatten(torch.load(path, weights_only=True))
    assert sorted(ours) == sorted(
        [
            "model.layer.weight",
            "model.bias",
            "list.0",
            "list.1.0",
            "list.1.1.deep.0",
            "optimizer.state.0.exp_avg",
        ]
    )
    assert_same_dicts(ours, expected, "torch.load")


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_bare_tensor_is_named_empty_string(serialization, tmp_path):
    x = make(torch.bfloat16, (3, 4), 9)
    path = save(x, tmp_path / "bare.pt", serialization)
    ours = load_all_ways(path)
    assert list(ours) == [""]
    assert_same(ours[""], x)


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_top_level_list_and_tuple(serialization, tmp_path):
    x, y = make(torch.float32, (2, 3), 1), make(torch.int8, (5,), 2)
    path = save([x, (y, x)], tmp_path / "list.pt", serialization)
    assert_same_dicts(load_all_ways(path), {"0": x, "1.0": y, "1.1": x})


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_parameters_are_unwrapped(serialization, tmp_path):
    p = torch.nn.Parameter(make(torch.float32, (4, 2), 5))
    q = torch.nn.Parameter(torch.arange(6, dtype=torch.float64).reshape(2, 3).t(), requires_grad=False)
    path = save({"p": p, "q": q}, tmp_path / "params.pt", serialization)
    ours = load_all_ways(path)
    assert_same_dicts(ours, {"p": p.detach(), "q": q.detach().contiguous()})
    assert not isinstance(ours["p"], torch.nn.Parameter)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.emb = torch.nn.Embedding(10, 6)
        self.head = torch.nn.Linear(6, 10, bias=False)
        self.head.weight = self.emb.weight  # tied
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(6, 6) for _ in range(2)])
        self.register_buffer("steps", torch.tensor(12, dtype=torch.int64))

    def forward(self, x):
        return self.head(self.blocks[1](self.blocks[0](self.emb(x)))) + self.steps


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_module_state_dict(serialization, tmp_path):
    torch.manual_seed(0)
    net = Net()
    net.bn.running_mean.uniform_()
    sd = net.state_dict()
    path = save(sd, tmp_path / "net.pth", serialization)
    ours = load_all_ways(path)
    assert_same_dicts(ours, sd, "state_dict")
    assert_same_dicts(ours, torch.load(path, weights_only=True), "torch.load")
    # tied weights share bytes, zero-copy
    assert ours["head.weight"].data_ptr() == ours["emb.weight"].data_ptr()
    # the loaded dict fits the module back
    fresh = Net()
    fresh.load_state_dict(ours)
    assert_same_dicts(fresh.state_dict(), sd)


@pytest.mark.filterwarnings("ignore:.*zTensor does not interpret")  # tested below
def test_whole_pickled_module_yields_its_state_dict(tmp_path):
    """torch.save(model) pickles the module object itself; the reader never
    imports its class but still finds its parameters under state_dict names."""
    torch.manual_seed(1)
    net = Net()
    path = tmp_path / "model.pt"
    torch.save(net, path)
    ours = zt.load_file(path)
    assert_same_dicts(ours, net.state_dict())


class Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.bn = torch.nn.BatchNorm1d(2)
        self.register_buffer("buf", torch.arange(4))

    def forward(self, x):
        return self.bn(self.fc(x)) + self.buf.sum()


def test_torchscript_archive(tmp_path):
    import warnings

    torch.manual_seed(2)
    m = Scripted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(m)
        path = tmp_path / "scripted.pt"
        torch.jit.save(scripted, str(path))
        reference = torch.jit.load(str(path)).state_dict()
    ours = load_all_ways(path)
    assert_same_dicts(ours, reference, "torch.jit.load")
    assert_same_dicts(ours, m.state_dict(), "module")


def test_torchscript_constants(tmp_path):
    import warnings

    c = torch.arange(5.0) * 1.5

    def f(x):
        return x + c

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(f, torch.zeros(5))
        path = tmp_path / "traced.pt"
        torch.jit.save(traced, str(path))
    ours = load_all_ways(path)
    assert_same_dicts(ours, {"constants.0": c})


# ---------------------------------------------------------------------------
# pickle protocols, compression, byte order, plain pickles
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_pickle_protocols(protocol, serialization, tmp_path):
    tensors = {
        "a": make(torch.float32, (3, 4), 1),
        "b": {"c": [make(torch.int16, (2,), 2)]},
        "d": make(torch.complex64, (2, 2), 3).t(),
        "meta": {"k": "v", "n": 1.5, "b": b"xyz"},
    }
    path = save(tensors, tmp_path / f"p{protocol}.pt", serialization, pickle_protocol=protocol)
    ours = load_all_ways(path)
    # torch's weights-only unpickler knows protocol 2 only; this file is our own
    assert_same_dicts(ours, flatten(torch.load(path, weights_only=False)), "torch.load")


def test_deflated_zip_members(tmp_path):
    tensors = {
        **layouts(),
        "bf": make(torch.bfloat16, (5, 5), 4),
        "bf_t": make(torch.bfloat16, (5, 5), 4).t(),
    }
    plain = save(tensors, tmp_path / "plain.pt", "zip")
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    with zipfile.ZipFile(deflated) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    ours = load_all_ways(deflated)
    assert_same_dicts(ours, {k: v.contiguous() for k, v in tensors.items()})
    with Reader(deflated) as r:
        assert r.metadata("x").components["data"]["encoding"] == "deflate"
        assert r.metadata("t").components["data"]["encoding"] == "strided"


def test_big_endian_zip_checkpoint(tmp_path):
    """A checkpoint whose byteorder record says "big" (as written on a
    big-endian machine): every storage is byte-swapped on read."""
    tensors = {
        "f32": make(torch.float32, (3, 4), 1),
        "i64": make(torch.int64, (5,), 2),
        "c128": make(torch.complex128, (2,), 3),
        "u8": make(torch.uint8, (7,), 4),
        "bf16": make(torch.bfloat16, (4, 2), 5),
    }
    tensors["f32_t"] = tensors["f32"].t()
    path = save(tensors, tmp_path / "little.pt", "zip")
    widths = {}
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        prefix = pkl[: -len("data.pkl")]
    # storage keys follow save order; one storage per distinct tensor
    for key, name in enumerate(["f32", "i64", "c128", "u8", "bf16"]):
        t = tensors[name]
        widths[f"{prefix}data/{key}"] = t.element_size() // (2 if t.is_complex() else 1)
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename in widths:
                w = widths[info.filename]
                data = np.frombuffer(data, dtype=f"<u{w}").byteswap().tobytes() if w > 1 else data
            if info.filename.endswith("/byteorder"):
                data = b"big"
            dst.writestr(info, data)
    expected = torch.load(big, weights_only=True)
    assert_same_dicts(expected, {k: v.contiguous() for k, v in tensors.items()}, "torch.load of big")
    assert_same_dicts(load_all_ways(big), expected, "big-endian")


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_plain_pickle_of_tensors(protocol, tmp_path):
    """pickle.dump stores each storage by value inside the pickle (as a
    nested legacy checkpoint in a byte string), read zero-copy."""
    tensors = {
        "w": make(torch.float32, (4, 3), 1),
        "b": make(torch.int64, (3,), 2),
        "bf": make(torch.bfloat16, (2, 2), 3),
    }
    tensors["wt"] = tensors["w"].t()
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as f:
        pickle.dump(tensors, f, protocol=protocol)
    ours = load_all_ways(path)
    assert_same_dicts(ours, {k: v.contiguous() for k, v in tensors.items()})
    with open(path, "rb") as f:
        assert_same_dicts(ours, {k: v.contiguous() for k, v in pickle.load(f).items()})
    with Reader(path) as r:
        assert r.metadata("w").components["data"]["encoding"] == "raw"


def test_plain_pickle_protocol_2_is_refused_per_tensor(tmp_path):
    """Protocol 2 stores byte strings as latin-1 text: not read, with a message."""
    path = tmp_path / "p2.pkl"
    path.write_bytes(pickle.dumps({"w": torch.ones(3)}, protocol=2))
    with Reader(path) as r:
        assert r.keys() == ["w"]
        with pytest.raises(ZTensorError, match="protocol 2"):
            r.read_tensor("w")


def test_files_without_tensors_open_empty(tmp_path):
    path = save({"epoch": 3, "lr": [0.1, 0.01], "name": "x"}, tmp_path / "meta.pt", "zip")
    with Reader(path) as r:
        assert r.format == "pickle"
        assert len(r) == 0
    assert zt.load_file(path) == {}
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    assert ztnp.load_file(path) == {}


# ---------------------------------------------------------------------------
# unsupported things fail for that tensor only
# ---------------------------------------------------------------------------


def test_quantized_sparse_and_complex32_are_refused_per_tensor(tmp_path):
    good = make(torch.float32, (3,), 1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated in torch
        q = torch.quantize_per_tensor(torch.tensor([0.5, 1.0]), 0.1, 0, torch.qint8)
        chalf = torch.zeros(2, dtype=torch.complex32)  # experimental in torch
    sparse = torch.eye(3).to_sparse()
    path = save({"good": good, "q": q, "sparse": sparse, "chalf": chalf}, tmp_path / "mixed.pt", "zip")
    with Reader(path) as r:
        assert sorted(r.keys()) == ["chalf", "good", "q", "sparse"]
        assert_same(torch.from_numpy(r.read_tensor("good")), good)
        for name, word in [("q", "quantized"), ("sparse", "sparse"), ("chalf", "complex32")]:
            with pytest.raises(ZTensorError) as e:
                r.read_tensor(name)
            msg = str(e.value)
            assert word in msg and name in msg and "mixed.pt" in msg, msg
    with pytest.raises(ZTensorError):
        zt.load_file(path)


class Sub(torch.Tensor):
    """A tensor subclass (pickled by class name; never imported on load)."""


@pytest.mark.filterwarnings("ignore:.*zTensor does not interpret")  # tested below
def test_subclasses_buffers_meta_and_nested_tensors(tmp_path):
    import warnings

    sub = torch.arange(4.0).as_subclass(Sub)
    sub.foo = 1
    attr = torch.arange(6.0).reshape(2, 3)
    attr.note = "kept in the tensor's __dict__"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
    obj = {
        "sub": sub,
        "attr": attr,
        "buf": torch.nn.Buffer(torch.ones(2)),
        "meta": torch.empty(3, device="meta"),
        "nested": nested,
    }
    path = tmp_path / "misc.pt"
    torch.save(obj, path)
    with Reader(path) as r:
        assert sorted(r.keys()) == sorted(obj)
        for name in ("sub", "attr", "buf"):
            assert_same(torch.from_numpy(r.read_tensor(name)), obj[name].as_subclass(torch.Tensor), name)
        with pytest.raises(ZTensorError, match="meta device"):
            r.read_tensor("meta")
        with pytest.raises(ZTensorError, match="_rebuild_nested_tensor"):
            r.read_tensor("nested")


# ---------------------------------------------------------------------------
# hand-built checkpoints (for views and storages torch would never write)
# ---------------------------------------------------------------------------


class _StorageRef:
    def __init__(self, key, cls, numel):
        self.key, self.cls, self.numel = key, cls, numel


class _Rebuild:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def build_checkpoint(path: Path, obj, storages: dict, *, data_pkl: bytes | None = None) -> Path:
    """A zip checkpoint with `obj` pickled as torch would (storages as
    persistent ids) and the given storage members."""
    if data_pkl is None:
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(obj)
        data_pkl = buf.getvalue()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")
    return path


def test_hand_built_views_are_checked_against_their_storage(tmp_path):
    s = _StorageRef("0", torch.FloatStorage, 12)
    data = np.arange(12, dtype="<f4").tobytes()
    obj = {
        "ok": _Rebuild(s, 0, (3, 4), (4, 1)),
        "ok_t": _Rebuild(s, 0, (4, 3), (1, 4)),
        "ok_offset": _Rebuild(s, 10, (2,), (1,)),
        "too_big": _Rebuild(s, 0, (4, 4), (4, 1)),
        "offset_past_end": _Rebuild(s, 12, (1,), (1,)),
        "stride_past_end": _Rebuild(s, 0, (2, 2), (1, 11)),
        "huge_stride": _Rebuild(s, 0, (2,), (2**62,)),
        "overflow": _Rebuild(s, 0, (2**40, 2**40), (1, 1)),
        "negative_stride": _Rebuild(s, 4, (2,), (-1,)),
        "negative_size": _Rebuild(s, 0, (-2,), (1,)),
        "rank_mismatch": _Rebuild(s, 0, (2, 2), (1,)),
        "missing_storage": _Rebuild(_StorageRef("7", torch.FloatStorage, 4), 0, (4,), (1,)),
        "unknown_storage_type": _Rebuild(_StorageRef("1", collections.OrderedDict, 4), 0, (4,), (1,)),
        "quantized_storage": _Rebuild(_StorageRef("2", torch.QInt8Storage, 4), 0, (4,), (1,)),
    }
    path = build_checkpoint(tmp_path / "views.pt", obj, {"0": data, "1": data, "2": data})
    x = torch.arange(12, dtype=torch.float32)
    with Reader(path) as r:
        assert sorted(r.keys()) == sorted(obj)
        assert_same(torch.from_numpy(r.read_tensor("ok")), x.reshape(3, 4))
        assert_same(torch.from_numpy(r.read_tensor("ok_t")), x.reshape(3, 4).t().contiguous())
        assert_same(torch.from_numpy(r.read_tensor("ok_offset")), x[10:])
        for name in obj:
            if name.startswith("ok"):
                continue
            with pytest.raises(ZTensorError) as e:
                r.read_tensor(name)
            assert name in str(e.value), str(e.value)


def test_declared_storage_larger_than_its_member(tmp_path):
    s = _StorageRef("0", torch.FloatStorage, 100)
    path = build_checkpoint(
        tmp_path / "short.pt", {"x": _Rebuild(s, 0, (2,), (1,))}, {"0": np.zeros(4, "<f4").tobytes()}
    )
    with Reader(path) as r, pytest.raises(ZTensorError, match="declares 400 bytes"):
        r.read_tensor("x")


# ---------------------------------------------------------------------------
# hostile files, opened in a child process
# ---------------------------------------------------------------------------

RSS_LIMIT_MB = 300

CHILD = r"""
import json, os, resource, sys, time

def peak_rss_mb():
    # VmHWM: this process's own peak (ru_maxrss may carry the parent's over exec)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

import numpy as np
from ztensor import Reader, ZTensorError
import ztensor.numpy as ztnp

def outcome(f):
    try:
        f()
        return None
    except ZTensorError as e:
        return ["ZTensorError", str(e)[:500]]
    except OSError as e:
        return ["OSError", str(e)[:500]]
    except BaseException as e:
        return [type(e).__name__, str(e)[:500]]

def attempt(path):
    out = {"names": None, "read": {}, "error": None, "load_file": None}

    def read_all():
        with Reader(path) as r:
            out["names"] = r.keys()
            for n in r.keys():
                try:
                    a = r.read_tensor(n)
                    c = r.read_tensor(n, copy=True)
                    out["read"][n] = ["ok", a.dtype.name, list(a.shape),
                                      np.ascontiguousarray(c).reshape(-1).view(np.uint8).tobytes().hex()[:64]]
                except ZTensorError as e:
                    out["read"][n] = ["ZTensorError", str(e)[:500]]

    out["error"] = outcome(read_all)
    out["load_file"] = outcome(lambda: ztnp.load_file(path))
    return out

results = {}
for path in json.load(open(sys.argv[1])):
    t0 = time.time()
    results[path] = attempt(path)
    results[path]["secs"] = time.time() - t0
    results[path]["rss_mb"] = peak_rss_mb()
results["__rss_mb__"] = peak_rss_mb()
json.dump(results, open(sys.argv[2], "w"))
"""


def run_child(paths, tmp_path, timeout=600) -> dict:
    """Opens and reads every file in a fresh interpreter (no torch loaded);
    returns its per-file outcomes. Fails on a crash or too much memory."""
    script = tmp_path / "_child.py"
    script.write_text(CHILD)
    listing = tmp_path / "_paths.json"
    listing.write_text(json.dumps([str(p) for p in paths]))
    out = tmp_path / "_results.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(ztensor.__file__).resolve().parent.parent)]
        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    proc = subprocess.run(
        [PYTHON, str(script), str(listing), str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, f"child died (returncode {proc.returncode}):\n{proc.stderr[-4000:]}"
    results = json.loads(out.read_text())
    rss = results.pop("__rss_mb__")
    first_big = next((p for p, r in results.items() if r["rss_mb"] >= RSS_LIMIT_MB), None)
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB, first reached with {first_big}"
    for path, r in results.items():
        for what in ("error", "load_file"):
            assert r[what] is None or r[what][0] in ("ZTensorError", "OSError"), (path, what, r[what])
        assert r["secs"] < 60, (path, r["secs"])
    return results


class Evil:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalEvil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


class PopenEvil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.marker],))


class EvilStorage:
    """A tensor whose *storage* argument is a code-execution payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (
            torch._utils._rebuild_tensor_v2,
            (Evil(self.marker), 0, (2,), (1,), False, collections.OrderedDict()),
        )


#: Loads each file the usual way (torch.load(weights_only=False), or pickle.load
#: with a persistent_load that ignores storages) and prints which ones ran
#: their payload, i.e. created the marker.
RUNS_PAYLOAD = r"""
import os, pickle, sys, time, warnings
import torch
warnings.simplefilter("ignore")
marker = sys.argv[1]

class U(pickle.Unpickler):
    def persistent_load(self, pid):
        return None

for path in sys.argv[2:]:
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                U(f).load()
        else:
            torch.load(path, weights_only=False)
    except Exception:
        pass
    for _ in range(100):  # os.system and Popen may finish a little later
        if os.path.exists(marker):
            break
        time.sleep(0.02)
    print(path if os.path.exists(marker) else "", flush=True)
    if os.path.exists(marker):
        os.unlink(marker)
"""


def assert_payloads_are_real(paths, marker, tmp_path):
    """An ordinary loader runs every file's payload (so refusing them matters)."""
    script = tmp_path / "_runs_payload.py"
    script.write_text(RUNS_PAYLOAD)
    proc = subprocess.run(
        [PYTHON, str(script), str(marker), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path),
    )
    ran = set(proc.stdout.split())
    assert ran == {str(p) for p in paths}, (sorted(set(map(str, paths)) - ran), proc.stderr[-2000:])


def assert_refused(error, names, what=""):
    """`error` is a child outcome (or a message) refusing a payload by its globals."""
    __tracebackhide__ = True
    if isinstance(error, list):
        assert error[0] == "ZTensorError", (what, error)
        error = error[1]
    for name in names:
        assert name in error, (what, name, error)
    assert "refused" in error and "Nothing was run" in error, (what, error)


def test_code_execution_payloads_are_refused(tmp_path):
    """A checkpoint that would run code under pickle/torch.load fails as a whole,
    naming the global, whether or not it also holds real tensors; nothing runs."""
    marker = tmp_path / "pwned"
    good = make(torch.float32, (2, 3), 1)
    payloads = {  # name -> (how to write it, globals the error must name)
        "zip.pt": (
            lambda p: save({"good": good, "evil": Evil(marker), "e2": [EvalEvil(marker)]}, p, "zip"),
            ["posix.system", "__builtin__.eval"],
        ),  # protocol 2 spells builtins so
        "legacy.pt": (lambda p: save({"good": good, "evil": Evil(marker)}, p, "legacy"), ["posix.system"]),
        # protocol 2 spells subprocess.Popen as Python 2's commands.Popen
        "popen.pt": (lambda p: save({"good": good, "p": PopenEvil(marker)}, p, "zip"), ["commands.Popen"]),
        "popen4.pkl": (
            lambda p: p.write_bytes(pickle.dumps({"p": PopenEvil(marker)}, protocol=4)),
            ["subprocess.Popen"],
        ),
        "plain.pkl": (
            lambda p: p.write_bytes(pickle.dumps({"good": good, "evil": Evil(marker)})),
            ["posix.system"],
        ),
        "plain0.pkl": (
            lambda p: p.write_bytes(pickle.dumps([Evil(marker), EvalEvil(marker)], protocol=0)),
            ["posix.system", "__builtin__.eval"],
        ),
        "plain2.pkl": (
            lambda p: p.write_bytes(pickle.dumps([EvalEvil(marker)], protocol=2)),
            ["__builtin__.eval"],
        ),
        "evil_storage.pt": (
            lambda p: save({"good": good, "bad": EvilStorage(marker)}, p, "zip"),
            ["posix.system"],
        ),
        "only_evil.pt": (lambda p: save(Evil(marker), p, "zip"), ["posix.system"]),
        "only_evil_legacy.pt": (lambda p: save(Evil(marker), p, "legacy"), ["posix.system"]),
    }
    paths = []
    for name, (make_file, _) in payloads.items():
        make_file(tmp_path / name)
        paths.append(tmp_path / name)
    assert_payloads_are_real(paths, marker, tmp_path)
    assert not marker.exists()

    results = run_child(paths, tmp_path)
    assert not marker.exists(), "a pickled payload was executed"
    for name, (_, globals_) in payloads.items():
        r = results[str(tmp_path / name)]
        assert r["names"] is None, (name, r)  # the Reader never opened
        assert_refused(r["error"], globals_, name)
        assert_refused(r["load_file"], globals_, name)
        assert str(tmp_path / name) in r["error"][1], r["error"]


def _payload_pickles(marker: Path) -> dict:
    """Hand-made payloads (name -> (opcodes, global)) through every opcode
    that names a global, for protocols 0, 2 and 4."""
    m = str(marker).encode()
    code = b"open('" + m + b"', 'w').close()"
    u = lambda s: b"\x8c" + bytes([len(s)]) + s  # noqa: E731  SHORT_BINUNICODE
    return {
        # protocol 0: GLOBAL, text arguments, REDUCE
        "p0_global": (b"cos\nsystem\n(S'touch " + m + b"'\ntR", "os.system"),
        "p0_inst": (b"(S'touch " + m + b"'\nios\nsystem\n", "os.system"),
        # protocol 2: the Python 2 module name of builtins
        "p2_global": (
            b"c__builtin__\neval\nX" + struct.pack("<I", len(code)) + code + b"\x85R",
            "__builtin__.eval",
        ),
        "p2_obj": (
            b"(csubprocess\nPopen\n]q\x01(X\x05\x00\x00\x00touchX" + struct.pack("<I", len(m)) + m + b"eo",
            "subprocess.Popen",
        ),
        # protocol 4: STACK_GLOBAL from the stack and from the memo
        "p4_stack_global": (u(b"builtins") + u(b"exec") + b"\x93" + u(code) + b"\x85R", "builtins.exec"),
        "p4_memo": (
            u(b"posix")
            + b"\x94"
            + u(b"getcwd")
            + b"\x93"
            + b"0h\x00"
            + u(b"system")
            + b"\x93"
            + u(b"touch " + m)
            + b"\x85R",
            "posix.system",
        ),
        # a dotted name resolved attribute by attribute
        "p4_dotted": (
            u(b"torch") + u(b"serialization.load") + b"\x93" + u(b"x.pt") + b"\x85R",
            "torch.serialization.load",
        ),
    }


@pytest.mark.parametrize("container", ["zip", "legacy", "pkl"])
def test_hand_made_payloads_are_refused(container, tmp_path):
    marker = tmp_path / "pwned"
    paths, expected = [], {}
    for name, (payload, global_) in _payload_pickles(marker).items():
        # {"evil": payload, "x": tensor}: the payload runs before the tensor is read
        body = b"\x80\x02}(X\x04\x00\x00\x00evil" + payload + b"X\x01\x00\x00\x00x"
        if container == "zip":
            path = _zip_with_pickle(tmp_path / f"{name}.pt", body + TENSOR_PKL + b"u.")
        elif container == "legacy":
            path = tmp_path / f"{name}.pt"
            path.write_bytes(_legacy_with_pickle(body + LEGACY_TENSOR_PKL + b"u."))
        else:
            path = tmp_path / f"{name}.pkl"
            path.write_bytes(b"\x80\x02" + payload + b".")
        paths.append(path)
        expected[path] = global_
    # real payloads (the dotted torch.serialization.load one loads a missing file instead)
    assert_payloads_are_real([p for p in paths if "dotted" not in p.name], marker, tmp_path)
    for path, global_ in expected.items():
        for load in (Reader, zt.load_file, ztnp.load_file, lambda p: Reader(p, strict=True)):
            with pytest.raises(ZTensorError) as e:
                load(path)
            assert_refused(str(e.value), [global_], path.name)
            assert str(path) in str(e.value)
    assert not marker.exists()


def _legacy_with_pickle(main: bytes) -> bytes:
    """A legacy torch.save file whose main pickle is `main`, with storage '0'
    (4 float32) as LEGACY_TENSOR_PKL expects."""
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    info = pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
        protocol=2,
    )
    keys = pickle.dumps(["0"], protocol=2)
    data = struct.pack("<Q", 4) + np.arange(4, dtype="<f4").tobytes()
    return magic + b"\x80\x02M\xe9\x03." + info + main + keys + data


def test_legacy_helper_matches_torch(tmp_path):
    """_legacy_with_pickle writes what torch's legacy loader reads."""
    path = tmp_path / "t.pt"
    path.write_bytes(_legacy_with_pickle(b"\x80\x02}(X\x01\x00\x00\x00x" + LEGACY_TENSOR_PKL + b"u."))
    expected = torch.load(path, weights_only=True)
    assert_same(expected["x"], torch.arange(4, dtype=torch.float32))
    assert_same_dicts(zt.load_file(path), expected)


# ---------------------------------------------------------------------------
# globals the reader does not interpret: a warning, or an error when strict
# ---------------------------------------------------------------------------


def _recorded(f):
    """f()'s result and the UserWarnings it emitted."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = f()
    return result, [w for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_unknown_globals_warn_once_and_load_like_torch(serialization, tmp_path):
    tensors = {"w": make(torch.float32, (3, 4), 1), "b": make(torch.bfloat16, (4,), 2)}
    obj = {
        "state_dict": tensors,
        "args": argparse.Namespace(lr=0.1, layers=[1, 2]),
        "step": np.float64(3.0),
        "epoch": 7,
    }
    path = save(obj, tmp_path / "ckpt.pt", serialization)
    expected = flatten(torch.load(path, weights_only=False))
    with pytest.raises(Exception, match="Namespace"):
        torch.load(path, weights_only=True)  # what torch users get by default
    for load in (
        lambda: zt.load_file(path),
        lambda: zt.load_file(path, copy=True),
        lambda: ztnp.load_file(path),
        lambda: Reader(path).load_torch(),
    ):
        result, warned = _recorded(load)
        assert len(warned) == 1, [str(w.message) for w in warned]
        msg = str(warned[0].message)
        assert "argparse.Namespace" in msg and "multiarray.scalar" in msg and str(path) in msg, msg
        assert warned[0].filename == __file__, warned[0].filename  # points at the caller
        assert sorted(result) == sorted(expected)
        for k, v in result.items():
            if isinstance(v, np.ndarray):  # bit for bit, bfloat16 included
                assert v.shape == tuple(expected[k].shape), k
                flat = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
                assert flat.tobytes() == raw_bytes(expected[k]), k
            else:
                assert_same(v, expected[k], k)
    for load in (
        lambda: zt.load_file(path, strict=True),
        lambda: ztnp.load_file(path, strict=True),
        lambda: Reader(path, strict=True),
    ):
        with pytest.raises(ZTensorError) as e:
            load()
        msg = str(e.value)
        assert "strict" in msg and "argparse.Namespace" in msg and str(path) in msg, msg


def test_whole_pickled_module_warns_naming_its_classes(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(Net(), path)
    _, warned = _recorded(lambda: zt.load_file(path))
    assert len(warned) == 1
    msg = str(warned[0].message)
    assert "Net" in msg and "torch.nn.modules.linear.Linear" in msg, msg


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_clean_checkpoints_do_not_warn(serialization, tmp_path):
    """What torch.save writes for tensors, parameters, state dicts, tensors
    with attributes, devices and plain containers: no warning, strict works."""
    attr = make(torch.float32, (2,), 3)
    attr.note = "kept in the tensor's __dict__"
    obj = {
        "model": Net().state_dict(),
        "p": torch.nn.Parameter(make(torch.float32, (2,), 4)),
        "attr": attr,
        "dev": torch.device("cpu"),
        "counts": collections.Counter("aab"),
        "dd": collections.defaultdict(int, a=1),
        "lr": [0.1, (1, 2)],
        "s": {1, 2},
        "x": make(torch.float16, (3,), 5),
    }
    path = save(obj, tmp_path / "clean.pt", serialization)
    expected = flatten(torch.load(path, weights_only=False))  # weights_only refuses defaultdict
    for load in (
        lambda: zt.load_file(path),
        lambda: zt.load_file(path, strict=True),
        lambda: Reader(path, strict=True).load_torch(),
    ):
        result, warned = _recorded(load)
        assert warned == [], [str(w.message) for w in warned]
        assert_same_dicts(result, expected)


def test_clean_torchscript_and_other_formats_do_not_warn(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script and save are deprecated
        path = tmp_path / "scripted.pt"
        torch.jit.save(torch.jit.script(Scripted()), path)
    _, warned = _recorded(lambda: Reader(path, strict=True))
    assert warned == []
    st = tmp_path / "x.safetensors"
    zt.save_file({"x": torch.ones(2)}, st)
    result, warned = _recorded(lambda: zt.load_file(st, strict=True))
    assert warned == [] and list(result) == ["x"]


def _zip_with_pickle(path: Path, data_pkl: bytes) -> Path:
    return build_checkpoint(path, None, {"0": np.arange(4, dtype="<f4").tobytes()}, data_pkl=data_pkl)


TENSOR_PKL = (  # _rebuild_tensor_v2(storage '0' (4 floats), 0, (4,), (1,), False, OrderedDict())
    b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
    b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR"
)
#: TENSOR_PKL with the legacy format's 6-item storage id (no view).
LEGACY_TENSOR_PKL = TENSOR_PKL.replace(b"K\x04tQ", b"K\x04NtQ")


def bombs() -> dict:
    """Hand-made hostile pickles (the body of data.pkl, or a .pkl file)."""
    out = {}
    # a memo key of 2**32 - 1, then a lookup: no 4-billion-entry table
    out["huge_memo_key"] = b"\x80\x02}r\xff\xff\xff\xff0j\xff\xff\xff\xff."
    # millions of memo entries
    out["memo_flood"] = b"\x80\x04N" + b"\x94" * (5 << 20) + b"."
    # 100 000 nested lists with a tensor at the bottom
    n = 100_000
    out["deep_lists"] = b"\x80\x02" + b"]" * n + TENSOR_PKL + b"a" * n + b"."
    # 100 000 nested dicts
    out["deep_dicts"] = b"\x80\x02" + b"}X\x01\x00\x00\x00k" * n + b"N" + b"s" * n + b"."
    # billion laughs: 10 levels of lists of 10 references to the level below
    laughs = b"\x80\x02" + TENSOR_PKL + b"q\x000"
    for level in range(1, 12):
        laughs += b"(" + (b"h" + bytes([level - 1])) * 10 + b"lq" + bytes([level]) + b"0"
    laughs += b"h\x0b"
    out["billion_laughs"] = laughs + b"."
    # a stack flood
    out["stack_flood"] = b"\x80\x02" + b"N" * (3 << 20) + b"."
    # lengths far past the end of the input
    out["huge_binunicode8"] = b"\x80\x04\x8d" + struct.pack("<Q", 2**62) + b"abc."
    out["huge_long4"] = b"\x80\x02\x8b\xff\xff\xff\x7f."
    out["huge_binbytes8"] = b"\x80\x04\x8e" + struct.pack("<Q", 2**63) + b"."
    out["huge_frame"] = b"\x80\x04\x95" + struct.pack("<Q", 2**63) + b"N."
    # an object flood (empty lists appended to one list)
    out["object_flood"] = b"\x80\x02](" + (b"]" * 1000 + b"e(") * 3000 + b"."
    # a list appended to itself, holding a tensor (a cycle)
    out["cycle"] = b"\x80\x02]q\x00" + TENSOR_PKL + b"ah\x00a."
    # garbage and unknown opcodes
    out["unknown_opcode"] = b"\x80\x02\xff."
    out["not_a_pickle"] = b"\x80" + os.urandom(1000)
    return out


def test_pickle_bombs_fail_cleanly(tmp_path):
    paths = []
    for name, body in bombs().items():
        for kind in ("zip", "pkl"):
            p = tmp_path / f"{name}.{kind}.pt"
            if kind == "zip":
                _zip_with_pickle(p, body)
            else:
                p.write_bytes(body)
            paths.append(p)
    results = run_child(paths, tmp_path)
    print({os.path.basename(p): (round(r["rss_mb"]), round(r["secs"], 2)) for p, r in results.items()})
    for kind in ("zip", "pkl"):
        # r is used within this iteration only (B023)
        r = lambda name: results[str(tmp_path / f"{name}.{kind}.pt")]  # noqa: E731, B023
        for name in [
            "deep_lists",
            "billion_laughs",
            "stack_flood",
            "memo_flood",
            "object_flood",
            "huge_binunicode8",
            "huge_long4",
            "huge_binbytes8",
            "unknown_opcode",
        ]:
            assert r(name)["error"] and r(name)["error"][0] == "ZTensorError", (name, kind, r(name))
        assert "nested more than 1000" in r("deep_lists")["error"][1]
        assert "bomb" in r("billion_laughs")["error"][1]
        assert r("huge_memo_key")["error"] is None and r("huge_memo_key")["names"] == []
        assert r("deep_dicts")["error"] is not None  # deeper than 1000 levels
        assert r("cycle")["error"] is None and r("cycle")["names"] == ["0"]
        if kind == "zip":
            assert r("cycle")["read"]["0"][0] == "ok"


def test_truncated_files_at_many_lengths(tmp_path):
    tensors = {
        "a": make(torch.float32, (16, 16), 1),
        "b": make(torch.int64, (50,), 2),
        "c": {"d": make(torch.bfloat16, (8, 3), 3).t()},
    }
    paths = []
    for serialization in SERIALIZATIONS:
        full = save(tensors, tmp_path / f"full_{serialization}.pt", serialization).read_bytes()
        lengths = sorted(set(list(range(0, 200, 7)) + list(np.linspace(0, len(full) - 1, 60).astype(int))))
        for n in lengths:
            p = tmp_path / f"trunc_{serialization}_{n}.pt"
            p.write_bytes(full[:n])
            paths.append(p)
    expected = {k: raw_bytes(v).hex()[:64] for k, v in flatten(tensors).items()}
    results = run_child(paths, tmp_path)
    for path, r in results.items():
        for name, outcome in r["read"].items():
            if outcome[0] == "ok":  # whatever still reads has the right values
                assert outcome[3] == expected[name], (path, name)


def test_random_mutations(tmp_path):
    """Random byte changes anywhere in real checkpoints (their pickles
    included): every outcome is a value or a clean error."""
    rng = np.random.default_rng(1234)
    tensors = {
        "a": make(torch.float32, (6, 6), 1),
        "b": [make(torch.int16, (5,), 2).t()],
        "c": {"d": make(torch.float32, (6, 6), 1)[1:, 2:]},
    }
    paths = []
    for serialization in SERIALIZATIONS:
        full = bytearray(save(tensors, tmp_path / f"m_{serialization}.pt", serialization).read_bytes())
        if serialization == "zip":
            with zipfile.ZipFile(io.BytesIO(bytes(full))) as z:
                info = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
            lo = info.header_offset + 30 + len(info.filename) + len(info.extra)
            hi = lo + info.file_size  # mutate the stored data.pkl (no CRC check on a stored member)
        else:
            lo, hi = 0, len(full)
        for i in range(150):
            data = bytearray(full)
            for at in rng.integers(lo, hi, size=int(rng.integers(1, 4))):
                data[at] = int(rng.integers(0, 256))
            p = tmp_path / f"mut_{serialization}_{i}.pt"
            p.write_bytes(bytes(data))
            paths.append(p)
    run_child(paths, tmp_path)


def _patch_zip(data: bytes, member_suffix: str, field: str, value: int) -> bytes:
    """Rewrites a member's central-directory field (offset or sizes)."""
    data = bytearray(data)
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        name = bytes(data[pos + 46 : pos + 46 + name_len]).decode()
        if name.endswith(member_suffix):
            at = {"offset": 42, "csize": 20, "usize": 24}[field]
            struct.pack_into("<I", data, pos + at, value)
        pos = data.find(b"PK\x01\x02", pos + 46)
    return bytes(data)


def test_damaged_archives(tmp_path):
    tensors = {"a": make(torch.float32, (8, 8), 1), "b": make(torch.int32, (10,), 2)}
    full = save(tensors, tmp_path / "full.pt", "zip").read_bytes()
    cases = {
        "offset_past_end": _patch_zip(full, "/data/0", "offset", len(full) + 1000),
        "size_past_end": _patch_zip(_patch_zip(full, "/data/0", "csize", 10**9), "/data/0", "usize", 10**9),
        "overlapping": _patch_zip(
            full,
            "/data/1",
            "offset",
            zipfile.ZipFile(io.BytesIO(full))
            .getinfo(next(n for n in zipfile.ZipFile(io.BytesIO(full)).namelist() if n.endswith("/data/0")))
            .header_offset,
        ),
        "pickle_offset_past_end": _patch_zip(full, "data.pkl", "offset", 2**32 - 1),
    }
    # a deflated storage claiming a size far beyond what deflate can produce
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(full)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    cases["zip_bomb_claim"] = _patch_zip(buf.getvalue(), "/data/0", "usize", 2**32 - 1)
    # a legacy checkpoint whose storage count runs past the end
    legacy = bytearray(save(tensors, tmp_path / "legacy.pt", "legacy").read_bytes())
    end_of_keys = len(legacy) - (8 + 256) - (8 + 40)
    struct.pack_into("<Q", legacy, end_of_keys, 2**60)
    cases["legacy_count_past_end"] = bytes(legacy)
    paths = []
    for name, data in cases.items():
        p = tmp_path / f"{name}.pt"
        p.write_bytes(data)
        paths.append(p)
    results = run_child(paths, tmp_path)
    r = results[str(tmp_path / "offset_past_end.pt")]
    assert r["error"] is not None or r["read"]["a"][0] == "ZTensorError", r
    r = results[str(tmp_path / "zip_bomb_claim.pt")]
    assert r["error"] is not None or r["read"]["a"][0] == "ZTensorError", r
    r = results[str(tmp_path / "legacy_count_past_end.pt")]
    assert r["error"] is not None or any(v[0] == "ZTensorError" for v in r["read"].values()), r
