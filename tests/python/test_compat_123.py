"""The ztensor 1.2.3 API that users migrate from, checked against 1.2.3 itself.

``Reader.read_numpy/read_torch/read/read_into``, ``ztensor.Tensor`` and
``Writer.write/write_numpy/write_torch``: the same snippets run under the
reference ztensor==1.2.3 (conftest.run_ref_torch) and under the package under
test (conftest.run_ours), each on the file the reference wrote and on the file
we wrote with the same writing code. Results must be equal bit for bit, except
where 1.2.3 is wrong; there each test asserts our documented behaviour:

* 0-d tensors keep shape ``()`` (1.2.3's NumPy paths give ``(1,)``, and its
  ``write_numpy`` stores a NumPy scalar as ``[1]``);
* ``read_torch`` reads uint16/32/64 and empty tensors (1.2.3 raises), and
  sparse layouts as torch sparse tensors; ``Tensor.torch()`` reads bfloat16;
* float8 tensors come back in their float8 dtype (1.2.3: their uint8 storage),
  with the same bytes;
* sparse indices are stored as uint64 (1.2.3 keeps the caller's integer type);
* ``write_torch`` takes every torch dtype we support (1.2.3: ten).

Exceptions: code written for 1.2.3 catches RuntimeError for a corrupt file and
for writing after ``finish()``, and ValueError matching "share memory" for
tensors that share memory, where safetensors raises RuntimeError.
"""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch

import ztensor
from conftest import REF_DTYPE_NAMES, all_dtypes, assert_bits_equal
from ztensor import Reader, Writer, ZTensorError

torch = pytest.importorskip("torch")
import ztensor.torch as ztorch  # noqa: E402

SAMPLES = all_dtypes()

# Written by both implementations with the same code; the file path is spliced in.
WRITE = r"""
import torch
errors = {}
def attempt(key, fn):
    try:
        fn()
    except Exception as e:
        errors[key] = [type(e).__name__, str(e)[:300]]
w = ztensor.Writer(PATH)
opts = [dict(), dict(compress=True), dict(checksum="crc32c"), dict(compress=5, checksum="sha256")]
for i, (name, arr) in enumerate(INPUTS.items()):
    attempt("np_" + name, lambda: w.write_numpy("np_" + name, arr, **opts[i % 4]))
attempt("np_fortran", lambda: w.write_numpy("np_fortran", np.asfortranarray(INPUTS["float64"])))
attempt("np_list", lambda: w.write_numpy("np_list", [[1.5, -2.0], [3.0, 4.25]]))
attempt("np_scalar", lambda: w.write_numpy("np_scalar", np.float32(2.5)))
attempt("np_empty", lambda: w.write_numpy("np_empty", np.zeros((0, 3), np.int16), checksum="crc32c"))
base = torch.arange(24, dtype=torch.float32).reshape(4, 6) - 7.5
attempt("t_view", lambda: w.write_torch("t_view", base.t()[1:5, ::2]))
attempt("t_offset", lambda: w.write_torch("t_offset", base.reshape(-1)[5:11], compress=3))
attempt("t_grad", lambda: w.write_torch("t_grad", torch.linspace(-1, 1, 7, requires_grad=True) * 3))
attempt("t_param", lambda: w.write_torch("t_param", torch.nn.Parameter(torch.full((2, 2), 0.5)),
                                         compress=True, checksum="sha256"))
attempt("t_scalar", lambda: w.write_torch("t_scalar", torch.tensor(-3.75, dtype=torch.float64)))
for dt in ("bfloat16", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"):
    t = torch.arange(-5, 7).reshape(3, 4)
    t = (t % 2 == 0) if dt == "bool" else (t * 37).to(getattr(torch, dt))
    attempt("t_" + dt, lambda: w.write_torch("t_" + dt, t, checksum="crc32c"))
attempt("t_uint16", lambda: w.write_torch("t_uint16", torch.arange(0, 60000, 7000).to(torch.uint16)))
def T(*args, **kwargs):
    return ztensor.Tensor(*args, **kwargs)
attempt("o_dense", lambda: w.write("o_dense", T({"data": np.arange(6, dtype=np.int32).reshape(2, 3)},
                                                attributes={"role": "bias", "n": 3}), checksum="crc32c"))
attempt("o_f8", lambda: w.write("o_f8", T({"data": np.arange(256).astype(np.uint8).reshape(16, 16)},
                                          type="f8_e4m3fn")))
attempt("o_csr", lambda: w.write("o_csr", T({"values": np.array([1.5, -2, 3], np.float32),
                                             "indices": np.array([0, 2, 1], np.int64),
                                             "indptr": np.array([0, 2, 3], np.int64)},
                                            shape=[2, 3], format="sparse_csr"), compress=True))
attempt("o_coo", lambda: w.write("o_coo", T({"values": np.array([1, 2], np.float64),
                                             "coords": np.array([0, 1, 1, 2], np.uint64)},
                                            shape=[2, 3], format="sparse_coo"), checksum="sha256"))
attempt("o_quant", lambda: w.write("o_quant", T({"packed": np.arange(16, dtype=np.uint8),
                                                 "scales": np.array([0.5, 2], np.float16)},
                                                shape=[4, 8], format="quantized_group",
                                                attributes={"group_size": 16, "bits": 4})))
w.finish()
RESULT = errors
"""

# Read by both implementations, on both files (FILES is spliced in).
READ = r"""
import torch
res = {}
def attempt(key, fn):
    try:
        return fn()
    except Exception as e:
        res[key] = {"ok": False, "error": type(e).__name__, "runtime": isinstance(e, RuntimeError),
                    "value": isinstance(e, ValueError), "msg": str(e)[:300]}
def np_out(key, a):
    OUT[key] = a
    res[key] = {"ok": True, "dtype": str(a.dtype), "shape": list(a.shape)}
def torch_out(key, t):
    info = {"ok": True, "dtype": str(t.dtype), "shape": list(t.shape), "layout": str(t.layout)}
    t = t.to_dense() if t.layout != torch.strided else t
    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    OUT[key] = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)
    res[key] = info
for tag, path in FILES:
    r = ztensor.Reader(path)
    names = r.keys()
    res[tag + "|keys"] = names
    numpy_ok, torch_ok = {}, {}
    for n in names:
        k = tag + "|" + n
        a = attempt(k + "|read_numpy", lambda: r.read_numpy(n))
        if a is not None:
            np_out(k + "|read_numpy", a)
            numpy_ok[n] = a
            res[k + "|copy_owns"] = not np.shares_memory(a, r.read_numpy(n, copy=True))
        t = attempt(k + "|read_torch", lambda: r.read_torch(n))
        if t is not None:
            torch_out(k + "|read_torch", t)
            torch_ok[n] = t
        obj = attempt(k + "|read", lambda: r.read(n))
        if obj is not None:
            res[k + "|read"] = {"repr": repr(obj), "shape": list(obj.shape), "dtype": obj.dtype,
                                "type": obj.type, "format": obj.format, "attributes": obj.attributes,
                                "components": list(obj.components)}
            for c, v in obj.components.items():
                np_out(k + "|read|" + c, v)
            a2 = attempt(k + "|Tensor.numpy", obj.numpy)
            if a2 is not None:
                np_out(k + "|Tensor.numpy", a2)
            t2 = attempt(k + "|Tensor.torch", obj.torch)
            if t2 is not None:
                torch_out(k + "|Tensor.torch", t2)
        if n in numpy_ok:
            dst = np.zeros_like(numpy_ok[n])
            if attempt(k + "|read_into_np", lambda: r.read_into(n, dst)) is None \
                    and k + "|read_into_np" not in res:
                np_out(k + "|read_into_np", dst)
        if n in torch_ok and torch_ok[n].layout == torch.strided:
            tdst = torch.zeros_like(torch_ok[n])
            if attempt(k + "|read_into_torch", lambda: r.read_into(n, tdst)) is None \
                    and k + "|read_into_torch" not in res:
                torch_out(k + "|read_into_torch", tdst)
    dense = sorted(numpy_ok, reverse=True)
    got = attempt(tag + "|read_numpy[]", lambda: r.read_numpy(dense))
    if got is not None:
        res[tag + "|read_numpy[]"] = list(got)
        for n, a in got.items():
            np_out(tag + "|read_numpy[]|" + n, a)
    got = attempt(tag + "|read_torch[]", lambda: r.read_torch(sorted(torch_ok, reverse=True)))
    if got is not None:
        res[tag + "|read_torch[]"] = list(got)
        for n, t in got.items():
            torch_out(tag + "|read_torch[]|" + n, t)
    got = attempt(tag + "|read[]", lambda: r.read(sorted(names, reverse=True)))
    if got is not None:
        res[tag + "|read[]"] = [[n, repr(o)] for n, o in got.items()]
    dsts = {n: np.zeros_like(numpy_ok[n]) for n in dense}
    if attempt(tag + "|read_into{}", lambda: r.read_into(dsts)) is None and tag + "|read_into{}" not in res:
        for n, a in dsts.items():
            np_out(tag + "|read_into{}|" + n, a)
    if "np_float32" not in numpy_ok:  # nothing was written
        continue
    # same-kind casts: float32 into float64 (NumPy and torch), float32 into int8 refused by NumPy
    f64 = np.zeros(numpy_ok["np_float32"].shape, np.float64)
    if attempt(tag + "|cast_np_f64", lambda: r.read_into("np_float32", f64)) is None \
            and tag + "|cast_np_f64" not in res:
        np_out(tag + "|cast_np_f64", f64)
    tf64 = torch.zeros(numpy_ok["np_float32"].shape, dtype=torch.float64)
    if attempt(tag + "|cast_torch_f64", lambda: r.read_into("np_float32", tf64)) is None \
            and tag + "|cast_torch_f64" not in res:
        torch_out(tag + "|cast_torch_f64", tf64)
    attempt(tag + "|cast_np_i8", lambda: r.read_into("np_float32", np.zeros(f64.shape, np.int8)))

# exceptions that code written for 1.2.3 catches
good = FILES[0][1]
data = open(good, "rb").read()
with open(os.path.join(WORKDIR, "cut.zt"), "wb") as f:
    f.write(data[:-5])
attempt("exc|corrupt", lambda: ztensor.Reader(os.path.join(WORKDIR, "cut.zt")))
w = ztensor.Writer(os.path.join(WORKDIR, "done.zt"))
w.add("a", np.zeros(2))
w.finish()
attempt("exc|write_after_finish", lambda: w.write_numpy("b", np.zeros(2)))
attempt("exc|finish_twice", w.finish)
import ztensor.torch as zt_torch
shared = torch.zeros(4)
attempt("exc|shared", lambda: zt_torch.save_file({"a": shared, "b": shared}, os.path.join(WORKDIR, "s.zt")))
RESULT = res
"""


def _splice(code: str, **values) -> str:
    return "".join(f"{k} = {v!r}\n" for k, v in values.items()) + code


@pytest.fixture(scope="module")
def written(tmp_path_factory, run_ref_torch, run_ours):
    """The files 1.2.3 and we wrote with WRITE, and the errors each raised."""
    d = tmp_path_factory.mktemp("compat123")
    inputs = {name: SAMPLES[name] for name in REF_DTYPE_NAMES}
    paths = {"ref": str(d / "ref.zt"), "ours": str(d / "ours.zt")}
    errors = {
        "ref": run_ref_torch(_splice(WRITE, PATH=paths["ref"]), inputs=inputs)[1],
        "ours": run_ours(_splice(WRITE, PATH=paths["ours"]), inputs=inputs)[1],
    }
    return paths, errors


@pytest.fixture(scope="module")
def reads(written, run_ref_torch, run_ours):
    """READ's outputs: {reader: (arrays, results)} for reader in ref, ours."""
    paths, _ = written
    code = _splice(READ, FILES=[["ref", paths["ref"]], ["ours", paths["ours"]]])
    return {"ref": run_ref_torch(code), "ours": run_ours(code)}


FILES = ("ref", "ours")
#: stored with shape [] by the writer of that file
ZERO_D = {"ref": {"t_scalar"}, "ours": {"t_scalar", "np_scalar"}}
#: dense tensors 1.2.3 cannot read with torch: uint16/32/64 and empty ones
TORCH_BUGS = {"np_uint16", "np_uint32", "np_uint64", "t_uint16", "np_empty"}
F8 = {"o_f8"}
SPARSE = {"o_csr", "o_coo"}
DENSE_NAMES = {"np_" + n for n in REF_DTYPE_NAMES} | {
    "np_fortran",
    "np_list",
    "np_scalar",
    "np_empty",
    "t_view",
    "t_offset",
    "t_grad",
    "t_param",
    "t_scalar",
    "t_bfloat16",
    "t_float16",
    "t_int64",
    "t_int32",
    "t_int16",
    "t_int8",
    "t_uint8",
    "t_bool",
    "t_uint16",
    "o_dense",
    "o_f8",
}


def _names(reads, tag):
    names = reads["ours"][1][f"{tag}|keys"]
    assert names == reads["ref"][1][f"{tag}|keys"]
    return names


def _same_order(ours, ref):
    """Same names in the same (file) order; 1.2.3 orders an empty tensor,
    which shares its offset with the next one, by the order asked for."""
    assert sorted(ours) == sorted(ref)
    assert [n for n in ours if n != "np_empty"] == [n for n in ref if n != "np_empty"]


def _same(reads, key, *, zero_d=False, f8=False):
    """Our output for ``key`` equals 1.2.3's bit for bit; ``zero_d``: ours has
    shape () where 1.2.3 reshaped to (1,); ``f8``: ours has the float8 dtype
    where 1.2.3 has uint8 storage."""
    (ref_out, ref_res), (our_out, our_res) = reads["ref"], reads["ours"]
    assert ref_res.get(key, {}).get("ok"), (key, ref_res.get(key))
    assert our_res.get(key, {}).get("ok"), (key, our_res.get(key))
    ref, ours = ref_res[key], our_res[key]
    expected_shape = [] if zero_d else ref["shape"]
    assert ours["shape"] == expected_shape, key
    if zero_d:
        assert ref["shape"] in ([1], []), key
    if f8:
        assert ref["dtype"] in ("uint8", "torch.uint8"), key
        assert ours["dtype"] in ("float8_e4m3fn", "torch.float8_e4m3fn"), key
    else:
        assert ours["dtype"] == ref["dtype"], key
    a, b = our_out[key], ref_out[key]
    assert a.tobytes() == b.tobytes(), key


# --------------------------------------------------------------- writing


def test_writers_accept_what_123_accepts_and_more(written):
    _, errors = written
    assert errors["ours"] == {}
    # 1.2.3's write_torch refuses uint16; everything else both accept
    assert set(errors["ref"]) == {"t_uint16"}, errors["ref"]
    assert errors["ref"]["t_uint16"][0] == "ValueError"


@pytest.mark.parametrize("reader", ["ref", "ours"])
def test_write_numpy_torch_and_write_store_what_123_stores(written, reads, reader):
    """Each reader reads the same values from the file 1.2.3 wrote and from ours."""
    out, res = reads[reader]
    assert set(res["ours|keys"]) == DENSE_NAMES | SPARSE | {"o_quant"}
    assert set(res["ref|keys"]) == set(res["ours|keys"]) - {"t_uint16"}
    for name in sorted(DENSE_NAMES - {"t_uint16"}):
        key = f"|{name}|read_numpy"
        if name == "np_scalar":  # 1.2.3 stored [1]; we store []
            assert res["ref" + key]["shape"] == [1]
            assert res["ours" + key]["shape"] == ([1] if reader == "ref" else [])
        else:
            assert res["ours" + key]["shape"] == res["ref" + key]["shape"], name
        assert res["ours" + key]["dtype"] == res["ref" + key]["dtype"], name
        assert out["ours" + key].tobytes() == out["ref" + key].tobytes(), name
    for name in sorted(SPARSE | {"o_quant"}):
        ours, ref = res[f"ours|{name}|read"], res[f"ref|{name}|read"]
        assert ours == ref, name
        for c in ours["components"]:
            a, b = out[f"ours|{name}|read|{c}"], out[f"ref|{name}|read|{c}"]
            if c in ("indices", "indptr"):  # we store sparse indices as uint64
                assert (a.dtype, b.dtype) == (np.dtype(np.uint64), np.dtype(np.int64)), (name, c)
                np.testing.assert_array_equal(a, b.astype(np.uint64))
            else:
                assert_bits_equal(a, b, f"{name}/{c}")
    # ours only: the uint16 torch tensor
    a = out["ours|t_uint16|read_numpy"]
    np.testing.assert_array_equal(a, np.arange(0, 60000, 7000).astype(np.uint16))


def test_write_rejects_bad_tensors(tmp_path):
    with Writer(tmp_path / "x.zt") as w:
        with pytest.raises(TypeError, match="write_numpy"):
            w.write("a", np.zeros(2))  # 1.2.3: AttributeError
        with pytest.raises(ValueError, match="dtype 'float16'"):
            w.write("a", ztensor.Tensor({"data": np.zeros(2)}, dtype="float16"))
        with pytest.raises(ValueError, match="out of range"):
            w.write(
                "a",
                ztensor.Tensor(
                    {"values": np.ones(1), "coords": np.array([0, 5])}, shape=[2, 3], format="sparse_coo"
                ),
            )
        with pytest.raises(TypeError, match="torch.Tensor"):
            w.write_torch("a", np.zeros(2))
        w.write_numpy("ok", np.ones(2))
    assert Reader(tmp_path / "x.zt").keys() == ["ok"]


def test_write_torch_sparse_and_write_keep_attributes_and_types(tmp_path):
    p = tmp_path / "s.zt"
    coo = torch.tensor([[0.0, 1.5], [-2.0, 0.0]]).to_sparse()
    with Writer(p) as w:
        w.write_torch("coo", coo, checksum="crc32c")
        w.write_torch("cplx", torch.tensor([1 + 2j, -3j], dtype=torch.complex64))
        q = {"scales": np.ones(2, np.float16), "packed": np.arange(16, dtype=np.uint8)}
        w.write(
            "q",
            ztensor.Tensor(
                q, shape=[4, 8], format="quantized_group", type="int4", attributes={"group_size": 16}
            ),
        )
    r = Reader(p)
    got = r.read_torch("coo")
    assert got.layout == torch.sparse_coo
    assert torch.equal(got.to_dense(), coo.to_dense())
    assert torch.equal(r.read_torch("cplx"), torch.tensor([1 + 2j, -3j], dtype=torch.complex64))
    q = r.read("q")
    # the type goes to the primary component (first name in sorted order), which
    # TensorMetadata reports; 1.2.3 dropped it for quantized layouts
    assert (q.dtype, q.type, q.attributes) == ("uint8", "int4", {"group_size": 16})
    assert r.metadata("q").components["packed"]["type"] == "int4"
    assert list(q.components) == ["packed", "scales"]


# --------------------------------------------------------------- reading


@pytest.mark.parametrize("tag", FILES)
def test_read_numpy_matches_123(reads, tag):
    for name in _names(reads, tag):
        key = f"{tag}|{name}|read_numpy"
        if name in SPARSE or name == "o_quant":
            for who in ("ref", "ours"):
                assert not reads[who][1][key]["ok"], (who, key)
            assert reads["ours"][1][key]["runtime"], key  # 1.2.3: TypeError
            continue
        _same(reads, key, zero_d=name in ZERO_D[tag], f8=name in F8)
        assert reads["ours"][1][f"{tag}|{name}|copy_owns"]
    _same_order(reads["ours"][1][f"{tag}|read_numpy[]"], reads["ref"][1][f"{tag}|read_numpy[]"])
    for name in reads["ref"][1][f"{tag}|read_numpy[]"]:
        _same(reads, f"{tag}|read_numpy[]|{name}", zero_d=name in ZERO_D[tag], f8=name in F8)


@pytest.mark.parametrize("tag", FILES)
def test_read_torch_matches_123_and_reads_what_it_cannot(reads, tag):
    (_, ref), (out, ours) = reads["ref"], reads["ours"]
    for name in _names(reads, tag):
        key = f"{tag}|{name}|read_torch"
        if name in TORCH_BUGS:
            assert not ref[key]["ok"]
            assert ours[key]["ok"], ours[key]
            numpy_key = f"{tag}|{name}|read_numpy"
            assert ours[key]["shape"] == ours[numpy_key]["shape"]
            assert ours[key]["dtype"] == "torch." + ours[numpy_key]["dtype"]
            assert out[key].tobytes() == out[numpy_key].tobytes()
        elif name in SPARSE:
            assert not ref[key]["ok"]
            assert ours[key]["layout"] == ("torch.sparse_csr" if name == "o_csr" else "torch.sparse_coo")
            dense = np.frombuffer(out[key].tobytes(), dtype=ours[key]["dtype"].split(".")[1])
            expected = [[1.5, 0, -2], [0, 3, 0]] if name == "o_csr" else [[0, 1, 0], [0, 0, 2]]
            np.testing.assert_array_equal(dense.reshape(2, 3), expected)
        elif name == "o_quant":
            assert not ref[key]["ok"] and not ours[key]["ok"]
            assert ours[key]["runtime"]
        else:
            _same(reads, key, f8=name in F8)
    names = ref[f"{tag}|read_torch[]"]  # 1.2.3 read the dense tensors it can, in file order
    _same_order([n for n in ours[f"{tag}|read_torch[]"] if n in names], names)
    assert set(ours[f"{tag}|read_torch[]"]) - set(names) == (TORCH_BUGS | SPARSE) & set(_names(reads, tag))
    for name in names:
        _same(reads, f"{tag}|read_torch[]|{name}", f8=name in F8)


@pytest.mark.parametrize("tag", FILES)
def test_read_returns_tensors_like_123(reads, tag):
    (_, ref), (out, ours) = reads["ref"], reads["ours"]
    for name in _names(reads, tag):
        key = f"{tag}|{name}|read"
        assert ours[key] == ref[key], name  # repr, shape, dtype, type, format, attributes, components
        for c in ours[key]["components"]:
            is_data = c == "data"
            _same(reads, f"{key}|{c}", zero_d=is_data and name in ZERO_D[tag], f8=is_data and name in F8)
        if name in SPARSE or name == "o_quant":
            for method in ("Tensor.numpy", "Tensor.torch"):
                assert not ref[f"{tag}|{name}|{method}"]["ok"]
                assert ours[f"{tag}|{name}|{method}"]["runtime"]
            continue
        _same(reads, f"{tag}|{name}|Tensor.numpy", zero_d=name in ZERO_D[tag], f8=name in F8)
        tkey = f"{tag}|{name}|Tensor.torch"
        if name in ("np_bfloat16", "t_bfloat16"):  # 1.2.3: TypeError from torch.from_numpy
            assert not ref[tkey]["ok"]
            assert ours[tkey] == ours[f"{tag}|{name}|read_torch"]
            assert out[tkey].tobytes() == out[f"{tag}|{name}|read_torch"].tobytes()
        else:
            _same(reads, tkey, zero_d=name in ZERO_D[tag], f8=name in F8)
    _same_order([n for n, _ in ours[f"{tag}|read[]"]], [n for n, _ in ref[f"{tag}|read[]"]])
    assert dict(ours[f"{tag}|read[]"]) == dict(ref[f"{tag}|read[]"])


@pytest.mark.parametrize("tag", FILES)
def test_read_into_matches_123(reads, tag):
    _, ref = reads["ref"]
    for name in _names(reads, tag):
        k = f"{tag}|{name}"
        if f"{k}|read_into_np" in ref:
            _same(reads, f"{k}|read_into_np", zero_d=name in ZERO_D[tag], f8=name in F8)
        if f"{k}|read_into_torch" in ref:
            _same(reads, f"{k}|read_into_torch", f8=name in F8)
    for name in ref[f"{tag}|read_numpy[]"]:
        _same(reads, f"{tag}|read_into{{}}|{name}", zero_d=name in ZERO_D[tag], f8=name in F8)
    _same(reads, f"{tag}|cast_np_f64")
    _same(reads, f"{tag}|cast_torch_f64")
    for who in ("ref", "ours"):
        assert reads[who][1][f"{tag}|cast_np_i8"]["error"] == "TypeError"


def test_exceptions_123_code_catches(reads):
    ref, ours = reads["ref"][1], reads["ours"][1]
    for key in ("exc|corrupt", "exc|write_after_finish", "exc|finish_twice"):
        assert ref[key]["runtime"], (key, ref[key])
        assert ours[key]["runtime"], (key, ours[key])
    assert ref["exc|shared"]["value"] and "share memory" in ref["exc|shared"]["msg"]
    assert ours["exc|shared"]["value"] and ours["exc|shared"]["runtime"]
    assert "share memory" in ours["exc|shared"]["msg"]


# --------------------------------------------------------------- in process


def _file(tmp_path, **tensors):
    p = tmp_path / "t.zt"
    with Writer(p) as w:
        for name, arr in tensors.items():
            w.add(name, arr)
    return p


def test_corrupt_file_is_a_runtime_error(tmp_path):
    p = _file(tmp_path, a=np.arange(16, dtype=np.float32))
    data = p.read_bytes()
    cut = tmp_path / "cut.zt"
    cut.write_bytes(data[:-5])
    with pytest.raises(RuntimeError):
        Reader(cut)
    with Writer(tmp_path / "c.zt") as w:
        w.add("a", np.arange(16, dtype=np.float32), checksum="crc32c")
    flipped = bytearray((tmp_path / "c.zt").read_bytes())
    flipped[64] ^= 1  # the first byte of the 64-aligned data
    (tmp_path / "c.zt").write_bytes(bytes(flipped))
    r = Reader(tmp_path / "c.zt")
    for read in (
        lambda: r.read_numpy("a"),
        lambda: r.read("a"),
        lambda: r.read_torch("a"),
        lambda: r.read_into("a", np.zeros(16, np.float32)),
    ):
        with pytest.raises(RuntimeError, match="checksum mismatch"):  # 1.2.3 never checked raw digests
            read()
    assert issubclass(ZTensorError, RuntimeError) and issubclass(ZTensorError, Exception)


def test_write_after_finish_is_a_runtime_error(tmp_path):
    w = Writer(tmp_path / "a.zt")
    w.add("a", np.zeros(2))
    w.finish()
    for late in (
        w.finish,
        lambda: w.add("b", np.zeros(2)),
        lambda: w.write_numpy("b", np.zeros(2)),
        lambda: w.write_torch("b", torch.zeros(2)),
        lambda: w.write("b", ztensor.Tensor({"data": np.zeros(2)})),
    ):
        with pytest.raises(ZTensorError, match="already finished"):
            late()
        with pytest.raises(RuntimeError):
            late()


@pytest.mark.parametrize("save", ["save_file", "save"])
def test_shared_tensors_error_is_runtime_and_value_error(tmp_path, save):
    base = torch.zeros(8)
    tensors = {"a": base, "b": base[2:6]}
    args = (tensors, str(tmp_path / "s.zt")) if save == "save_file" else (tensors,)
    with pytest.raises(RuntimeError, match="Some tensors share memory"):  # as safetensors
        getattr(ztorch, save)(*args)
    with pytest.raises(ValueError, match="share memory"):  # as ztensor 1.2.3
        getattr(ztorch, save)(*args)
    with pytest.raises(RuntimeError, match="Some tensors share memory"):
        safetensors.torch.save(tensors)


def test_read_into_checks_shape_and_kind_before_writing(tmp_path):
    p = _file(tmp_path, a=np.arange(8, dtype=np.float32).reshape(2, 4), b=np.arange(3, dtype=np.int16))
    r = Reader(p)
    for dst in (
        np.zeros(8, np.float32),
        np.zeros((3, 2, 4), np.float32),  # 1.2.3 broadcast this one
        torch.zeros(8),
        torch.zeros(3, 2, 4),
    ):
        with pytest.raises(ValueError, match=r"shape \[2, 4\]"):
            r.read_into("a", dst)
    # a kind change is refused for torch as for NumPy (1.2.3 let torch's copy_ truncate)
    with pytest.raises(TypeError, match="cannot cast"):
        r.read_into("a", torch.zeros(2, 4, dtype=torch.int8))
    with pytest.raises(TypeError, match="cannot cast"):
        r.read_into("a", np.zeros((2, 4), np.int8))
    # nothing is written when one destination is wrong
    good, bad = np.full(3, 7, np.int16), np.zeros(5, np.float32)
    with pytest.raises(ValueError):
        r.read_into({"b": good, "a": bad})
    np.testing.assert_array_equal(good, [7, 7, 7])
    with pytest.raises(TypeError, match="dst is required"):
        r.read_into("a")
    with pytest.raises(TypeError, match="numpy.ndarray or a torch.Tensor"):
        r.read_into("a", [0] * 8)
    with pytest.raises(KeyError):
        r.read_into("nope", np.zeros(1))
    ro = np.zeros((2, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        r.read_into("a", ro)


def test_read_into_views_widening_and_uint16(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    p = _file(tmp_path, a=a, u=np.array([0, 65535, 7], np.uint16), z=np.float64(2.5))
    r = Reader(p)
    big = np.zeros((4, 8), np.float64)
    r.read_into("a", big[1:, ::2])  # a strided view, widened
    np.testing.assert_array_equal(big[1:, ::2], a)
    assert not big[0].any() and not big[:, 1::2].any()
    tbig = torch.zeros(4, 6, dtype=torch.float16)
    r.read_into({"a": tbig.t()[1:5].t()[:3]})
    assert torch.equal(tbig[:3, 1:5], torch.from_numpy(a).half())
    u = torch.zeros(3, dtype=torch.uint16)
    r.read_into("u", u)  # 1.2.3 could not read uint16 into torch
    assert u.view(torch.int16).tolist() == [0, -1, 7]
    z = np.zeros((), np.float64)
    r.read_into("z", z)  # 0-d into 0-d (1.2.3: (1,) only)
    assert z == 2.5
    out = np.zeros((3, 4), np.float32)
    r.read_into("a", out)
    view = r.read_numpy("a")
    view[0, 0] = 99
    assert out[0, 0] == 0  # dst owns its data
    param = torch.nn.Parameter(torch.zeros(3, 4))
    r.read_into("a", param)  # 1.2.3: copy_ into a leaf that requires grad raised
    assert torch.equal(param.detach(), torch.from_numpy(a)) and param.requires_grad and param.grad_fn is None


def test_tensor_constructor_validates_and_infers(tmp_path):
    t = ztensor.Tensor({"data": np.zeros((2, 3), np.float16)})
    assert (t.shape, t.dtype, t.type, t.format, t.attributes) == ([2, 3], "float16", None, "dense", None)
    assert repr(t) == "<ztensor.Tensor shape=[2, 3] dtype='float16' format='dense'>"
    # 1.2.3 kept str(np.float32), "<class 'numpy.float32'>"
    assert ztensor.Tensor({"data": np.zeros(3)}, dtype=np.float32).dtype == "float32"
    import ml_dtypes

    f8 = ztensor.Tensor({"data": np.zeros(4, ml_dtypes.float8_e5m2)})
    assert (f8.dtype, f8.type) == ("uint8", "f8_e5m2")  # as TensorMetadata reports it
    assert ztensor.Tensor({"data": np.float32(1)}).shape == []
    with pytest.raises(ValueError, match="needs 6"):
        ztensor.Tensor({"data": np.zeros(5)}, shape=[2, 3])  # 1.2.3 accepted it and wrote it
    with pytest.raises(ValueError, match="negative"):
        ztensor.Tensor({"data": np.zeros(0)}, shape=[-1, 0])
    with pytest.raises(ValueError, match="explicit shape"):
        ztensor.Tensor({"values": np.zeros(1)}, format="sparse_csr")
    with pytest.raises(TypeError, match="must be a dict"):
        ztensor.Tensor([np.zeros(1)])
    csr = ztensor.Tensor({"values": np.zeros(1)}, shape=[1, 1], format="sparse_csr")
    with pytest.raises(RuntimeError, match="dense"):
        csr.numpy()
    with pytest.raises(RuntimeError, match="dense"):
        csr.torch()
    flat = ztensor.Tensor({"data": np.arange(6, dtype=np.int8)}, shape=[3, 2])
    assert flat.numpy().shape == (3, 2) and flat.torch().shape == (3, 2)
    c = ztensor.Tensor({"data": np.array([1 + 2j, -1j], np.complex64)}, dtype=np.complex64)
    assert (c.dtype, c.type) == ("complex64", "complex64")
    with Writer(tmp_path / "c.zt") as w:
        w.write("c", c)  # the NumPy name of a logical type is accepted as the dtype
    back = Reader(tmp_path / "c.zt").read("c")
    assert (back.dtype, back.type) == ("float32", "complex64")  # as TensorMetadata reports it
    np.testing.assert_array_equal(back.numpy(), c.numpy())  # 1.2.3 could not read complex at all
    bf = ztensor.Tensor({"data": np.arange(4, dtype=np.float32).astype(ml_dtypes.bfloat16)})
    tb = bf.torch()  # 1.2.3: TypeError
    assert tb.dtype == torch.bfloat16 and tb.tolist() == [0, 1, 2, 3]
    tb[0] = 5
    assert float(bf.numpy()[0]) == 5  # shares memory, as torch.from_numpy did


def test_package_exports_tensor():
    from ztensor._tensor import Tensor

    assert "Tensor" in ztensor.__all__ and ztensor.Tensor is Tensor
    assert all(hasattr(ztensor, n) for n in ztensor.__all__)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_read_into_cuda_and_pinned(tmp_path):
    a = np.random.default_rng(0).standard_normal((64, 33)).astype(np.float32)
    p = _file(tmp_path, a=a, h=a.astype(np.float16))
    r = Reader(p)
    gpu = torch.empty(64, 33, device="cuda")
    pinned = torch.empty(64, 33, dtype=torch.float16, pin_memory=True)
    r.read_into({"a": gpu, "h": pinned})
    assert torch.equal(gpu.cpu(), torch.from_numpy(a))
    assert torch.equal(pinned, torch.from_numpy(a.astype(np.float16)))
    t = r.read_torch("a", device="cuda", copy=True)
    assert t.device.type == "cuda" and torch.equal(t.cpu(), torch.from_numpy(a))
    assert r.read("a").torch(device="cuda").device.type == "cuda"
    with Writer(tmp_path / "g.zt") as w:
        w.write_torch("g", gpu[:, 1:].t())  # a non-contiguous CUDA view
    np.testing.assert_array_equal(Reader(tmp_path / "g.zt").read_numpy("g"), a[:, 1:].T)
