"""Reading .gguf files written by the real `gguf` package.

Files are created at test time with ``gguf.GGUFWriter`` (plain and quantized
tensors, metadata of several types, a custom alignment) and compared with
``gguf.GGUFReader``: plain tensors bit-exactly, quantized tensors as their
raw bytes, metadata value by value.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import ztensor.numpy as ztnp  # noqa: E402
from ztensor import Reader, ZTensorError  # noqa: E402

Q = gguf.GGMLQuantizationType

METADATA = {
    "test.u8": (gguf.GGUFValueType.UINT8, 200),
    "test.i32": (gguf.GGUFValueType.INT32, -123456),
    "test.u64": (gguf.GGUFValueType.UINT64, 2**63 + 5),
    "test.f32": (gguf.GGUFValueType.FLOAT32, 0.25),
    "test.f64": (gguf.GGUFValueType.FLOAT64, 1e300),
    "test.bool": (gguf.GGUFValueType.BOOL, True),
    "test.str": (gguf.GGUFValueType.STRING, "héllo wörld"),
}
ARRAYS = {
    "test.ints": [1, 2, 3, -4],
    "test.floats": [0.5, -1.5],
    "test.strings": ["a", "", "ünï"],
}


def q4_k_bytes(rows: int, cols: int, rng) -> np.ndarray:
    """Q4_K blocks: the gguf package has no Q4_K quantizer, so random bytes
    with finite fp16 scales (d, dmin) in each 144-byte block."""
    try:
        return gguf.quants.quantize(rng.standard_normal((rows, cols)).astype(np.float32), Q.Q4_K)
    except NotImplementedError:
        blocks = rng.integers(0, 256, size=(rows * cols // 256, 144), dtype=np.uint8)
        blocks[:, 0:4] = np.array([0.5, 0.25], dtype=np.float16).view(np.uint8)
        return blocks.reshape(rows, cols // 256 * 144)


def write_file(path, alignment=64):
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch="testarch")
    w.add_custom_alignment(alignment)
    for k, (vt, v) in METADATA.items():
        w.add_key_value(k, v, vt)
    for k, v in ARRAYS.items():
        w.add_array(k, v)
    plain = {
        "f32_2d": rng.standard_normal((2, 32)).astype(np.float32),
        "f16_3d": rng.standard_normal((3, 4, 8)).astype(np.float16),
        "f32_3d": rng.standard_normal((3, 4, 8)).astype(np.float32),
        "f16_2d": rng.standard_normal((2, 32)).astype(np.float16),
    }
    for name, a in plain.items():
        w.add_tensor(name, a)
    q8 = gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), Q.Q8_0)
    w.add_tensor("q8", q8, raw_dtype=Q.Q8_0)
    q4k = q4_k_bytes(2, 512, rng)
    w.add_tensor("q4k", q4k, raw_dtype=Q.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return plain, {"q8": (q8, Q.Q8_0, (4, 64)), "q4k": (q4k, Q.Q4_K, (2, 512))}


@pytest.mark.parametrize("alignment", [32, 64, 256])
def test_tensors_match_gguf_reader(tmp_path, alignment):
    path = tmp_path / "model.gguf"
    plain, quant = write_file(path, alignment)
    ref = gguf.GGUFReader(str(path))
    ref_tensors = {t.name: t for t in ref.tensors}
    assert set(ref_tensors) == set(plain) | set(quant)

    for copy in (False, True):
        ours = ztnp.load_file(path, copy=copy)
        assert set(ours) == set(ref_tensors)
        for name, a in plain.items():
            t = ref_tensors[name]
            got = ours[name]
            assert got.dtype == t.data.dtype == a.dtype
            assert got.shape == t.data.shape == a.shape
            assert got.tobytes() == np.asarray(t.data).tobytes() == a.tobytes()
        for name, (raw, _, _) in quant.items():
            got = ours[name]
            assert got.dtype == np.uint8
            assert got.tobytes() == np.asarray(ref_tensors[name].data).tobytes() == raw.tobytes()

    with Reader(path) as r:
        assert r.format == "gguf"
        for name, (raw, qtype, shape) in quant.items():
            md = r.metadata(name)
            assert md.type == qtype.name.lower()
            assert md.dtype == "uint8"
            assert list(md.shape) == [raw.nbytes]
            assert md.attributes["ggml_type"] == qtype.name.lower()
            assert list(md.attributes["original_shape"]) == list(shape)
        assert r.metadata("f16_3d").shape == [3, 4, 8]


def test_metadata_matches_gguf_reader(tmp_path):
    path = tmp_path / "meta.gguf"
    write_file(path, 128)
    ref = gguf.GGUFReader(str(path))
    with Reader(path) as r:
        meta = r.metadata()
    real = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert set(meta) == set(real)
    for key, field in real.items():
        want = field.contents()
        got = meta[key]
        if isinstance(want, float):
            assert got == want or np.float32(got) == np.float32(want), key
        elif isinstance(want, list) and want and isinstance(want[0], float):
            assert np.array_equal(np.float32(got), np.float32(want))
        else:
            assert got == want, key
    assert meta["general.alignment"] == 128
    assert meta["general.architecture"] == "testarch"
    for k, (_, v) in METADATA.items():
        assert meta[k] == v, k
    for k, v in ARRAYS.items():
        assert meta[k] == v, k


def test_hostile_files_raise_cleanly(tmp_path):
    def header(n_tensors, n_kv):
        return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)

    cases = {
        "huge_string": header(0, 1) + struct.pack("<Q", 2**63) + b"a" * 64,
        "huge_kv_count": header(0, 2**60),
        "huge_dims": header(1, 0) + struct.pack("<Q", 1) + b"t" + struct.pack("<I", 1000) + bytes(64),
        "truncated": header(1, 0)[:-3],
        "bad_alignment": header(0, 1) + struct.pack("<Q", 17) + b"general.alignment"
        + struct.pack("<II", 4, 48),
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(data)
        with pytest.raises(ZTensorError):
            Reader(p)

    # A tensor with an unknown type id fails on its own.
    path = tmp_path / "good.gguf"
    write_file(path)
    blob = bytearray(path.read_bytes())
    at = blob.index(b"q8") + 2 + 4 + 16
    assert struct.unpack_from("<I", blob, at)[0] == Q.Q8_0
    struct.pack_into("<I", blob, at, 250)
    path.write_bytes(bytes(blob))
    with Reader(path) as r:
        assert r["f32_2d"].shape == (2, 32)
        with pytest.raises(ZTensorError):
            r["q8"]
