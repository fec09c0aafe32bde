"""Round-trip tests for the package under test (no reference involved).

Files written by the package are also decoded with the independent CBOR/layout
model in conftest.py, so a writer bug cannot be hidden by a matching reader bug.
"""

from __future__ import annotations

import gc
import math
import os
import pathlib
import re

import ml_dtypes
import numpy as np
import pytest

import ztensor
import ztensor.numpy as ztnp
from conftest import (
    ALL_DTYPE_NAMES,
    DTYPE_INFO,
    MANIFEST_DTYPE_WIDTH,
    all_dtypes,
    assert_bits_equal,
    component_bytes,
    digest_string,
    file_sha256,
    le_bytes,
    parse_zt,
    parse_zt_file,
)
from ztensor import Reader, Writer, ZTensorError

SAMPLES = all_dtypes()
CHECKSUMS = ["none", "crc32c", "sha256"]
COMPRESS = [None, True, 1, 19]
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _sample(name):
    return SAMPLES[name].copy()


def _is_compressed(compress) -> bool:
    if compress is True:
        return True
    if compress in (None, False):
        return False
    return compress > 0


def _listdir(d):
    return sorted(os.listdir(d))


# ---------------------------------------------------------------------------
# module surface
# ---------------------------------------------------------------------------


def test_module_surface(tmp_path):
    assert isinstance(ztensor.__version__, str) and ztensor.__version__
    assert issubclass(ZTensorError, Exception)
    p = tmp_path / "a.zt"
    ztnp.save_file({"x": np.arange(3, dtype=np.int32)}, str(p))
    r = ztensor.open(str(p))
    assert isinstance(r, Reader)
    assert r.format == "zt"
    assert_bits_equal(r["x"], np.arange(3, dtype=np.int32))
    r.close()


# ---------------------------------------------------------------------------
# every dtype x compression x checksum, checked against the file model
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("checksum", CHECKSUMS)
@pytest.mark.parametrize("compress", COMPRESS, ids=lambda c: f"compress={c}")
@pytest.mark.parametrize("dtype_name", ALL_DTYPE_NAMES)
def test_dtype_roundtrip(tmp_path, dtype_name, compress, checksum):
    arr = _sample(dtype_name)
    storage, ltype, mdtype = DTYPE_INFO[dtype_name]
    p = tmp_path / "x.zt"
    with Writer(str(p)) as w:
        w.add("t", arr, compress=compress, checksum=checksum)
    data = p.read_bytes()

    # --- what is on disk, decoded independently ---
    manifest, mstart = parse_zt(data)
    assert manifest["version"] == "1.2.0"
    obj = manifest["objects"]["t"]
    assert obj["format"] == "dense"
    assert obj["shape"] == list(arr.shape)  # logical shape (complex: not doubled)
    comp = obj["components"]["data"]
    assert comp["dtype"] == mdtype
    assert comp.get("type") == ltype
    assert comp["offset"] % 64 == 0 and comp["offset"] >= 64
    assert comp["offset"] + comp["length"] <= mstart
    stored = component_bytes(data, comp)
    if _is_compressed(compress):
        assert comp["encoding"] == "zstd"
        assert comp["uncompressed_length"] == arr.nbytes
        assert stored[:4] == ZSTD_MAGIC
    else:
        assert "encoding" not in comp, "raw encoding is never written explicitly"
        assert "uncompressed_length" not in comp
        assert stored == le_bytes(arr)
        assert len(stored) == math.prod(arr.shape) * MANIFEST_DTYPE_WIDTH[mdtype] * (
            2 if dtype_name.startswith("complex") else 1
        )
    if checksum == "none":
        assert "digest" not in comp
    else:
        assert comp["digest"] == digest_string(checksum, stored)

    # --- what the package reports ---
    with Reader(str(p)) as r:
        assert_bits_equal(r["t"], arr, "r[name]")
        assert_bits_equal(r.read_tensor("t"), arr, "read_tensor copy=False")
        assert_bits_equal(r.read_tensor("t", copy=True), arr, "read_tensor copy=True")
        md = r.metadata("t")
        assert md.name == "t"
        assert md.shape == list(arr.shape)
        assert all(type(s) is int for s in md.shape)
        assert md.dtype == storage
        assert md.type == ltype
        assert md.format == "dense"
        c = md.components["data"]
        assert c["dtype"] == storage
        assert c["type"] == ltype
        assert c["offset"] == comp["offset"]
        assert c["length"] == comp["length"]
        assert c["encoding"] == ("zstd" if _is_compressed(compress) else "raw")
        assert c["uncompressed_length"] == (arr.nbytes if _is_compressed(compress) else None)
        assert c["digest"] == comp.get("digest")
        assert r.verify() is None
    for copy in (False, True):
        got = ztnp.load_file(str(p), copy=copy)
        assert list(got) == ["t"]
        assert_bits_equal(got["t"], arr, f"load_file copy={copy}")


def test_digest_string_formats(tmp_path):
    p = tmp_path / "d.zt"
    arr = np.arange(100, dtype=np.float32)
    with Writer(str(p)) as w:
        w.add("c", arr, checksum="crc32c")
        w.add("s", arr, checksum="sha256")
        w.add("cz", arr, compress=True, checksum="crc32c")
        w.add("sz", arr, compress=True, checksum="sha256")
    with Reader(str(p)) as r:
        for n in ("c", "cz"):
            assert re.fullmatch(r"crc32c:0x[0-9A-F]{8}", r.metadata(n).components["data"]["digest"])
        for n in ("s", "sz"):
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", r.metadata(n).components["data"]["digest"])
        # the digest covers the stored (compressed) bytes, so raw and zstd digests differ
        assert r.metadata("c").components["data"]["digest"] != r.metadata("cz").components["data"]["digest"]


def test_manifest_key_order_and_sorting(tmp_path):
    """Reference-compatible manifest layout (docs/format.md sections 3.2 and 12)."""
    p = tmp_path / "k.zt"
    names = ["b", "a", "é", "10", "9", "B", "a.b", "a_b", "aa", "\U0001f600", "\ufffd"]
    with Writer(str(p), metadata={"z": 1, "a": 2}) as w:
        for i, n in enumerate(names):
            w.add(n, np.arange(i + 1, dtype=np.float64), compress=(i % 2 == 1), checksum=CHECKSUMS[i % 3])
        w.add("f8", _sample("float8_e4m3fn"))
    manifest, _ = parse_zt_file(p)
    assert list(manifest) == ["version", "attributes", "objects"]
    keys = list(manifest["objects"])
    assert keys == sorted(keys, key=lambda s: s.encode("utf-8"))
    order = ["dtype", "type", "offset", "length", "uncompressed_length", "encoding", "digest"]
    for name, obj in manifest["objects"].items():
        assert list(obj) == ["shape", "format", "components"], name
        for comp in obj["components"].values():
            ks = list(comp)
            assert ks == [k for k in order if k in ks], (name, ks)
    assert list(manifest["attributes"]) == ["a", "z"]


# ---------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------

SHAPES = [(), (0,), (0, 3), (3, 0, 2), (1,), (1, 1, 1), (1000, 33), (2, 3, 4, 5)]


@pytest.mark.parametrize("compress", [None, True], ids=["raw", "zstd"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_shapes(tmp_path, shape, compress):
    n = math.prod(shape)
    arr = (np.arange(n, dtype=np.float32) * 1.25 - 7).reshape(shape)
    p = tmp_path / "s.zt"
    with Writer(str(p)) as w:
        w.add("t", arr, compress=compress, checksum="crc32c")
    manifest, mstart = parse_zt_file(p)
    comp = manifest["objects"]["t"]["components"]["data"]
    assert manifest["objects"]["t"]["shape"] == list(shape)
    assert comp["offset"] % 64 == 0 and comp["offset"] + comp["length"] <= mstart
    if compress:
        assert comp["uncompressed_length"] == n * 4
    else:
        assert comp["length"] == n * 4
    with Reader(str(p)) as r:
        assert r.metadata("t").shape == list(shape)
        for got in (r["t"], r.read_tensor("t", copy=True)):
            assert got.shape == shape
            assert_bits_equal(got, arr)
        r.verify()
    got = ztnp.load_file(str(p))["t"]
    assert got.shape == shape and got.dtype == np.float32
    assert_bits_equal(got, arr)


@pytest.mark.parametrize("dtype_name", ALL_DTYPE_NAMES)
def test_scalar_every_dtype(tmp_path, dtype_name):
    arr = _sample(dtype_name).reshape(-1)[5:6].reshape(())  # 0-d
    assert arr.ndim == 0
    p = tmp_path / "s.zt"
    ztnp.save_file({"s": arr, "z": np.zeros((0,), dtype=arr.dtype)}, str(p))
    manifest, _ = parse_zt_file(p)
    assert manifest["objects"]["s"]["shape"] == []
    assert manifest["objects"]["z"]["shape"] == [0]
    assert manifest["objects"]["z"]["components"]["data"]["length"] == 0
    got = ztnp.load_file(str(p))
    assert got["s"].shape == () and got["z"].shape == (0,)
    assert_bits_equal(got["s"], arr)
    assert got["z"].dtype == arr.dtype


def test_zero_length_blob_layout(tmp_path):
    """Zero-length blobs sit at the aligned position; the next blob may share it."""
    p = tmp_path / "z.zt"
    with Writer(str(p)) as w:
        w.add("a", np.array([1.0], dtype=np.float32))
        w.add("b", np.zeros((0, 3), dtype=np.float32))
        w.add("c", np.zeros((0,), dtype=np.int64))
        w.add("d", np.array([7], dtype=np.uint8))
    manifest, mstart = parse_zt_file(p)
    offs = {k: v["components"]["data"]["offset"] for k, v in manifest["objects"].items()}
    assert offs == {"a": 64, "b": 128, "c": 128, "d": 128}
    assert mstart == 129
    got = ztnp.load_file(str(p))
    assert got["b"].shape == (0, 3) and got["c"].shape == (0,)
    assert got["d"].tolist() == [7]


# ---------------------------------------------------------------------------
# compression options
# ---------------------------------------------------------------------------


def _compressible():
    return np.tile(np.arange(33, dtype=np.float64), (1000, 1))


def test_compress_true_is_level_3(tmp_path):
    arr = _compressible()
    a, b, c = tmp_path / "a.zt", tmp_path / "b.zt", tmp_path / "c.zt"
    with Writer(str(a)) as w:
        w.add("x", arr, compress=True)
    with Writer(str(b)) as w:
        w.add("x", arr, compress=3)
    with Writer(str(c)) as w:
        w.add("x", arr, compress=19)
    assert a.read_bytes() == b.read_bytes()
    ca = parse_zt_file(a)[0]["objects"]["x"]["components"]["data"]
    cc = parse_zt_file(c)[0]["objects"]["x"]["components"]["data"]
    # a different level gives a different frame (level is really passed through)
    assert component_bytes(a.read_bytes(), ca) != component_bytes(c.read_bytes(), cc)


def test_all_levels(tmp_path):
    arr = _compressible()
    p = tmp_path / "l.zt"
    with Writer(str(p)) as w:
        for level in range(1, 23):
            w.add(f"l{level:02d}", arr, compress=level, checksum="sha256")
    manifest, _ = parse_zt_file(p)
    with Reader(str(p)) as r:
        assert len(r) == 22
        for level in range(1, 23):
            name = f"l{level:02d}"
            comp = manifest["objects"][name]["components"]["data"]
            assert comp["encoding"] == "zstd"
            assert comp["length"] < arr.nbytes // 4, "repetitive data must actually compress"
            assert_bits_equal(r[name], arr)
        r.verify()


@pytest.mark.parametrize("compress", [None, False, 0, -1, -7], ids=repr)
def test_falsy_and_negative_compress_is_raw(tmp_path, compress):
    arr = _compressible()
    p, q = tmp_path / "p.zt", tmp_path / "q.zt"
    with Writer(str(p)) as w:
        w.add("x", arr, compress=compress)
    with Writer(str(q)) as w:
        w.add("x", arr)
    assert p.read_bytes() == q.read_bytes()
    comp = parse_zt_file(p)[0]["objects"]["x"]["components"]["data"]
    assert "encoding" not in comp and comp["length"] == arr.nbytes


@pytest.mark.parametrize("bad", ["zstd", 1.5, [3], b"x", object()], ids=repr)
def test_compress_bad_type(tmp_path, bad):
    p = tmp_path / "x.zt"
    w = Writer(str(p))
    with pytest.raises(TypeError):
        w.add("x", np.zeros(3), compress=bad)
    del w
    gc.collect()


@pytest.mark.parametrize("bad", ["md5", "CRC32C", "SHA256", "", "crc32", " sha256"])
def test_checksum_bad_value(tmp_path, bad):
    w = Writer(str(tmp_path / "x.zt"))
    with pytest.raises(ValueError):
        w.add("x", np.zeros(3), checksum=bad)


def test_checksum_none_object(tmp_path):
    w = Writer(str(tmp_path / "x.zt"))
    with pytest.raises((TypeError, ValueError)):
        w.add("x", np.zeros(3), checksum=None)


def test_compression_option_of_save_file(tmp_path):
    arr = _compressible()
    paths = {}
    for comp in (False, True, 3, 12):
        p = tmp_path / f"c{comp}.zt"
        ztnp.save_file({"x": arr}, str(p), compression=comp)
        paths[comp] = p
        c = parse_zt_file(p)[0]["objects"]["x"]["components"]["data"]
        assert (c.get("encoding") == "zstd") == (comp is not False)
        assert "digest" not in c
        assert_bits_equal(ztnp.load_file(str(p))["x"], arr)
    assert paths[True].read_bytes() == paths[3].read_bytes()


# ---------------------------------------------------------------------------
# input conversion: byte order, layout, unsupported dtypes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [">f8", ">f4", ">f2", ">i8", ">i4", ">i2", ">u8", ">u4", ">u2", ">c8", ">c16"])
def test_big_endian_input_stored_little_endian(tmp_path, dt):
    native = np.dtype(dt).newbyteorder("<")
    vals = np.arange(-5, 19).astype(native) if native.kind in "fic" else np.arange(24).astype(native)
    if native.kind in "fc":
        vals[1] = np.inf
        vals[2] = -0.0
        vals[3] = np.nan
    be = vals.astype(dt).reshape(4, 6)
    assert be.dtype.byteorder == ">"
    p = tmp_path / "be.zt"
    with Writer(str(p)) as w:
        w.add("x", be)
        w.add("z", be, compress=True)
    data = p.read_bytes()
    manifest, _ = parse_zt(data)
    assert component_bytes(data, manifest["objects"]["x"]["components"]["data"]) == vals.tobytes()
    got = ztnp.load_file(str(p))
    for k in ("x", "z"):
        assert got[k].dtype == native
        assert got[k].dtype.isnative
        assert got[k].shape == (4, 6)
        assert np.array_equal(got[k], vals.reshape(4, 6), equal_nan=True)
        assert_bits_equal(got[k], vals.reshape(4, 6))


def test_noncontiguous_inputs(tmp_path):
    base = np.arange(7 * 9 * 2, dtype=np.int32).reshape(7, 9, 2)
    cases = {
        "strided": base[::2, 1::3],
        "transposed": base.T,
        "fortran": np.asfortranarray(base),
        "negstride": base[::-1, :, ::-1],
        "bf16_T": base.astype(np.float32).astype(ml_dtypes.bfloat16).T,
        "c64_strided": (base + 1j * base).astype(np.complex64)[:, ::2],
    }
    p = tmp_path / "nc.zt"
    with Writer(str(p)) as w:
        for k, v in cases.items():
            w.add(k, v)
    p2 = tmp_path / "nc2.zt"
    ztnp.save_file(cases, str(p2), compression=True)
    for path in (p, p2):
        got = ztnp.load_file(str(path))
        for k, v in cases.items():
            assert_bits_equal(got[k], np.ascontiguousarray(v), k)


def _unsupported_arrays():
    out = {
        "object": np.array([1, "a", None], dtype=object),
        "unicode": np.array(["ab", "c"]),
        "bytes": np.array([b"ab", b"c"]),
        "datetime64": np.array(["2020-01-01"], dtype="datetime64[D]"),
        "timedelta64": np.array([1, 2], dtype="timedelta64[s]"),
        "structured": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f4")]),
        "void": np.zeros(3, dtype="V4"),
    }
    if np.dtype(np.longdouble).itemsize > 8:
        out["longdouble"] = np.arange(3, dtype=np.longdouble)
        out["clongdouble"] = np.arange(3, dtype=np.clongdouble)
    return out


@pytest.mark.parametrize("kind", list(_unsupported_arrays()))
def test_unsupported_dtype_rejected(tmp_path, kind):
    arr = _unsupported_arrays()[kind]
    p = tmp_path / "u.zt"
    w = Writer(str(p))
    with pytest.raises((TypeError, ValueError)):
        w.add("x", arr)
    del w
    gc.collect()
    assert not p.exists()
    with pytest.raises((TypeError, ValueError)):
        ztnp.save_file({"x": arr}, str(p))
    assert not p.exists()
    assert _listdir(tmp_path) == []
    with pytest.raises((TypeError, ValueError)):
        ztnp.save({"x": arr})


# ---------------------------------------------------------------------------
# Writer behaviour
# ---------------------------------------------------------------------------


def test_finish_returns_size_and_second_finish_fails(tmp_path):
    p = tmp_path / "f.zt"
    w = Writer(str(p))
    w.add("a", np.arange(10, dtype=np.int16))
    size = w.finish()
    assert isinstance(size, int)
    assert size == os.path.getsize(p)
    with pytest.raises((ZTensorError, ValueError)):
        w.finish()
    with pytest.raises((ZTensorError, ValueError)):
        w.add("b", np.arange(3))
    assert size == os.path.getsize(p)
    assert_bits_equal(ztnp.load_file(str(p))["a"], np.arange(10, dtype=np.int16))


def test_empty_file(tmp_path):
    p = tmp_path / "e.zt"
    size = Writer(str(p)).finish()
    data = p.read_bytes()
    assert size == len(data) == 48
    manifest, mstart = parse_zt(data)
    assert mstart == 8 and manifest == {"version": "1.2.0", "objects": {}}
    with Reader(str(p)) as r:
        assert len(r) == 0 and list(r) == [] and r.keys() == []
        assert r.metadata() == {}
        assert r.load_numpy() == {}
        r.verify()
    assert ztnp.load_file(str(p)) == {}


def test_duplicate_and_empty_names_rejected(tmp_path):
    p = tmp_path / "d.zt"
    w = Writer(str(p))
    w.add("a", np.arange(3))
    with pytest.raises((ZTensorError, ValueError)):
        w.add("a", np.arange(4))
    with pytest.raises((ZTensorError, ValueError)):
        w.add("", np.arange(4))
    with pytest.raises(TypeError):
        w.add(5, np.arange(4))
    del w
    gc.collect()


def test_writer_is_atomic_until_finish(tmp_path):
    p = tmp_path / "w.zt"
    w = Writer(str(p))
    w.add("a", np.arange(1000, dtype=np.float64))
    assert not p.exists(), "target must not appear before finish()"
    w.finish()
    assert p.exists()

    old = p.read_bytes()
    w = Writer(str(p))
    w.add("b", np.arange(5, dtype=np.float64))
    assert p.read_bytes() == old, "existing target must stay intact until finish()"
    w.finish()
    got = ztnp.load_file(str(p))
    assert list(got) == ["b"]
    assert _listdir(tmp_path) == ["w.zt"]


def test_writer_context_exception_publishes_nothing(tmp_path):
    p = tmp_path / "w.zt"
    with pytest.raises(RuntimeError, match="boom"):
        with Writer(str(p)) as w:
            w.add("a", np.arange(100000, dtype=np.float64))
            raise RuntimeError("boom")
    gc.collect()
    assert _listdir(tmp_path) == []

    ztnp.save_file({"old": np.arange(4, dtype=np.int8)}, str(p))
    h = file_sha256(p)
    with pytest.raises(KeyError):
        with Writer(str(p)) as w:
            w.add("a", np.arange(100000, dtype=np.float64))
            raise KeyError("boom")
    gc.collect()
    assert file_sha256(p) == h
    assert _listdir(tmp_path) == ["w.zt"]
    # an error raised by the writer itself inside the block
    with pytest.raises((TypeError, ValueError)):
        with Writer(str(p)) as w:
            w.add("a", np.arange(3, dtype=np.float64))
            w.add("b", np.array(["x"]))
    gc.collect()
    assert file_sha256(p) == h
    assert _listdir(tmp_path) == ["w.zt"]
    assert_bits_equal(ztnp.load_file(str(p))["old"], np.arange(4, dtype=np.int8))


def test_dropped_writer_leaves_nothing(tmp_path):
    p = tmp_path / "w.zt"
    w = Writer(str(p))
    w.add("a", np.arange(100000, dtype=np.float64))
    del w
    gc.collect()
    assert _listdir(tmp_path) == []


def test_writer_context_success_finishes(tmp_path):
    p = tmp_path / "w.zt"
    with Writer(str(p)) as w:
        assert isinstance(w, Writer)
        w.add("x", np.arange(6, dtype=np.uint16).reshape(2, 3), compress=5, checksum="sha256")
    with pytest.raises((ZTensorError, ValueError)):
        w.finish()
    assert_bits_equal(ztnp.load_file(str(p))["x"], np.arange(6, dtype=np.uint16).reshape(2, 3))


def test_writer_positional_options(tmp_path):
    p = tmp_path / "w.zt"
    with Writer(str(p)) as w:
        w.add("x", np.arange(300, dtype=np.float32), True, "crc32c")
    c = parse_zt_file(p)[0]["objects"]["x"]["components"]["data"]
    assert c["encoding"] == "zstd" and c["digest"].startswith("crc32c:0x")


@pytest.mark.parametrize("alignment", [128, 4096])
def test_alignment_option(tmp_path, alignment):
    p = tmp_path / "a.zt"
    arrs = {f"t{i}": np.arange(i * 7 + 1, dtype=np.float32) for i in range(5)}
    with Writer(str(p), alignment=alignment) as w:
        for k, v in arrs.items():
            w.add(k, v, compress=(k == "t3"))
    manifest, mstart = parse_zt_file(p)
    for obj in manifest["objects"].values():
        off = obj["components"]["data"]["offset"]
        assert off % alignment == 0
    data = p.read_bytes()
    assert data[8:alignment] == b"\x00" * (alignment - 8)
    got = ztnp.load_file(str(p))
    for k, v in arrs.items():
        assert_bits_equal(got[k], v)


@pytest.mark.parametrize("alignment", [0, 32, 100, 63, -64, 2**31, 2**40])
def test_bad_alignment_rejected(tmp_path, alignment):
    with pytest.raises((ValueError, TypeError, ZTensorError)):
        w = Writer(str(tmp_path / "a.zt"), alignment=alignment)
        w.add("x", np.arange(3))
        w.finish()


# ---------------------------------------------------------------------------
# file-level metadata
# ---------------------------------------------------------------------------

RICH_META = {
    "format": "pt",
    "author": "ünïcødé ✓ \U0001f600",
    "n": 42,
    "neg": -7,
    "big": 2**62,
    "pi": 3.141592653589793,
    "half": 1.5,
    "tenth": 0.1,
    "flag": True,
    "off": False,
    "nothing": None,
    "list": [1, "two", 3.5, None, [True, []]],
    "nested": {"a": {"b": {"c": "d"}}, "z": [], "e": {}},
}


def _assert_identical(a, b, path="$"):
    """Deep equality that also distinguishes bool/int/float."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__} ({a!r} vs {b!r})"
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _assert_identical(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_save_file_metadata_str(tmp_path):
    p = tmp_path / "m.zt"
    meta = {"format": "np", "b": "2", "a": "1"}
    ztnp.save_file({"x": np.arange(3)}, str(p), metadata=meta)
    with Reader(str(p)) as r:
        _assert_identical(r.metadata(), meta)
    manifest, _ = parse_zt_file(p)
    _assert_identical(manifest["attributes"], meta)


def test_save_file_metadata_rich(tmp_path):
    p = tmp_path / "m.zt"
    ztnp.save_file({"x": np.arange(3)}, str(p), metadata=RICH_META)
    with Reader(str(p)) as r:
        _assert_identical(r.metadata(), RICH_META)
    manifest, _ = parse_zt_file(p)
    _assert_identical(manifest["attributes"], RICH_META)


def test_writer_metadata_and_bytes_api_metadata(tmp_path):
    p = tmp_path / "m.zt"
    with Writer(str(p), metadata=RICH_META) as w:
        w.add("x", np.arange(3))
    with Reader(str(p)) as r:
        _assert_identical(r.metadata(), RICH_META)
    blob = ztnp.save({"x": np.arange(3)}, metadata={"k": "v"})
    q = tmp_path / "b.zt"
    q.write_bytes(blob)
    with Reader(str(q)) as r:
        _assert_identical(r.metadata(), {"k": "v"})


def test_no_metadata_is_empty_dict(tmp_path):
    p = tmp_path / "m.zt"
    ztnp.save_file({"x": np.arange(3)}, str(p))
    manifest, _ = parse_zt_file(p)
    assert "attributes" not in manifest
    with Reader(str(p)) as r:
        assert r.metadata() == {} and isinstance(r.metadata(), dict)
    q = tmp_path / "n.zt"
    ztnp.save_file({"x": np.arange(3)}, str(q), metadata=None)
    assert q.read_bytes() == p.read_bytes()


# ---------------------------------------------------------------------------
# numpy module: save/load, bytes API, order
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [False, True, 7], ids=repr)
def test_numpy_module_all_dtypes(tmp_path, compression):
    p = tmp_path / "all.zt"
    ztnp.save_file(SAMPLES, str(p), compression=compression)
    for copy in (False, True):
        got = ztnp.load_file(str(p), copy=copy)
        assert list(got) == list(SAMPLES), "load_file returns write order"
        for k, v in SAMPLES.items():
            assert_bits_equal(got[k], v, k)
    blob = ztnp.save(SAMPLES, compression=compression)
    assert isinstance(blob, bytes)
    assert blob == p.read_bytes()
    got = ztnp.load(blob)
    assert list(got) == list(SAMPLES)
    for k, v in SAMPLES.items():
        assert_bits_equal(got[k], v, k)
    del blob
    gc.collect()
    for k, v in SAMPLES.items():  # still valid after the bytes are gone
        assert_bits_equal(got[k], v, k)


def test_load_bytes_shapes(tmp_path):
    tensors = {"s": np.array(2.5), "e": np.zeros((0, 3), np.int8), "big": np.ones((1000, 33))}
    got = ztnp.load(ztnp.save(tensors))
    for k, v in tensors.items():
        assert_bits_equal(got[k], v, k)
    assert _listdir(tmp_path) == []


def test_order_semantics(tmp_path):
    p = tmp_path / "o.zt"
    order = ["zeta", "alpha", "mu", "beta", "Zed", "10", "9"]
    with Writer(str(p)) as w:
        for i, n in enumerate(order):
            w.add(n, np.full((2,), i, dtype=np.int32), compress=(i % 2 == 0))
    with Reader(str(p)) as r:
        expected_sorted = sorted(order, key=lambda s: s.encode())
        assert list(r) == expected_sorted
        assert r.keys() == expected_sorted
        assert list(r.load_numpy()) == order
        assert list(r.load_numpy(copy=True)) == order
        req = ["mu", "zeta", "9", "alpha"]
        d = r.read_tensors(req)
        assert list(d) == req
        for n in req:
            assert d[n].tolist() == [order.index(n)] * 2
        assert list(r.read_tensors(req, copy=True)) == req
        assert list(r.read_tensors([])) == []
    assert list(ztnp.load_file(str(p))) == order
    assert list(ztnp.load_file(str(p), copy=True)) == order
    assert list(ztnp.load(p.read_bytes())) == order


# ---------------------------------------------------------------------------
# Reader dict protocol, metadata objects, errors
# ---------------------------------------------------------------------------


def test_reader_dict_protocol(tmp_path):
    p = tmp_path / "r.zt"
    names = ["b", "a", "é", "\U0001f600", "\ufffd", "B", "a/b", "with space"]
    with Writer(str(p)) as w:
        for i, n in enumerate(names):
            w.add(n, np.arange(i + 1, dtype=np.int64))
    with Reader(str(p)) as r:
        assert r.format == "zt"
        assert len(r) == len(names)
        expected = sorted(names, key=lambda s: s.encode("utf-8"))
        assert list(r) == expected
        assert list(iter(r)) == expected
        assert r.keys() == expected
        assert isinstance(r.keys(), list)
        for i, n in enumerate(names):
            assert n in r
            assert r[n].tolist() == list(range(i + 1))
        assert "nope" not in r
        assert "" not in r
        with pytest.raises(KeyError):
            r["nope"]
        with pytest.raises(KeyError):
            r.read_tensor("nope")
        with pytest.raises(KeyError):
            r.read_tensor("nope", copy=True)
        with pytest.raises(KeyError):
            r.read_tensors(["a", "nope"])
        with pytest.raises(KeyError):
            r.metadata("nope")
        with pytest.raises(KeyError):
            r.read_components("nope")
        with pytest.raises((TypeError, ValueError, KeyError)):
            r[0]
        try:
            assert (5 in r) is False
        except TypeError:
            pass


def test_tensor_metadata_fields(tmp_path):
    p = tmp_path / "m.zt"
    with Writer(str(p)) as w:
        w.add("plain", np.zeros((2, 3), np.float32), checksum="crc32c")
        w.add("f8", _sample("float8_e5m2"), compress=True)
        w.add("c", np.zeros((5,), np.complex128), checksum="sha256")
        w.add("bf", np.zeros((4, 1), ml_dtypes.bfloat16))
    with Reader(str(p)) as r:
        m = r.metadata("plain")
        assert (m.name, m.shape, m.dtype, m.type, m.format) == ("plain", [2, 3], "float32", None, "dense")
        assert m.attributes in (None, {})
        assert set(m.components) == {"data"}
        comp = m.components["data"]
        assert set(comp) == {"dtype", "type", "offset", "length", "encoding", "uncompressed_length", "digest"}
        assert comp["encoding"] == "raw" and comp["uncompressed_length"] is None
        assert comp["length"] == 24 and comp["offset"] == 64
        assert comp["digest"] == digest_string("crc32c", bytes(24))
        m = r.metadata("f8")
        assert (m.shape, m.dtype, m.type) == ([16, 16], "uint8", "f8_e5m2")
        assert m.components["data"]["encoding"] == "zstd"
        assert m.components["data"]["uncompressed_length"] == 256
        assert m.components["data"]["digest"] is None
        m = r.metadata("c")
        assert (m.shape, m.dtype, m.type) == ([5], "float64", "complex128")
        assert m.components["data"]["length"] == 80
        assert m.components["data"]["digest"] == digest_string("sha256", bytes(80))
        m = r.metadata("bf")
        assert (m.shape, m.dtype, m.type) == ([4, 1], "bfloat16", None)


def test_read_components_dense(tmp_path):
    p = tmp_path / "c.zt"
    arrs = {k: SAMPLES[k] for k in ("float32", "complex64", "float8_e4m3fn", "bool", "bfloat16")}
    with Writer(str(p)) as w:
        for k, v in arrs.items():
            w.add(k, v, compress=(k == "complex64"))
    with Reader(str(p)) as r:
        for k, v in arrs.items():
            for copy in (False, True):
                comps = r.read_components(k, copy=copy)
                assert isinstance(comps, dict) and list(comps) == ["data"]
                d = comps["data"]
                assert isinstance(d, np.ndarray) and d.ndim == 1
                assert d.nbytes == v.nbytes
                assert d.tobytes() == le_bytes(v), k


def test_paths_pathlike(tmp_path):
    p = tmp_path / "dir ü" / "pl.zt"
    p.parent.mkdir()
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    with Writer(p) as w:
        w.add("x", arr)
    with Reader(p) as r:
        assert_bits_equal(r["x"], arr)
    with ztensor.open(p) as r:
        assert_bits_equal(r["x"], arr)
    q = tmp_path / "dir ü" / "pl2.zt"
    ztnp.save_file({"x": arr}, q)
    assert q.read_bytes() == p.read_bytes()
    assert_bits_equal(ztnp.load_file(q)["x"], arr)
    assert_bits_equal(ztnp.load_file(pathlib.PurePath(str(q)))["x"], arr)


def test_missing_directory_and_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        Reader(str(tmp_path / "nope.zt"))
    with pytest.raises(FileNotFoundError):
        ztnp.load_file(str(tmp_path / "nope.zt"))
    with pytest.raises(IsADirectoryError):
        Reader(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        ztnp.save_file({"x": np.arange(3)}, str(tmp_path / "no_such_dir" / "x.zt"))
    with pytest.raises(TypeError):
        Reader(12345)
    with pytest.raises(TypeError):
        Reader(None)


@pytest.mark.parametrize("fname", ["model.bin", "model", "MODEL.ZT", "model.zt.bak", "model.safetensors"])
def test_detection_by_content(tmp_path, fname):
    """Format detection: leading bytes first, extension second."""
    p = tmp_path / fname
    arr = np.arange(5, dtype=np.int16)
    ztnp.save_file({"x": arr}, str(p))
    with Reader(str(p)) as r:
        assert r.format == "zt"
        assert_bits_equal(r["x"], arr)
    assert_bits_equal(ztnp.load_file(str(p))["x"], arr)


# ---------------------------------------------------------------------------
# close(), lifetimes
# ---------------------------------------------------------------------------


def test_close(tmp_path):
    p = tmp_path / "c.zt"
    arr = np.arange(100, dtype=np.float64)
    with Writer(str(p)) as w:
        w.add("x", arr)
        w.add("z", arr, compress=True)
    r = Reader(str(p))
    a = r["x"]
    b = r.read_tensor("z")
    c = r.read_tensor("x", copy=True)
    r.close()
    calls = [
        lambda: r["x"],
        lambda: r.read_tensor("x"),
        lambda: r.read_tensor("x", copy=True),
        lambda: r.read_tensors(["x"]),
        lambda: r.load_numpy(),
        lambda: r.read_components("x"),
        lambda: r.verify(),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    r = None  # drops the reader: the arrays must outlive it
    gc.collect()
    for got in (a, b, c):
        assert_bits_equal(got, arr)
    a[0] = 5.0  # still writable memory, no crash
    assert a[0] == 5.0


def test_context_manager_reader(tmp_path):
    p = tmp_path / "c.zt"
    arr = np.arange(10, dtype=np.float32)
    ztnp.save_file({"x": arr}, str(p))
    r = Reader(str(p))
    with r as r2:
        assert r2 is r
        a = r2["x"]
    with pytest.raises(ValueError):
        r["x"]
    gc.collect()
    assert_bits_equal(a, arr)


def test_arrays_outlive_reader_and_file(tmp_path):
    p = tmp_path / "l.zt"
    arr = np.arange(4096, dtype=np.int32)
    ztnp.save_file({"x": arr, "z": arr[::-1].copy()}, str(p), compression=False)
    r = Reader(str(p))
    a = r["x"]
    d = ztnp.load_file(str(p))
    del r
    gc.collect()
    os.remove(p)
    gc.collect()
    assert_bits_equal(a, arr)
    assert_bits_equal(d["x"], arr)
    assert_bits_equal(d["z"], arr[::-1])


# ---------------------------------------------------------------------------
# zero-copy, copy-on-write, copy=True independence and alignment
# ---------------------------------------------------------------------------


def test_copy_on_write_never_touches_file(tmp_path):
    p = tmp_path / "cow.zt"
    arrs = {
        "x": np.arange(50000, dtype=np.float32),
        "c": SAMPLES["complex64"],
        "f8": SAMPLES["float8_e4m3fn"],
    }
    with Writer(str(p)) as w:
        for k, v in arrs.items():
            w.add(k, v, checksum="crc32c")
    h = file_sha256(p)
    d = ztnp.load_file(str(p))  # copy=False
    for k, v in d.items():
        assert v.flags.writeable, k
        v[...] = v.reshape(-1)[0]  # overwrite everything
    with Reader(str(p)) as r:
        x = r["x"]
        x[:] = -1.0
    gc.collect()
    assert file_sha256(p) == h, "writing to a zero-copy array changed the file"
    fresh = ztnp.load_file(str(p))
    for k, v in arrs.items():
        assert_bits_equal(fresh[k], v, k)
    with Reader(str(p)) as r:
        r.verify()  # digests still match: nothing reached the file
    del d, x
    gc.collect()
    assert file_sha256(p) == h


def test_separate_load_file_calls_do_not_share(tmp_path):
    p = tmp_path / "s.zt"
    arr = np.arange(1000, dtype=np.int64)
    ztnp.save_file({"x": arr}, str(p))
    a = ztnp.load_file(str(p))["x"]
    b = ztnp.load_file(str(p))["x"]
    assert not np.shares_memory(a, b)
    a[:] = 7
    assert_bits_equal(b, arr)
    assert_bits_equal(ztnp.load_file(str(p))["x"], arr)


def test_reads_from_one_reader_do_not_alias(tmp_path):
    """In ztensor 1.2.3, two zero-copy reads of one tensor from one Reader
    shared writable memory, so a write showed in every later read. Each read
    call now gets its own private mapping; tensors of one call that share
    bytes in the file (an HDF5 hard link, a torch storage) still share."""
    p = tmp_path / "a.zt"
    arr = np.arange(4096, dtype=np.float32)
    ztnp.save_file({"x": arr, "y": arr[::-1].copy()}, p)
    before = file_sha256(p)
    with Reader(p) as r:
        reads = [
            r["x"],
            r.read_tensor("x"),
            r.read_tensors(["x", "y"])["x"],
            r.load_numpy()["x"],
            r.read_components("x")["data"],
        ]
        for i in range(len(reads)):
            for j in range(i + 1, len(reads)):
                assert not np.shares_memory(reads[i], reads[j]), (i, j)
        reads[0][:] = 42
        for later in (r["x"], r.load_numpy()["x"], *reads[1:]):
            assert_bits_equal(later, arr)
        # still zero-copy: one call's tensors lie in one mapping as in the file
        both = r.read_tensors(["x", "y"])
        off = {k: r.metadata(k).components["data"]["offset"] for k in ("x", "y")}
        assert both["y"].ctypes.data - both["x"].ctypes.data == off["y"] - off["x"]
    assert file_sha256(p) == before


def test_tensors_sharing_bytes_in_one_call_still_share(tmp_path):
    torch = pytest.importorskip("torch")
    import ztensor.torch as ztt

    x = torch.arange(40, dtype=torch.float32)
    p = tmp_path / "tied.pt"
    torch.save({"x": x, "alias": x, "tail": x[10:]}, p)
    with Reader(p) as r:
        one = r.load_torch()
        assert one["alias"].data_ptr() == one["x"].data_ptr()
        assert one["tail"].data_ptr() == one["x"].data_ptr() + 40
        one["x"][10] = -1.0  # seen through the tensors that share its storage
        assert one["tail"][0] == -1.0 and one["alias"][10] == -1.0
        other = r.load_torch()  # a separate call: untouched
        assert other["x"][10] == 10.0 and other["tail"][0] == 10.0
    assert ztt.load_file(p)["x"][10] == 10.0


@pytest.mark.parametrize("compress", [None, True], ids=["raw", "zstd"])
def test_copy_true_independent_and_aligned(tmp_path, compress):
    p = tmp_path / "cp.zt"
    arrs = {k: SAMPLES[k] for k in ALL_DTYPE_NAMES}
    arrs["one_byte"] = np.array([3], dtype=np.uint8)
    arrs["scalar"] = np.array(1.5, dtype=np.float64)
    arrs["odd"] = np.arange(3, dtype=np.int16)
    with Writer(str(p)) as w:
        for k, v in arrs.items():
            w.add(k, v, compress=compress)
    with Reader(str(p)) as r:
        views = {k: r[k] for k in arrs}
        copies1 = {k: r.read_tensor(k, copy=True) for k in arrs}
        copies2 = r.read_tensors(list(arrs), copy=True)
        copies3 = r.load_numpy(copy=True)
    copies4 = ztnp.load_file(str(p), copy=True)
    groups = [copies1, copies2, copies3, copies4]
    for k, v in arrs.items():
        cs = [g[k] for g in groups]
        for c in cs:
            assert_bits_equal(c, v, k)
            assert c.ctypes.data % 64 == 0, f"{k}: copy not 64-byte aligned"
            assert c.flags.writeable
            assert not np.shares_memory(c, views[k])
        for i in range(len(cs)):
            for j in range(i + 1, len(cs)):
                assert not np.shares_memory(cs[i], cs[j]), k
        # mutate one copy: nothing else changes
        cs[0].reshape(-1).view(np.uint8)[:] ^= 0xFF
        for c in cs[1:]:
            assert_bits_equal(c, v, k)
        assert_bits_equal(views[k], v, k)


def test_zero_copy_views_are_aligned_and_writable(tmp_path):
    p = tmp_path / "zc.zt"
    arrs = {k: SAMPLES[k] for k in ALL_DTYPE_NAMES}
    with Writer(str(p)) as w:
        for k, v in arrs.items():
            w.add(k, v)
    with Reader(str(p)) as r:
        for k, v in arrs.items():
            a = r[k]
            assert a.ctypes.data % 64 == 0, k  # 64-aligned blob in a page-aligned map
            assert a.flags.writeable, k
            assert_bits_equal(a, v, k)


# ---------------------------------------------------------------------------
# save_file replacing files
# ---------------------------------------------------------------------------


def test_save_file_replaces_atomically_and_keeps_mapped_arrays(tmp_path):
    p = tmp_path / "rep.zt"
    a_old = np.arange(20000, dtype=np.float64)
    a_new = -np.arange(10, dtype=np.float32)
    ztnp.save_file({"x": a_old}, str(p))
    r = Reader(str(p))
    view = r["x"]
    d = ztnp.load_file(str(p))
    ztnp.save_file({"x": a_new, "y": a_new}, str(p))
    assert_bits_equal(view, a_old)
    assert_bits_equal(d["x"], a_old)
    got = ztnp.load_file(str(p))
    assert list(got) == ["x", "y"]
    assert_bits_equal(got["x"], a_new)
    r.close()
    assert _listdir(tmp_path) == ["rep.zt"]


def test_save_through_a_symlink_replaces_its_target(tmp_path):
    """A "latest.zt -> step-100.zt" link stays a link; the file it names is
    replaced atomically (as safetensors' open(.., "wb") writes through it)."""
    ckpt = tmp_path / "ckpts"
    ckpt.mkdir()
    target = ckpt / "step-100.zt"
    ztnp.save_file({"old": np.zeros(3, np.float32)}, target)
    link = tmp_path / "latest.zt"
    link.symlink_to("ckpts/step-100.zt")  # relative to the link's directory
    chain = tmp_path / "chain.zt"
    chain.symlink_to(link)
    ztnp.save_file({"new": np.ones(3, np.float32)}, chain)
    assert chain.is_symlink() and link.is_symlink()
    assert list(ztnp.load_file(target)) == ["new"]
    assert sorted(os.listdir(ckpt)) == ["step-100.zt"]  # no temporary left beside it
    # a dangling link names the file to create
    dangling = tmp_path / "next.zt"
    dangling.symlink_to(ckpt / "step-200.zt")
    ztnp.save_file({"x": np.arange(4)}, dangling)
    assert dangling.is_symlink()
    assert_bits_equal(ztnp.load_file(ckpt / "step-200.zt")["x"], np.arange(4))
    # a loop is an error, and creates nothing
    (tmp_path / "l1.zt").symlink_to(tmp_path / "l2.zt")
    (tmp_path / "l2.zt").symlink_to(tmp_path / "l1.zt")
    with pytest.raises(OSError):
        ztnp.save_file({"x": np.arange(4)}, tmp_path / "l1.zt")
    assert (tmp_path / "l1.zt").is_symlink()


def test_failed_save_file_keeps_old_file(tmp_path):
    p = tmp_path / "keep.zt"
    ztnp.save_file({"x": np.arange(5, dtype=np.int32)}, str(p))
    h = file_sha256(p)
    with pytest.raises((TypeError, ValueError)):
        ztnp.save_file(
            {"a": np.arange(100000, dtype=np.float64), "b": np.array([object()], dtype=object)}, str(p)
        )
    gc.collect()
    assert file_sha256(p) == h
    assert _listdir(tmp_path) == ["keep.zt"]
    with pytest.raises((TypeError, ValueError)):
        ztnp.save_file({"a": np.arange(10.0), "b": np.array(["s"])}, str(p), compression=True)
    assert file_sha256(p) == h
    assert_bits_equal(ztnp.load_file(str(p))["x"], np.arange(5, dtype=np.int32))


def test_save_file_bad_arguments(tmp_path):
    p = tmp_path / "bad.zt"
    with pytest.raises((TypeError, ValueError)):
        ztnp.save_file([np.arange(3)], str(p))
    with pytest.raises((TypeError, ValueError)):
        ztnp.save_file({"x": "not an array"}, str(p))
    with pytest.raises((TypeError, ValueError)):
        ztnp.save_file({"x": np.arange(3)}, str(p), compression="fast")
    with pytest.raises((TypeError, ValueError)):
        ztnp.load(12345)
    assert not p.exists()


def test_names_roundtrip_unicode(tmp_path):
    p = tmp_path / "n.zt"
    names = ["layer.0.weight", "ü/ß", "日本語", "\U0001f600", "a" * 1000, "tab\tnew\nline", "\x00nul"]
    tensors = {n: np.arange(i + 1, dtype=np.uint8) for i, n in enumerate(names)}
    ztnp.save_file(tensors, str(p))
    got = ztnp.load_file(str(p))
    assert list(got) == names
    for n in names:
        assert_bits_equal(got[n], tensors[n])
    manifest, _ = parse_zt_file(p)
    assert set(manifest["objects"]) == set(names)


def test_large_tensor_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    arr = rng.standard_normal((1000, 33))
    big = rng.integers(0, 255, size=(3, 1 << 20), dtype=np.uint8)
    p = tmp_path / "big.zt"
    with Writer(str(p)) as w:
        w.add("a", arr, checksum="sha256")
        w.add("b", big, compress=True, checksum="crc32c")
        w.add("c", big, compress=1)
    with Reader(str(p)) as r:
        assert_bits_equal(r["a"], arr)
        assert_bits_equal(r["b"], big)
        assert_bits_equal(r.read_tensor("c", copy=True), big)
        r.verify()


# ml_dtypes' one-element-per-byte narrow types: (storage dtype, logical type, valid byte patterns)
NARROW_ML = {
    "int4": ("int8", "int4", np.arange(-8, 8, dtype=np.int8)),
    "int2": ("int8", "int2", np.arange(-2, 2, dtype=np.int8)),
    "uint4": ("uint8", "uint4", np.arange(16, dtype=np.uint8)),
    "uint2": ("uint8", "uint2", np.arange(4, dtype=np.uint8)),
    "float8_e8m0fnu": ("uint8", "f8_e8m0fnu", np.arange(256, dtype=np.uint16).astype(np.uint8)),
    "float6_e2m3fn": ("uint8", "f6_e2m3fn", np.arange(64, dtype=np.uint8)),
    "float6_e3m2fn": ("uint8", "f6_e3m2fn", np.arange(64, dtype=np.uint8)),
    "float4_e2m1fn": ("uint8", "f4_e2m1fn", np.arange(16, dtype=np.uint8)),
}


@pytest.mark.parametrize("name", list(NARROW_ML))
def test_narrow_ml_dtypes_round_trip(tmp_path, name):
    """int4/int2/uint4/uint2, float8_e8m0fnu, float6 and float4 arrays save as
    their byte storage plus a logical type and come back as the same ml_dtypes
    dtype, bit for bit (what the ONNX reader also produces)."""
    storage, logical, patterns = NARROW_ML[name]
    dt = np.dtype(getattr(ml_dtypes, name))
    arr = np.tile(patterns, 3).view(dt).reshape(3, -1)
    path = tmp_path / "narrow.zt"
    ztnp.save_file({"x": arr, "t": arr[:, 1:].T}, path)
    # Signed narrow ints are stored sign-extended (ml_dtypes keeps the low bits only).
    canon = arr.astype(np.int8).view(dt) if storage == "int8" else arr
    for copy in (False, True):
        back = ztnp.load_file(path, copy=copy)
        assert back["x"].dtype == dt and back["x"].shape == arr.shape
        assert np.array_equal(back["x"].astype(np.float32), arr.astype(np.float32), equal_nan=True)
        assert back["x"].tobytes() == canon.tobytes()
        assert back["t"].tobytes() == np.ascontiguousarray(canon[:, 1:].T).tobytes()
    with ztensor.Reader(path) as r:
        md = r.metadata("x")
        assert (md.dtype, md.type) == (storage, logical)
        assert r.read_tensor("x").view(np.dtype(storage)).tolist() == patterns_as_stored(arr, storage)


def patterns_as_stored(arr, storage):
    """The storage bytes as plain integers (int8 values for the signed types)."""
    return arr.astype(np.int8).tolist() if storage == "int8" else arr.view(np.uint8).tolist()
