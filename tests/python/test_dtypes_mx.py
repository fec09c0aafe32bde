"""The OCP microscaling element types safetensors 0.8 round-trips:
``torch.float8_e8m0fnu`` (safetensors ``F8_E8M0``, .zt ``u8`` + ``f8_e8m0fnu``)
and ``torch.float4_e2m1fn_x2`` (safetensors ``F4``, .zt ``u8`` +
``f4_e2m1fn_x2``; docs/format.md section 5).

torch and .zt count a float4_e2m1fn_x2 tensor's last dimension in bytes
(two FP4 values each); safetensors' header counts values, so its last
dimension is twice as long. Every check compares raw bytes with what the
safetensors library itself writes and reads.
"""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest
import safetensors.torch as st_torch
import torch

import ztensor
import ztensor.numpy as ztnp
import ztensor.torch as zttorch
from conftest import assert_bits_equal
from test_cli import check_zt_and_back, run, script_cmd
from ztensor import Reader, ZTensorError

E8M0 = torch.float8_e8m0fnu
FP4 = torch.float4_e2m1fn_x2


def raw(t: torch.Tensor) -> bytes:
    """A tensor's bytes, whatever its dtype."""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_same(actual: torch.Tensor, expected: torch.Tensor, what: str):
    assert actual.dtype == expected.dtype, what
    assert actual.shape == expected.shape, what
    assert raw(actual) == raw(expected), what


def from_bytes(values, dtype, shape) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64).to(torch.uint8).view(dtype).reshape(shape)


def samples() -> dict:
    """Every byte value of both types, several ranks, empty and 0-d tensors."""
    every = list(range(256))
    return {
        "scales": from_bytes(every, E8M0, (16, 16)),
        "scales.row": from_bytes([127, 0, 255], E8M0, (3,)),
        "scales.scalar": from_bytes([128], E8M0, ()),
        "scales.empty": torch.empty((0, 4), dtype=E8M0),
        "weight": from_bytes(every, FP4, (8, 32)),
        "weight.3d": from_bytes(every[:24], FP4, (2, 3, 4)),
        "weight.empty": torch.empty((3, 0), dtype=FP4),
        "bias": torch.linspace(-1, 1, 5),
    }


def header(path) -> dict:
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


def savable_by_safetensors(tensors: dict) -> dict:
    """safetensors cannot save a 0-d float4_e2m1fn_x2 (nor can .safetensors hold one)."""
    return {k: v for k, v in tensors.items() if not (v.dtype == FP4 and v.dim() == 0)}


# ---------------------------------------------------------------- safetensors -> ztensor


def test_safetensors_files_load_bit_exact(tmp_path):
    tensors = samples()
    path = tmp_path / "mx.safetensors"
    st_torch.save_file(tensors, str(path))
    # The library's header: F4 counts values, twice the bytes torch counts.
    h = header(path)
    assert h["weight"]["dtype"] == "F4" and h["weight"]["shape"] == [8, 64]
    assert h["scales"]["dtype"] == "F8_E8M0" and h["scales"]["shape"] == [16, 16]
    expected = st_torch.load_file(str(path))
    for kwargs in ({}, {"copy": True}, {"backend": "pread"}):
        ours = zttorch.load_file(path, **kwargs)
        assert list(ours) == list(expected)
        for k in tensors:
            assert_same(ours[k], expected[k], f"{k} {kwargs}")
            assert_same(ours[k], tensors[k], f"{k} {kwargs}")
    with Reader(path) as r:
        assert r.metadata("weight").type == "f4_e2m1fn_x2"
        assert r.metadata("weight").dtype == "uint8"
        assert r.metadata("weight").shape == [8, 32]
        assert r.metadata("weight.3d").shape == [2, 3, 4]
        assert r.metadata("scales").type == "f8_e8m0fnu"


def test_safetensors_files_load_into_numpy(tmp_path):
    """NumPy: F8_E8M0 as ml_dtypes.float8_e8m0fnu; F4 as the uint8 bytes, in
    torch's shape (NumPy has no packed FP4 type). safetensors.numpy itself
    fails on both (it looks the dtypes up in numpy)."""
    tensors = samples()
    path = tmp_path / "mx.safetensors"
    st_torch.save_file(tensors, str(path))
    for copy in (False, True):
        ours = ztnp.load_file(path, copy=copy)
        for k, t in tensors.items():
            if t.dtype == E8M0:
                assert ours[k].dtype == np.dtype(ml_dtypes.float8_e8m0fnu), k
                assert_bits_equal(ours[k], t.view(torch.uint8).numpy().view(ml_dtypes.float8_e8m0fnu), k)
            elif t.dtype == FP4:
                assert_bits_equal(ours[k], t.view(torch.uint8).numpy(), k)
    # ml_dtypes reads the same E8M0 values: 2**(code - 127), NaN for 0xff.
    scales = ztnp.load_file(path)["scales.row"].astype(np.float32)
    assert scales[0] == 1.0 and scales[1] == 2.0**-127 and np.isnan(scales[2])


def test_odd_last_dimension_f4_is_refused_like_safetensors(tmp_path):
    """18 F4 values in 9 bytes, shape [3, 2, 3]: a byte straddles two rows,
    which float4_e2m1fn_x2 cannot express; safetensors.torch refuses it too."""
    path = tmp_path / "odd.safetensors"
    entries = {"ok": ("F32", [2], struct.pack("<2f", 1.5, -2.0)), "odd": ("F4", [3, 2, 3], bytes(range(9)))}
    head, data = {}, b""
    for name, (dtype, shape, blob) in entries.items():
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    with pytest.raises(Exception, match="divisible by 2"):
        st_torch.load_file(str(path))
    with Reader(path) as r:
        assert r["ok"].tolist() == [1.5, -2.0]
        with pytest.raises(ZTensorError, match="odd.*even last dimension"):
            r.metadata("odd")
    with pytest.raises(ZTensorError, match="even last dimension"):
        zttorch.load_file(path)


# ---------------------------------------------------------------- torch.save -> ztensor


def test_torch_save_files_load_bit_exact(tmp_path):
    """A torch.save checkpoint (zip; torch cannot save these dtypes in the
    legacy format) of both types, with transposed views, reads as
    torch.load reads it."""
    tensors = samples()
    tensors["scales.t"] = tensors["scales"].t()
    tensors["weight.t"] = tensors["weight"][:4].t()
    path = tmp_path / "mx.pt"
    torch.save(tensors, path)
    expected = torch.load(path, weights_only=True)
    for kwargs in ({}, {"copy": True}):
        ours = zttorch.load_file(path, **kwargs)
        assert sorted(ours) == sorted(expected)
        for k in expected:
            assert_same(ours[k], expected[k], f"{k} {kwargs}")
    with Reader(path) as r:
        assert r.metadata("scales").type == "f8_e8m0fnu"
        assert r.metadata("weight").type == "f4_e2m1fn_x2"
        assert r.metadata("weight").dtype == "uint8"
        assert r.metadata("weight").shape == [8, 32]


# ---------------------------------------------------------------- ztensor -> .zt -> everyone


@pytest.mark.parametrize("compression", [False, True, 19])
def test_torch_round_trip_through_zt(tmp_path, compression):
    tensors = samples()
    path = tmp_path / "mx.zt"
    zttorch.save_file(tensors, path, compression=compression)
    with Reader(path) as r:
        r.verify()
        for k, t in tensors.items():
            meta = r.metadata(k)
            if t.dtype in (E8M0, FP4):
                assert meta.dtype == "uint8", k
                assert meta.type == {E8M0: "f8_e8m0fnu", FP4: "f4_e2m1fn_x2"}[t.dtype], k
                assert meta.shape == list(t.shape), k
    for kwargs in ({}, {"copy": True}, {"backend": "pread"}):
        got = zttorch.load_file(path, **kwargs)
        for k, t in tensors.items():
            assert_same(got[k], t, f"{k} {kwargs}")
    from_bytes_api = zttorch.load(zttorch.save(tensors, compression=compression))
    for k, t in tensors.items():
        assert_same(from_bytes_api[k], t, f"{k} save/load bytes")


def test_numpy_e8m0_with_checksums_loads_in_torch(tmp_path):
    codes = np.arange(256, dtype=np.uint16).astype(np.uint8).reshape(4, 64)
    path = tmp_path / "np.zt"
    with ztensor.Writer(path) as w:
        w.add("plain", codes.view(ml_dtypes.float8_e8m0fnu))
        w.add("packed", codes.view(ml_dtypes.float8_e8m0fnu), compress=True, checksum="sha256")
        w.add("crc", codes.view(ml_dtypes.float8_e8m0fnu), checksum="crc32c")
    with Reader(path) as r:
        r.verify()
        assert r.metadata("packed").components["data"]["digest"].startswith("sha256:")
    got = zttorch.load_file(path)
    for k in ("plain", "packed", "crc"):
        assert_same(got[k], torch.from_numpy(codes).view(E8M0), k)


def test_reference_1_2_3_reads_the_bytes(tmp_path, run_ref):
    """The reference does not know the new logical types; it returns their
    storage bytes (docs/format.md section 5)."""
    tensors = samples()
    path = tmp_path / "mx.zt"
    zttorch.save_file(tensors, path)
    out, types = run_ref(f"""
        r = ztensor.Reader({str(path)!r})
        for k in ("scales", "weight", "weight.3d"):
            OUT[k] = np.array(r.read_numpy(k))
        RESULT = {{k: r.metadata(k).type for k in ("scales", "weight")}}
    """)
    assert types == {"scales": "f8_e8m0fnu", "weight": "f4_e2m1fn_x2"}
    for k in ("scales", "weight", "weight.3d"):
        assert_bits_equal(out[k], tensors[k].view(torch.uint8).numpy(), k)


# ---------------------------------------------------------------- zt convert


def test_zt_convert_round_trips_safetensors_byte_for_byte(tmp_path):
    """.safetensors -> .zt (raw; zstd + crc32c) -> .safetensors gives back the
    library's file byte for byte, and safetensors loads it."""
    tensors = savable_by_safetensors(samples())
    src = tmp_path / "mx.safetensors"
    st_torch.save_file(tensors, str(src), metadata={"format": "pt"})
    back = check_zt_and_back(script_cmd(), tmp_path, src, expected_torch=tensors)
    assert back.read_bytes() == src.read_bytes()
    for k, t in st_torch.load_file(str(back)).items():
        assert_same(t, tensors[k], k)


def test_zt_convert_from_ztensor_torch_loads_in_safetensors(tmp_path):
    tensors = savable_by_safetensors(samples())
    zttorch.save_file(tensors, tmp_path / "mx.zt", compression=True)
    out = tmp_path / "out.safetensors"
    p = run(script_cmd(), "convert", tmp_path / "mx.zt", out)
    assert p.returncode == 0, p.stderr
    loaded = st_torch.load_file(str(out))
    assert sorted(loaded) == sorted(tensors)
    for k, t in tensors.items():
        assert_same(loaded[k], t, k)
    # What the library itself would write for the same tensors.
    st_torch.save_file(tensors, str(tmp_path / "lib.safetensors"))
    assert out.read_bytes() == (tmp_path / "lib.safetensors").read_bytes()


def test_zt_convert_refuses_0d_f4_for_safetensors(tmp_path):
    """A 0-d float4_e2m1fn_x2 fits .zt but not safetensors (whose own
    save_file refuses it): zt names the tensor and writes nothing."""
    scalar = from_bytes([0x21], FP4, ())
    with pytest.raises(Exception, match="byte boundary"):
        st_torch.save_file({"s": scalar}, str(tmp_path / "lib.safetensors"))
    zttorch.save_file({"s": scalar, "ok": torch.ones(2)}, tmp_path / "s.zt")
    assert_same(zttorch.load_file(tmp_path / "s.zt")["s"], scalar, "s")
    out = tmp_path / "s.safetensors"
    p = run(script_cmd(), "convert", tmp_path / "s.zt", out)
    assert p.returncode != 0
    assert "tensor 's'" in p.stderr and "0-d f4_e2m1fn_x2" in p.stderr, p.stderr
    assert not out.exists()
    p = run(script_cmd(), "convert", tmp_path / "s.zt", out, "--exclude", "s")
    assert p.returncode == 0, p.stderr
    assert sorted(st_torch.load_file(str(out))) == ["ok"]
