"""Reading .gguf files written by the real `gguf` package.

Files are created at test time with ``gguf.GGUFWriter`` (plain and quantized
tensors, metadata of several types, a custom alignment) and compared with
``gguf.GGUFReader``: plain tensors bit-exactly, quantized tensors as their
raw bytes, metadata value by value. With ``dequantize=``, quantized tensors
(quantized by the package, or random blocks where it has no quantizer) are
compared bit for bit with ``gguf.quants.dequantize``.
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
        "bad_alignment": header(0, 1)
        + struct.pack("<Q", 17)
        + b"general.alignment"
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


# ---------------------------------------------------------------- dequantize

# Types with a dequantize kernel that the gguf package can also dequantize
# (Q8_K has a kernel but no reference here: it is covered by Rust tests).
DEQUANTIZED = [
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "IQ4_NL",
    "IQ4_XS",
    "TQ1_0",
    "TQ2_0",
    "MXFP4",
    "NVFP4",
]
# Byte offsets of the f16 scales in each block: random bytes there could be
# NaN or inf, whose payloads say nothing about the layout.
F16_FIELDS = {
    "Q4_0": [0],
    "Q4_1": [0, 2],
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q8_0": [0],
    "Q2_K": [80, 82],
    "Q3_K": [108],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
    "IQ4_NL": [0],
    "IQ4_XS": [0],
    "TQ1_0": [52],
    "TQ2_0": [64],
    "MXFP4": [],
    "NVFP4": [],
}
SHAPES = [(3, 512), (2, 3, 256)]


def random_blocks(qtype, shape, rng) -> np.ndarray:
    """Random blocks for ``shape`` (its byte shape) with finite f16 scales of
    widely varying magnitude (subnormals included)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape)) // block
    blocks = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for at in F16_FIELDS[qtype.name]:
        scale = rng.standard_normal(n) * 2.0 ** rng.integers(-24, 8, n)
        blocks[:, at : at + 2] = scale.astype(np.float16).view(np.uint8).reshape(n, 2)
    return blocks.reshape(*shape[:-1], shape[-1] // block * size)


def quantized_tensors(rng) -> dict:
    """name -> (raw bytes as written, ggml type): data quantized by the gguf
    package where it can, and random blocks for every type."""
    out = {}
    for tname in DEQUANTIZED:
        q = getattr(Q, tname, None)
        if q is None:  # an older gguf package
            continue
        for i, shape in enumerate(SHAPES):
            data = (rng.standard_normal(shape) * 3).astype(np.float32)
            try:
                out[f"{tname}.quantized.{i}"] = (gguf.quants.quantize(data, q), q)
            except NotImplementedError:
                pass
            out[f"{tname}.random.{i}"] = (random_blocks(q, shape, rng), q)
    return out


@pytest.fixture(scope="module")
def quant_file(tmp_path_factory):
    rng = np.random.default_rng(5)
    tensors = quantized_tensors(rng)
    # No kernel (an IQ grid type): stays raw bytes even when dequantizing.
    tensors["no_kernel"] = (rng.integers(0, 256, size=(2, 66), dtype=np.uint8), Q.IQ2_XXS)
    path = tmp_path_factory.mktemp("dequant") / "quant.gguf"
    w = gguf.GGUFWriter(str(path), arch="testarch")
    for name, (raw, q) in tensors.items():
        w.add_tensor(name, raw, raw_dtype=q)
    w.add_tensor("plain", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, tensors


def reference(raw, q) -> np.ndarray:
    """gguf's own dequantizer. Random MXFP4 exponents near 255 overflow to
    inf, on both sides alike."""
    with np.errstate(over="ignore"):
        return np.asarray(gguf.quants.dequantize(raw, q), dtype=np.float32)


def test_every_type_is_a_quantized_or_random_case(quant_file):
    _, tensors = quant_file
    kinds = {name.split(".")[0] for name in tensors}
    assert kinds >= {t for t in DEQUANTIZED if hasattr(Q, t)}
    quantized = {name.split(".")[0] for name in tensors if ".quantized." in name}
    assert quantized >= {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}


def test_dequantize_float32_is_bit_exact_with_gguf(quant_file):
    path, tensors = quant_file
    with Reader(path, dequantize="float32") as r:
        arrays = r.load_numpy()
        for name, (raw, q) in tensors.items():
            got = arrays[name]
            md = r.metadata(name)
            if name == "no_kernel":
                assert got.dtype == np.uint8 and got.tobytes() == raw.tobytes()
                assert md.type == "iq2_xxs"
                continue
            want = reference(raw, q)
            assert got.dtype == np.float32, name
            assert got.shape == want.shape, name
            assert md.shape == list(want.shape) and md.dtype == "float32" and md.type is None
            assert md.attributes == {"ggml_type": q.name.lower(), "dequantized": True}
            assert md.components["data"]["encoding"] == f"dequantize_{q.name.lower()}"
            assert md.components["data"]["length"] == raw.nbytes
            # Same bits, zero signs included.
            mismatch = np.flatnonzero(got.view(np.uint32).ravel() != want.view(np.uint32).ravel())
            assert mismatch.size == 0, (
                name,
                mismatch[:5],
                got.ravel()[mismatch[:5]],
                want.ravel()[mismatch[:5]],
            )
        np.testing.assert_array_equal(arrays["plain"], np.arange(6, dtype=np.float32).reshape(2, 3))
        # Copies and single reads take the same path.
        name = next(iter(tensors))
        assert r.read_tensor(name, copy=True).tobytes() == arrays[name].tobytes()


@pytest.mark.parametrize("spelling", ["float16", np.float16, np.dtype("float16")])
def test_dequantize_float16_is_the_float32_result_rounded(quant_file, spelling):
    path, tensors = quant_file
    got = ztnp.load_file(path, dequantize=spelling)
    for name, (raw, q) in tensors.items():
        if name == "no_kernel":
            continue
        with np.errstate(over="ignore"):
            want = reference(raw, q).astype(np.float16)
        assert got[name].dtype == np.float16, name
        assert got[name].shape == want.shape
        assert got[name].view(np.uint16).tobytes() == want.view(np.uint16).tobytes(), name


def test_default_is_still_raw_bytes(quant_file):
    path, tensors = quant_file
    for arrays in (ztnp.load_file(path), ztnp.load_file(path, dequantize=None), ztnp.load(path.read_bytes())):
        for name, (raw, _q) in tensors.items():
            assert arrays[name].dtype == np.uint8
            assert arrays[name].tobytes() == raw.tobytes()
    with Reader(path) as r:
        md = r.metadata("Q4_K.random.0")
        assert md.type == "q4_k" and md.attributes["ggml_type"] == "q4_k"
        assert "dequantized" not in md.attributes


def test_dequantize_from_bytes(quant_file):
    path, tensors = quant_file
    got = ztnp.load(path.read_bytes(), dequantize=np.float32)
    raw, q = tensors["Q6_K.random.1"]
    assert got["Q6_K.random.1"].tobytes() == reference(raw, q).tobytes()


def test_dequantize_torch(quant_file):
    torch = pytest.importorskip("torch")
    import ztensor.torch as ztt

    path, tensors = quant_file
    raw, q = tensors["Q4_K.random.1"]
    want = torch.from_numpy(reference(raw, q))
    got = ztt.load_file(path, dequantize=torch.float32)["Q4_K.random.1"]
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    half = ztt.load(path.read_bytes(), dequantize=torch.float16)["Q4_K.random.1"]
    assert half.dtype == torch.float16
    assert torch.equal(half.view(torch.int16), want.to(torch.float16).view(torch.int16))
    assert ztt.load_file(path)["Q4_K.random.1"].dtype == torch.uint8
    with pytest.raises(ValueError):
        ztt.load_file(path, dequantize=torch.bfloat16)


def test_dequantize_option_checks_and_other_formats(tmp_path, quant_file):
    path, _ = quant_file
    for bad in ("int8", np.float64, "bfloat16"):
        with pytest.raises(ValueError):
            Reader(path, dequantize=bad)
    with pytest.raises(TypeError):
        Reader(path, dequantize=object())
    with pytest.raises(TypeError):  # keyword-only
        ztnp.load_file(path, False, "float32")
    # Formats without quantized tensors ignore it.
    a = {"x": np.arange(4, dtype=np.int16)}
    zt = tmp_path / "plain.zt"
    ztnp.save_file(a, zt)
    got = ztnp.load_file(zt, dequantize="float32")
    assert got["x"].dtype == np.int16 and np.array_equal(got["x"], a["x"])


def test_dequantize_ragged_tensor_fails_alone(tmp_path):
    rng = np.random.default_rng(1)
    q8 = gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), Q.Q8_0)
    path = tmp_path / "ragged.gguf"
    w = gguf.GGUFWriter(str(path), arch="testarch")
    w.add_tensor("good", q8, raw_dtype=Q.Q8_0)
    w.add_tensor("ragged", q8, raw_dtype=Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    blob = bytearray(path.read_bytes())
    at = blob.index(b"ragged") + 6 + 4  # name, then n_dims; dims innermost first
    assert struct.unpack_from("<Q", blob, at)[0] == 64
    struct.pack_into("<Q", blob, at, 48)  # 48 values per row: not whole 32-value blocks
    path.write_bytes(bytes(blob))
    with Reader(path, dequantize="float32") as r:
        np.testing.assert_array_equal(r["good"], reference(q8, Q.Q8_0))
        with pytest.raises(ZTensorError, match="ragged"):
            r["ragged"]
