"""Reading .onnx models written by the real `onnx` package.

Models are made at test time with ``onnx.helper`` / ``onnx.numpy_helper``:
every element type the installed onnx supports in ``raw_data`` and in the
typed fields, 0-d and empty tensors, a ``Constant`` node, ``If`` / ``Loop``
subgraph initializers, sparse initializers, and external data saved by
``onnx.save_model(..., save_as_external_data=True)``. Every tensor is
compared bit-exactly with ``onnx.numpy_helper.to_array``, through
``ztensor.numpy.load_file`` (zero-copy and copy), ``ztensor.Reader``,
``ztensor.torch.load_file`` (the ``zt convert`` round trip is in test_cli.py).

The narrow types are stored one element per byte (int4/int2 as sign-extended
int8, uint4/uint2 and float8e8m0/float6/float4 codes as uint8) with a logical
type, so NumPy users get the same ml_dtypes arrays ``to_array`` gives.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import ztensor.numpy as ztnp  # noqa: E402
from conftest import assert_bits_equal, file_sha256, run_hostile  # noqa: E402
from ztensor import Reader, ZTensorError  # noqa: E402

# Every data type code except STRING / UNDEFINED that this onnx can make.
CODES = {name: code for name, code in TensorProto.DataType.items() if name not in ("UNDEFINED", "STRING")}

# ml_dtypes types ztensor presents as integers (unpacked sub-byte ints).
AS_INT8 = {"int4", "int2"}
AS_UINT8 = {"uint4", "uint2"}


def sample(code: int, shape, seed: int) -> np.ndarray:
    """An array of the numpy dtype onnx uses for `code`."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(helper.tensor_dtype_to_np_dtype(code))
    if dt == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if dt.name in AS_INT8 | AS_UINT8:
        info = ml_dtypes.iinfo(dt)
        return rng.integers(info.min, info.max + 1, shape).astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    if dt.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    # floats, incl. every ml_dtypes float: values in range of the smallest
    return (rng.standard_normal(shape) * 2).astype(np.float32).astype(dt)


def as_ours(expected: np.ndarray) -> np.ndarray:
    """How ztensor.numpy presents the array `to_array` gives: the same dtype
    and values; int4/int2 bytes sign-extended (ml_dtypes keeps the low bits)."""
    if expected.dtype.name in AS_INT8:
        return expected.astype(np.int8).view(expected.dtype)
    return expected


def make_model(initializers=(), nodes=(), sparse=(), **kw) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes), "main", [], [], initializer=list(initializers), sparse_initializer=list(sparse)
    )
    return helper.make_model(
        graph,
        producer_name="zt-tests",
        producer_version="0.1",
        opset_imports=[helper.make_opsetid("", 21)],
        **kw,
    )


def typed_tensor(name: str, code: int, arr: np.ndarray) -> onnx.TensorProto:
    """`arr` stored in the typed field onnx uses for `code` (not raw_data)."""
    if (
        arr.dtype.kind == "c"
        or arr.dtype in (np.float16, np.float32, np.float64, np.bool_)
        or arr.dtype.kind in "iu"
    ):
        vals = arr.reshape(-1).tolist()
    elif arr.dtype.name in AS_INT8 | AS_UINT8:
        vals = arr.astype(np.int32).reshape(-1).tolist()
    else:  # ml_dtypes floats: make_tensor converts floats itself
        vals = arr.astype(np.float32).reshape(-1).tolist()
    t = helper.make_tensor(name, code, arr.shape, vals, raw=False)
    assert not t.HasField("raw_data"), name
    return t


def expected_of(path) -> dict:
    """Every dense tensor of a saved model, as onnx reads it."""
    m = onnx.load(str(path))
    out = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for node in m.graph.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value":
                out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def check_all(ours: dict, expected: dict, what=""):
    assert sorted(ours) == sorted(expected), what
    for name, e in expected.items():
        assert_bits_equal(ours[name], as_ours(e), f"{what}:{name}")


def dtype_model(tmp_path, raw: bool) -> Path:
    tensors = []
    for i, (name, code) in enumerate(CODES.items()):
        for shape, suffix in (((3, 5), ""), ((), "_0d"), ((0, 4), "_empty"), ((7,), "_odd")):
            arr = sample(code, shape, seed=i)
            tname = f"{name.lower()}{suffix}"
            tensors.append(numpy_helper.from_array(arr, tname) if raw else typed_tensor(tname, code, arr))
    path = tmp_path / ("raw.onnx" if raw else "typed.onnx")
    onnx.save_model(make_model(tensors), str(path))
    return path


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed_fields"])
def test_every_dtype_matches_numpy_helper(tmp_path, raw):
    path = dtype_model(tmp_path, raw)
    expected = expected_of(path)
    assert len(expected) == 4 * len(CODES)
    for copy in (False, True):
        check_all(ztnp.load_file(path, copy=copy), expected, f"copy={copy}")
    with Reader(path) as r:
        assert r.format == "onnx"
        for name in CODES:
            md = r.metadata(name.lower())
            enc = md.components["data"]["encoding"]
            if not raw:
                assert enc == "decoded", name
            elif name in ("INT4", "UINT4", "INT2", "UINT2", "FLOAT4E2M1", "FLOAT6E2M3", "FLOAT6E3M2"):
                assert enc == "unpack", name
            else:
                assert enc == "raw", name
            assert list(md.shape) == [3, 5]
        assert r.metadata("float8e4m3fn").type == "f8_e4m3fn"
        assert r.metadata("complex64").type == "complex64"
        assert r.metadata("int4").type == "int4"
        assert r.metadata("int4").dtype == "int8"
        assert r.metadata("float4e2m1").type == "f4_e2m1fn"
        assert r.metadata("float_0d").shape == []
        assert r["float_0d"].shape == ()


def test_file_metadata(tmp_path):
    path = tmp_path / "meta.onnx"
    m = make_model(
        [numpy_helper.from_array(np.zeros(2, np.float32), "x")],
        doc_string="a model",
        domain="ai.zt",
        model_version=7,
    )
    helper.set_model_props(m, {"author": "me", "licence": "MIT"})
    onnx.save_model(m, str(path))
    with Reader(path) as r:
        meta = r.metadata()
        assert r.format == "onnx"
    assert meta["ir_version"] == m.ir_version
    assert meta["producer_name"] == "zt-tests"
    assert meta["producer_version"] == "0.1"
    assert meta["domain"] == "ai.zt"
    assert meta["model_version"] == 7
    assert meta["doc_string"] == "a model"
    assert meta["metadata_props"] == {"author": "me", "licence": "MIT"}
    assert meta["opset_import"] == [{"domain": "", "version": 21}]


def test_zero_copy_raw_data_points_into_the_mapping(tmp_path):
    arrays = {
        "w": np.arange(4096, dtype=np.float32).reshape(64, 64),
        "i": np.arange(100, dtype=np.int64),
        "b": np.arange(10) % 3 == 0,
    }
    path = tmp_path / "z.onnx"
    onnx.save_model(make_model([numpy_helper.from_array(a, k) for k, a in arrays.items()]), str(path))
    raw = path.read_bytes()
    before = file_sha256(path)
    with Reader(path) as r:
        offsets = {}
        for k, a in arrays.items():
            c = r.metadata(k).components["data"]
            assert c["encoding"] == "raw"
            assert raw[c["offset"] : c["offset"] + c["length"]] == a.tobytes()
            offsets[k] = c["offset"]
        ours = r.load_numpy()
        # Zero-copy views of one mapping: addresses differ exactly as file offsets do.
        base = ours["w"].ctypes.data - offsets["w"]
        for k, a in ours.items():
            assert a.ctypes.data - base == offsets[k], k
            assert not a.flags.owndata
    ours = ztnp.load_file(path)
    for k, a in ours.items():
        assert a.flags.writeable, k
        a[...] = 0
    assert file_sha256(path) == before
    assert_bits_equal(ztnp.load_file(path)["w"], arrays["w"], "w")


def test_constant_nodes_and_subgraph_initializers(tmp_path):
    rng = np.random.default_rng(5)
    then_w = rng.standard_normal((2, 3)).astype(np.float32)
    else_w = np.arange(4, dtype=np.int64)
    body_w = rng.standard_normal(5).astype(np.float16)
    const = np.array([[1, -2], [3, -4]], dtype=np.int32)
    inner_const = np.array(2.5, dtype=np.float64)
    then_g = helper.make_graph([], "then", [], [], initializer=[numpy_helper.from_array(then_w, "then_w")])
    else_g = helper.make_graph(
        [helper.make_node("Constant", [], ["inner_c"], value=numpy_helper.from_array(inner_const))],
        "else",
        [],
        [],
        initializer=[numpy_helper.from_array(else_w, "else_w")],
    )
    body = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)],
        "body",
        [],
        [],
        initializer=[numpy_helper.from_array(body_w, "body_w")],
    )
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(const, "ignored")),
        helper.make_node("Loop", ["M", "cond"], ["out"], body=body),
    ]
    path = tmp_path / "sub.onnx"
    top = np.ones(3, np.uint8)
    onnx.save_model(make_model([numpy_helper.from_array(top, "top")], nodes), str(path))
    want = {
        "top": top,
        "c": const,
        "body_w": body_w,
        "then_w": then_w,
        "else_w": else_w,
        "inner_c": inner_const,
    }
    ours = ztnp.load_file(path)
    assert sorted(ours) == sorted(want)
    for k, v in want.items():
        assert_bits_equal(ours[k], v, k)
    # A name used twice (initializer and Constant output) is refused, not shadowed.
    nodes.append(helper.make_node("Constant", [], ["top"], value=numpy_helper.from_array(const)))
    onnx.save_model(make_model([numpy_helper.from_array(top, "top")], nodes), str(path))
    with Reader(path) as r:
        assert_bits_equal(r["c"], const)
        with pytest.raises(ZTensorError, match="more than once"):
            r["top"]


def test_sparse_initializers(tmp_path):
    import torch

    import ztensor.torch as zttorch

    dense = np.zeros((4, 5), np.float32)
    coords = [(0, 1), (2, 0), (3, 4)]
    vals = np.array([1.5, -2.0, 3.25], np.float32)
    for (i, j), v in zip(coords, vals, strict=True):
        dense[i, j] = v
    values = numpy_helper.from_array(vals, "sp")
    linear = numpy_helper.from_array(np.array([i * 5 + j for i, j in coords], np.int64), "sp_i")
    pairs = numpy_helper.from_array(np.array(coords, np.int64), "sp2_i")
    values2 = numpy_helper.from_array(vals, "sp2")
    sparse = [
        helper.make_sparse_tensor(values, linear, [4, 5]),
        helper.make_sparse_tensor(values2, pairs, [4, 5]),
    ]
    path = tmp_path / "sparse.onnx"
    onnx.save_model(make_model([numpy_helper.from_array(dense, "d")], sparse=sparse), str(path))
    with Reader(path) as r:
        for name in ("sp", "sp2"):
            md = r.metadata(name)
            assert md.format == "sparse_coo"
            assert md.shape == [4, 5]
            comps = r.read_components(name)
            assert_bits_equal(comps["values"], vals)
            assert comps["coords"].dtype == np.uint64
            assert comps["coords"].tolist() == [0, 2, 3, 1, 0, 4]
        assert_bits_equal(r["d"], dense)
    got = zttorch.load_file(path)
    for name in ("sp", "sp2"):
        assert got[name].layout == torch.sparse_coo
        assert torch.equal(got[name].to_dense(), torch.from_numpy(dense))


@pytest.mark.parametrize("one_file", [True, False], ids=["one_file", "file_per_tensor"])
def test_external_data(tmp_path, one_file):
    tensors = [
        numpy_helper.from_array(sample(code, (6, 3), seed=i), name.lower())
        for i, (name, code) in enumerate(CODES.items())
    ]
    tensors.append(numpy_helper.from_array(np.zeros((0, 2), np.float32), "empty"))
    const = helper.make_node(
        "Constant", [], ["const"], value=numpy_helper.from_array(np.arange(300, dtype=np.int16))
    )
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(
        make_model(tensors, [const]),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=one_file,
        location="weights.bin" if one_file else None,
        size_threshold=0,
        convert_attribute=True,
    )
    files = sorted(p.name for p in path.parent.iterdir())
    assert len(files) > (1 if one_file else 10), files
    expected = expected_of(path)  # onnx.load reads external data next to the model
    for copy in (False, True):
        check_all(ztnp.load_file(path, copy=copy), expected, f"copy={copy}")
    with Reader(path) as r:
        assert r.metadata("float").components["data"]["encoding"] == "external"
        assert r.metadata("const").components["data"]["encoding"] == "external"
        assert r.metadata("int4").components["data"]["encoding"] == "external"
    # The model moved elsewhere without its data: those tensors fail, by name.
    alone = tmp_path / "alone.onnx"
    shutil.copy(path, alone)
    with Reader(alone) as r:
        with pytest.raises(ZTensorError, match="'float'.*cannot be opened"):
            r["float"]


def external_model(tmp_path, location: str, offset: int, length: int) -> Path:
    d = tmp_path / "models"
    d.mkdir(exist_ok=True)
    (d / "data.bin").write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    (tmp_path / "outside.bin").write_bytes(bytes(64))
    t = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    onnx.external_data_helper.set_external_data(t, location=location, offset=offset, length=length)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    ok = numpy_helper.from_array(np.arange(3, dtype=np.int16), "ok")
    path = d / "m.onnx"
    onnx.save_model(make_model([t, ok]), str(path))
    return path


@pytest.mark.parametrize(
    "location, offset, length, message",
    [
        ("../outside.bin", 0, 16, r"'\.\.'"),
        ("sub/../../outside.bin", 0, 16, r"'\.\.'"),
        ("ABSOLUTE", 0, 16, "absolute"),
        ("data.bin", 60, 16, "lies outside 'data.bin'"),
        ("data.bin", 2**64 - 8, 16, "lies outside"),
        ("data.bin", 0, 12, "needs 16"),
        ("missing.bin", 0, 16, "cannot be opened"),
    ],
)
def test_hostile_external_data_fails_that_tensor(tmp_path, location, offset, length, message):
    if location == "ABSOLUTE":
        location = str(tmp_path / "outside.bin")
    path = external_model(tmp_path, location, offset, length)
    with Reader(path) as r:
        assert_bits_equal(r["ok"], np.arange(3, dtype=np.int16))
        with pytest.raises(ZTensorError, match=r"tensor 'w'.*" + message):
            r["w"]
    with pytest.raises(ZTensorError, match="'w'"):
        ztnp.load_file(path)


def test_external_symlink_out_of_the_directory_is_refused(tmp_path):
    path = external_model(tmp_path, "link.bin", 0, 16)
    os.symlink(tmp_path / "outside.bin", path.parent / "link.bin")
    with Reader(path) as r:
        with pytest.raises(ZTensorError, match="outside the model's directory"):
            r["w"]
    path = external_model(tmp_path, "data.bin", 16, 16)
    with Reader(path) as r:
        assert r["w"].tobytes() == bytes(range(16, 32))


def test_torch_load(tmp_path):
    import torch

    import ztensor.torch as zttorch

    arrays = {
        "f32": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
        "f16": np.arange(6, dtype=np.float16),
        "i64": np.array([-(2**63), 2**63 - 1]),
        "bf16": np.array([1.5, -2.0, 3.0], dtype=ml_dtypes.bfloat16),
        "bool": np.array([True, False, True]),
    }
    path = tmp_path / "t.onnx"
    tensors = [numpy_helper.from_array(a, k) for k, a in arrays.items()]
    tensors.append(typed_tensor("typed_bf16", TensorProto.BFLOAT16, arrays["bf16"]))
    onnx.save_model(make_model(tensors), str(path))
    expected = expected_of(path)
    for copy in (False, True):
        got = zttorch.load_file(path, copy=copy)
        for k, e in expected.items():
            t = got[k]
            if e.dtype == ml_dtypes.bfloat16:
                assert t.dtype == torch.bfloat16
                assert t.view(torch.int16).numpy().tobytes() == e.view(np.int16).tobytes(), k
            else:
                assert t.dtype == getattr(torch, "bool" if e.dtype == bool else e.dtype.name)
                assert np.array_equal(t.numpy(), e), k


# ---------------------------------------------------------------------------
# hostile files
# ---------------------------------------------------------------------------


def test_truncations_and_garbage_raise_cleanly(tmp_path):
    blob = dtype_model(tmp_path, raw=False).read_bytes()
    cuts = sorted(
        {1, 2, 3, 7, 50, len(blob) // 3, len(blob) // 2, len(blob) - 5, len(blob) - 1}
        | set(range(0, len(blob), max(1, len(blob) // 200)))
    )
    rng = np.random.default_rng(3)
    blobs = {f"trunc{n}.onnx": blob[:n] for n in cuts}
    blobs |= {f"garbage{i}.onnx": rng.integers(0, 256, 200 + i, dtype=np.uint8).tobytes() for i in range(20)}
    paths = []
    for name, data in blobs.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    results = run_hostile(tmp_path, paths)  # no crash, no unclean exception
    assert all(r["ok"] or r["type"] == "ZTensorError" for r in results.values())
    assert any(not r["ok"] or r["errors"] for k, r in results.items() if k.startswith("trunc"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff" * 64)
    with pytest.raises(ZTensorError, match="not a valid ONNX model"):
        Reader(bad)


def test_absurd_dims_fail_that_tensor(tmp_path):
    def with_dims(t, dims):
        t.dims[:] = dims  # helper refuses these: set them afterwards
        return t

    big = with_dims(helper.make_tensor("big", TensorProto.FLOAT, [2], [1.0, 2.0]), [2**40, 2**20])
    neg = with_dims(helper.make_tensor("neg", TensorProto.FLOAT, [0], []), [-1])
    over = with_dims(helper.make_tensor("over", TensorProto.FLOAT, [1], [1.0]), [2**62, 2**62])
    rawbig = with_dims(numpy_helper.from_array(np.zeros(4, np.float32), "rawbig"), [2**30, 2**30])
    ok = numpy_helper.from_array(np.arange(4, dtype=np.int32), "ok")
    path = tmp_path / "dims.onnx"
    onnx.save_model(make_model([big, neg, over, rawbig, ok]), str(path))
    with Reader(path) as r:
        assert_bits_equal(r["ok"], np.arange(4, dtype=np.int32))
        for name, says in (
            ("big", "holds 2 values"),
            ("neg", "negative"),
            ("over", "more elements than fit"),
            ("rawbig", "raw_data holds 16 bytes"),
        ):
            with pytest.raises(ZTensorError, match=f"'{name}'.*{says}"):
                r[name]
