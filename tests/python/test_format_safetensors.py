"""Reading .safetensors files written by the real `safetensors` library.

Every file is created at test time with ``safetensors.numpy`` or
``safetensors.torch`` and every tensor is compared bit-exactly (dtype, shape,
bytes) with the library's own loader, through ``ztensor.numpy.load_file``
(zero-copy and copy), ``ztensor.Reader`` and ``ztensor.torch.load_file``.
Hostile files are opened in a child interpreter so that a crash fails the
test instead of killing pytest.
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest
import safetensors.numpy as st_np
import safetensors.torch as st_torch
import torch

import ztensor.numpy as ztnp
import ztensor.torch as zttorch
from conftest import all_dtypes, assert_bits_equal, file_sha256, np_dtype, run_hostile
from ztensor import Reader, ZTensorError

# dtypes safetensors.numpy can write (its _TYPES): no bfloat16 / fp8 in numpy
NUMPY_DTYPES = (
    "float64",
    "float32",
    "float16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "uint8",
    "bool",
    "complex64",
)

TORCH_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint64": torch.uint64,
    "uint32": torch.uint32,
    "uint16": torch.uint16,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
    "float8_e4m3fnuz": torch.float8_e4m3fnuz,
    "float8_e5m2fnuz": torch.float8_e5m2fnuz,
    "complex64": torch.complex64,
}


def t_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor (any dtype, any rank)."""
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def assert_torch_equal(actual: torch.Tensor, expected: torch.Tensor, what=""):
    assert actual.dtype == expected.dtype, f"{what}: {actual.dtype} != {expected.dtype}"
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: {actual.shape} != {expected.shape}"
    assert t_bytes(actual) == t_bytes(expected), f"{what}: bytes differ"


def numpy_arrays() -> dict:
    samples = all_dtypes()
    out = {name: samples[name] for name in NUMPY_DTYPES}
    out["scalar"] = np.array(3.5, dtype=np.float32)
    out["empty"] = np.zeros((0, 7), dtype=np.int16)
    out["odd_name/with.dots and spaces"] = np.arange(5, dtype=np.uint8)
    out["\u00fcn\u00efcode \u2603"] = np.arange(3, dtype=np.int16)
    return out


def torch_tensors() -> dict:
    samples = all_dtypes()
    out = {}
    for name, dt in TORCH_DTYPES.items():
        a = samples[name]
        if name == "bfloat16" or name.startswith("float8"):
            u = np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")
            out[name] = torch.from_numpy(u.copy()).view(dt)
        else:
            out[name] = torch.from_numpy(np.ascontiguousarray(a).copy())
    out["scalar_bf16"] = torch.tensor(1.25, dtype=torch.bfloat16)
    out["empty_f8"] = torch.zeros((3, 0), dtype=torch.float8_e5m2)
    return out


METADATA = {"format": "pt", "note": "h\u00e9llo \u2603", "empty": ""}


# ---------------------------------------------------------------------------
# bit-exact reads
# ---------------------------------------------------------------------------


def test_numpy_written_every_dtype(tmp_path):
    arrays = numpy_arrays()
    path = tmp_path / "np.safetensors"
    st_np.save_file(arrays, str(path), metadata=METADATA)
    ref = st_np.load_file(str(path))
    for copy in (False, True):
        ours = ztnp.load_file(path, copy=copy)
        assert set(ours) == set(ref)
        for k in ref:
            assert_bits_equal(ours[k], ref[k], f"{k} copy={copy}")
            assert_bits_equal(ours[k], arrays[k], f"{k} copy={copy} vs input")
    for eager in (False, True):
        with Reader(path, eager=eager) as r:
            for k in arrays:
                assert_bits_equal(r[k], ref[k], f"{k} eager={eager}")
    with Reader(path) as r:
        assert r.format == "safetensors"
        assert r.metadata() == METADATA
        assert sorted(r.keys()) == sorted(arrays)
        for k in arrays:
            assert_bits_equal(r[k], ref[k], k)
            md = r.metadata(k)
            assert list(md.shape) == list(arrays[k].shape)
        assert r.metadata("complex64").type == "complex64"
        assert r.metadata("complex64").dtype == "float32"
        r.verify()


def test_torch_written_every_dtype(tmp_path):
    tensors = torch_tensors()
    path = tmp_path / "t.safetensors"
    st_torch.save_file(tensors, str(path), metadata=METADATA)
    ref = st_torch.load_file(str(path))
    for copy in (False, True):
        ours = zttorch.load_file(path, copy=copy)
        assert set(ours) == set(ref)
        for k in ref:
            assert_torch_equal(ours[k], ref[k], f"{k} copy={copy}")
            assert_torch_equal(ours[k], tensors[k], f"{k} copy={copy} vs input")
    # numpy view of the same file: ml_dtypes for bf16 / fp8
    for copy in (False, True):
        arrays = ztnp.load_file(path, copy=copy)
        for k, t in ref.items():
            a = arrays[k]
            base = k if k in TORCH_DTYPES else {"scalar_bf16": "bfloat16", "empty_f8": "float8_e5m2"}[k]
            assert a.dtype == np_dtype(base), (k, a.dtype)
            assert a.shape == tuple(t.shape)
            assert np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes() == t_bytes(t), k
    with Reader(path) as r:
        assert r.metadata() == METADATA
        for k, lt in (
            ("float8_e4m3fn", "f8_e4m3fn"),
            ("float8_e5m2", "f8_e5m2"),
            ("float8_e4m3fnuz", "f8_e4m3fnuz"),
            ("float8_e5m2fnuz", "f8_e5m2fnuz"),
        ):
            assert r.metadata(k).type == lt
            assert r.metadata(k).dtype == "uint8"
        assert r.metadata("bfloat16").dtype == "bfloat16"


def test_safe_open_agrees(tmp_path):
    """Names, shapes and dtypes agree with safetensors' own lazy reader."""
    from safetensors import safe_open

    tensors = torch_tensors()
    path = tmp_path / "t.safetensors"
    st_torch.save_file(tensors, str(path))
    with safe_open(str(path), "pt") as f, Reader(path) as r:
        assert sorted(f.keys()) == sorted(r.keys())
        assert f.metadata() is None
        assert r.metadata() == {}
        for k in f.keys():
            assert_torch_equal(zttorch.load_file(path)[k], f.get_tensor(k), k)


def test_no_metadata_and_empty_file(tmp_path):
    path = tmp_path / "e.safetensors"
    st_np.save_file({}, str(path))
    with Reader(path) as r:
        assert r.format == "safetensors"
        assert len(r) == 0
        assert r.metadata() == {}
    assert ztnp.load_file(path) == {}


def test_unsupported_dtype_breaks_only_that_tensor(tmp_path):
    """F6_E2M3 (6-bit values packed across bytes) has no NumPy or torch type."""
    src = tmp_path / "src.safetensors"
    good = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    st_torch.save_file({"good": good, "scales": torch.arange(3, dtype=torch.uint8)}, str(src))
    data, n, header = header_and_data(src)
    header["scales"].update(dtype="F6_E2M3", shape=[4])  # 4 x 6 bits = the same 3 bytes
    hb = json.dumps(header).encode()
    path = tmp_path / "f6.safetensors"
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + data[8 + n :])
    with Reader(path) as r:
        assert sorted(r.keys()) == ["good", "scales"]
        assert_bits_equal(r["good"], good.numpy(), "good")
        with pytest.raises(ZTensorError, match="F6_E2M3"):
            r["scales"]
        with pytest.raises(ZTensorError, match="scales"):
            r.metadata("scales")
    with pytest.raises(ZTensorError, match="F6_E2M3"):
        ztnp.load_file(path)


def test_zero_copy_is_writable_and_private(tmp_path):
    arrays = {"w": np.arange(1000, dtype=np.float32).reshape(10, 100), "b": np.arange(7, dtype=np.int64)}
    path = tmp_path / "w.safetensors"
    st_np.save_file(arrays, str(path))
    before = file_sha256(path)
    ours = ztnp.load_file(path)
    for k, a in ours.items():
        assert a.flags.writeable, k
        a[...] = 0
    t = zttorch.load_file(path)
    t["w"].add_(1)
    assert file_sha256(path) == before
    assert_bits_equal(ztnp.load_file(path, copy=True)["w"], arrays["w"], "w")


@pytest.mark.parametrize("name", ["model.bin", "MODEL.SAFETENSORS", "weights", "x.pt"])
def test_detected_by_content(tmp_path, name):
    arrays = {"a": np.arange(12, dtype=np.int32).reshape(3, 4)}
    path = tmp_path / name
    st_np.save_file(arrays, str(path))
    with Reader(path) as r:
        assert r.format == "safetensors"
        assert_bits_equal(r["a"], arrays["a"], name)
    assert_torch_equal(zttorch.load_file(path)["a"], torch.from_numpy(arrays["a"]), name)


# ---------------------------------------------------------------------------
# hostile files (child interpreter)
# ---------------------------------------------------------------------------


def header_and_data(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return data, n, json.loads(data[8 : 8 + n])


def test_hostile_files(tmp_path):
    arrays = {
        "a": np.arange(64, dtype=np.float64).reshape(8, 8),
        "b": np.arange(10, dtype=np.int8),
        "c": np.ones(3, dtype=np.complex64),
    }
    src = tmp_path / "src.safetensors"
    st_np.save_file(arrays, str(src), metadata={"k": "v"})
    data, n, header = header_and_data(src)
    files = []

    def add(name, blob):
        p = tmp_path / name
        p.write_bytes(blob)
        files.append(p)

    # truncations at many lengths
    for cut in sorted(set(range(0, 9 + n + 8)) | set(range(0, len(data), 7)) | {len(data) - 1}):
        add(f"trunc{cut}.safetensors", data[:cut])
    # header length of 2^63, u64::MAX, just past the end, and 0
    for i, hl in enumerate((1 << 63, (1 << 64) - 1, len(data), 0, n + 1, n - 1)):
        add(f"hlen{i}.safetensors", struct.pack("<Q", hl) + data[8:])
    # offsets past the end / inconsistent with the shape
    for i, (key, offs) in enumerate(
        (("a", [0, 1 << 40]), ("c", [536, 1 << 62]), ("b", [0, 10]), ("a", [8, 520]))
    ):
        h = json.loads(json.dumps(header))
        h[key]["data_offsets"] = offs
        hb = json.dumps(h).encode()
        add(f"offs{i}.safetensors", struct.pack("<Q", len(hb)) + hb + data[8 + n :])
    # huge shapes, bad dtypes, non-string metadata, not JSON
    for i, patch in enumerate(
        (
            {"shape": [1 << 62, 1 << 62]},
            {"dtype": "F128"},
            {"dtype": "F4", "shape": [8, 128]},
            {"shape": [-1]},
            {"data_offsets": [0]},
            {"dtype": "F4", "shape": [1024, 1]},
        )
    ):
        h = json.loads(json.dumps(header))
        h["a"].update(patch)
        hb = json.dumps(h).encode()
        add(f"patch{i}.safetensors", struct.pack("<Q", len(hb)) + hb + data[8 + n :])
    h = json.loads(json.dumps(header))
    h["__metadata__"] = {"k": 1}
    hb = json.dumps(h).encode()
    add("meta.safetensors", struct.pack("<Q", len(hb)) + hb + data[8 + n :])
    add("garbage.safetensors", struct.pack("<Q", 5) + b"\xff\xfe{[x" + data[8 + n :])
    # the crate's unchecked sum of offsets: 8 tensors ending at 2^64 - 8
    size = (1 << 61) - 1
    h = {
        f"t{i}": {"dtype": "U8", "shape": [size], "data_offsets": [i * size, (i + 1) * size]}
        for i in range(8)
    }
    hb = json.dumps(h).encode()
    add("overflow.safetensors", struct.pack("<Q", len(hb)) + hb)
    # random byte flips in the header
    rng = random.Random(7)
    for i in range(60):
        m = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            m[rng.randrange(0, 8 + n)] ^= 1 << rng.randrange(8)
        add(f"flip{i}.safetensors", bytes(m))

    results = run_hostile(tmp_path, files)
    assert results[f"trunc{len(data) - 1}.safetensors"]["ok"] is False
    for i in range(6):
        assert results[f"hlen{i}.safetensors"]["type"] == "ZTensorError", results[f"hlen{i}.safetensors"]
    for name in (
        "offs0",
        "offs1",
        "offs2",
        "offs3",
        "patch0",
        "patch1",
        "patch3",
        "patch4",
        "meta",
        "garbage",
        "overflow",
    ):
        assert results[name + ".safetensors"]["type"] == "ZTensorError", results[name + ".safetensors"]
    # F4 of 512 bytes reads as float4_e2m1fn_x2 [8, 64], bit for bit as safetensors reads it;
    # with an odd last dimension it is listed but unreadable, and load_file names it
    assert results["patch2.safetensors"]["ok"] is True, results["patch2.safetensors"]
    ours = zttorch.load_file(tmp_path / "patch2.safetensors")
    theirs = st_torch.load_file(str(tmp_path / "patch2.safetensors"))
    assert theirs["a"].dtype == torch.float4_e2m1fn_x2 and theirs["a"].shape == (8, 64)
    for k in theirs:
        assert_torch_equal(ours[k], theirs[k], k)
    assert "F4" in results["patch5.safetensors"]["msg"] and "even" in results["patch5.safetensors"]["msg"]


def test_header_length_2_pow_63_message(tmp_path):
    path = tmp_path / "big.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 63) + b'{"a":1}')
    with pytest.raises(ZTensorError, match="safetensors header"):
        Reader(path)
