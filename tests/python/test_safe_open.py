"""ztensor.safe_open against safetensors.safe_open (0.8) itself.

The same tensors are written as .safetensors (safetensors' own writer), .zt
(raw, and zstd + crc32c), .pt (torch.save), .npz (stored and deflated), .gguf
and HDF5. Every index form is read from each with ztensor and compared bit
for bit with an oracle computed by indexing element numbers (PyTorch's rules
for ``framework="pt"``, NumPy's for ``"np"``), and, for the forms and dtypes
safetensors accepts, with ``safetensors.safe_open(...).get_slice(name)[index]``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors")
from safetensors import safe_open as st_open  # noqa: E402
from safetensors.torch import save_file as st_save  # noqa: E402

import ztensor  # noqa: E402
import ztensor.torch as ztt  # noqa: E402
from ztensor import ZTensorError, safe_open  # noqa: E402

SHAPE = (5, 6, 7)
# safetensors dtype string -> torch dtype (every dtype safetensors 0.8 and torch share)
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz,
    "F8_E5M2FNUZ": torch.float8_e5m2fnuz,
    "F8_E8M0": torch.float8_e8m0fnu,
    "C64": torch.complex64,
}
# Forms safetensors' get_slice accepts for both frameworks (checked: the test
# fails if it refuses one).
ST_FORMS = [
    0,
    -1,
    4,
    np.int64(2),
    np.int32(-2),
    np.array(3),
    slice(1, 3),
    slice(None),
    slice(None, None, 2),
    slice(1, None, 3),
    Ellipsis,
    (Ellipsis, 1),
    (1, Ellipsis, 2),
    (slice(None), 1),
    (0, 1, 2),
    (slice(1, 4), slice(2, 5), slice(None, None, 3)),
    (Ellipsis, slice(1, 3)),
    (0, Ellipsis),
    (slice(np.int64(1), np.int64(4)),),
    (slice(0, 5), slice(0, 6), slice(0, 7)),
    (-5, -6, -7),
    [],
]
# Forms safetensors 0.8 refuses with framework="np" (and accepts with "pt"), which
# NumPy and PyTorch accept; negative steps: NumPy only (safetensors refuses them).
EXTRA_FORMS = [
    slice(-2, None),
    slice(None, -1),
    slice(0, 100),
    slice(-100, 2),
    slice(3, 1),
    slice(5, None),
    (slice(None), slice(-3, -1)),
    [2, 0, 2],
    np.array([1, 3]),
    torch.tensor([4, -5]),
    (slice(None), [1, -1]),
    (Ellipsis, [0, 6]),
    (0, slice(None), [1, 3]),
    (0, Ellipsis, [1, 3]),
    (slice(None), 0, [1, 3]),
    (1, [0, 5], 2),
    (np.int64(4), slice(-3, None), [6]),
]
NEGATIVE_STEPS = [
    slice(None, None, -1),
    slice(4, 0, -2),
    (slice(None), slice(None, None, -3)),
    (Ellipsis, slice(-1, -100, -4)),
]
SCALAR_FORMS = [(), Ellipsis]
EMPTY_FORMS = [slice(None), (slice(None), 1), [], (Ellipsis, [2, 0]), slice(0, 0)]
BIG_SHAPE = (300, 1100)  # f32, 1.3 MB: two zstd frames
BIG_FORMS = [
    slice(0, 150),
    slice(150, 300),
    slice(100, 250),
    (slice(None), slice(0, 550)),
    (slice(None), slice(550, None)),
    (slice(None, None, 7), [1099, 3]),
    -1,
    (Ellipsis, 1),
]


def sample(dtype, shape, seed):
    """Random bits of every kind (NaNs, infinities...), bools 0/1."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    width = torch.empty(0, dtype=dtype).element_size()
    raw = torch.randint(0, 256, (*shape, width), dtype=torch.uint8, generator=g)
    return raw.view(dtype).reshape(shape)


def tensors() -> dict:
    out = {f"t_{name}": sample(dt, SHAPE, i) for i, (name, dt) in enumerate(DTYPES.items())}
    out["scalar"] = torch.tensor(2.5)
    out["empty"] = torch.zeros(0, 3, dtype=torch.int64)
    out["big"] = sample(torch.float32, BIG_SHAPE, 99)
    return out


def forms_for(shape, framework):
    if shape == SHAPE:
        forms = ST_FORMS + EXTRA_FORMS
        return forms + NEGATIVE_STEPS if framework == "np" else forms
    if shape == BIG_SHAPE:
        return BIG_FORMS
    return SCALAR_FORMS if shape == () else EMPTY_FORMS


def oracle(full, index, framework):
    """(shape, bytes) of full[index], by indexing element numbers with
    PyTorch ("pt") or NumPy ("np") and gathering each element's bytes."""
    numel = full.numel()
    if framework == "pt":
        ids = torch.arange(numel).reshape(full.shape)[index]
    else:
        ids = torch.from_numpy(np.array(np.arange(numel).reshape(tuple(full.shape))[index]))
    rows = full.reshape(-1).view(torch.uint8).reshape(numel, -1) if numel else torch.zeros(0, 1)
    return tuple(ids.shape), rows[ids.reshape(-1)].numpy().tobytes()


def raw(x):
    """(shape, bytes) of a result, torch or NumPy."""
    if isinstance(x, torch.Tensor):
        if x.numel() == 0:  # empty tensors may keep any strides, which view() refuses
            return tuple(x.shape), b""
        return tuple(x.shape), x.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
    return x.shape, np.ascontiguousarray(x).reshape(-1).view(np.uint8).tobytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Format name -> (path, tensor names it holds); 'st' is safetensors' own file."""
    d = tmp_path_factory.mktemp("safe_open")
    ts = tensors()
    out = {"st": (d / "m.safetensors", list(ts))}
    st_save(ts, str(out["st"][0]), metadata={"k": "v"})
    out["zt"] = (d / "m.zt", list(ts))
    ztt.save_file(ts, out["zt"][0], metadata={"k": "v"})
    out["zt_zstd_crc32c"] = (d / "z.zt", list(ts))
    with ztensor.Writer(out["zt_zstd_crc32c"][0]) as w:
        for name, t in ts.items():
            w.write_torch(name, t, compress=3, checksum="crc32c")
    out["pt"] = (d / "m.pt", list(ts))
    torch.save(ts, out["pt"][0])
    native = {
        k: v.numpy()
        for k, v in ts.items()
        if v.dtype
        in (
            torch.float64,
            torch.float32,
            torch.float16,
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int8,
            torch.uint64,
            torch.uint32,
            torch.uint16,
            torch.uint8,
            torch.bool,
            torch.complex64,
        )
    }
    out["npz"] = (d / "m.npz", list(native))
    np.savez(out["npz"][0], **native)
    out["npz_deflate"] = (d / "c.npz", list(native))
    np.savez_compressed(out["npz_deflate"][0], **native)
    gguf = pytest.importorskip("gguf")
    plain = {
        k: v
        for k, v in native.items()
        if v.dtype in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8)
    }
    w = gguf.GGUFWriter(str(d / "m.gguf"), arch="test")
    for name, a in plain.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out["gguf"] = (d / "m.gguf", list(plain))
    h5py = pytest.importorskip("h5py")
    with h5py.File(d / "m.h5", "w") as f:
        for name, a in native.items():
            chunked = name in ("t_F32", "big", "t_I16")
            f.create_dataset(
                name,
                data=a,
                chunks=(2,) + a.shape[1:] if chunked and a.ndim else None,
                compression="gzip" if chunked else None,
            )
    out["hdf5"] = (d / "m.h5", list(native))
    return out


FORMATS = ["st", "zt", "zt_zstd_crc32c", "pt", "npz", "npz_deflate", "gguf", "hdf5"]


@pytest.mark.parametrize("framework", ["pt", "np"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_index_form_matches_the_oracle_and_safetensors(files, fmt, framework):
    path, names = files[fmt]
    backend = "pread" if fmt in ("zt_zstd_crc32c", "npz") else "mmap"  # both backends get used
    compared_with_st = 0
    with (
        st_open(str(files["st"][0]), "pt") as ref_pt,
        st_open(str(files["st"][0]), framework) as ref,
        safe_open(path, framework, backend=backend) as ours,
    ):
        for name in names:
            full = ref_pt.get_tensor(name)
            s, ref_s = ours.get_slice(name), ref.get_slice(name)
            assert (s.get_shape(), s.get_dtype()) == (ref_s.get_shape(), ref_s.get_dtype()), name
            whole = ours.get_tensor(name)
            assert raw(whole) == raw(full), name
            for index in forms_for(tuple(full.shape), framework):
                what = f"{fmt} {framework} {name}[{index!r}]"
                got = s[index]
                assert raw(got) == oracle(full, index, framework), what
                if framework == "pt":
                    assert got.dtype == full.dtype, what
                else:
                    assert got.dtype == whole.dtype, what
                if (
                    framework == "pt"
                    or any(index is f for f in ST_FORMS + SCALAR_FORMS)
                    or name == "big"
                    and isinstance(index, slice)
                    and index.start is not None
                ):
                    try:
                        expected = ref_s[index]
                    except (AttributeError, TypeError):
                        assert framework == "np" and name in (
                            "t_BF16",
                            "t_F8_E4M3",
                            "t_F8_E5M2",
                            "t_F8_E4M3FNUZ",
                            "t_F8_E5M2FNUZ",
                            "t_F8_E8M0",
                        ), what
                        continue  # numpy has no such dtype: safetensors cannot build the array
                    assert raw(got) == raw(expected) and got.dtype == expected.dtype, what
                    compared_with_st += 1
    assert compared_with_st >= 5 * len(names) // 2 or fmt not in ("st", "zt"), compared_with_st


def test_the_forms_safetensors_refuses(files):
    """The extra forms are ones safetensors refuses for NumPy (else they
    belong in ST_FORMS) and accepts for PyTorch; negative steps it refuses."""
    with st_open(str(files["st"][0]), "np") as f, st_open(str(files["st"][0]), "pt") as p:
        s, ps = f.get_slice("t_F32"), p.get_slice("t_F32")
        for index in ST_FORMS:
            s[index]
        for index in EXTRA_FORMS:
            ps[index]
            with pytest.raises(Exception):  # noqa: B017 (safetensors' types vary by form)
                s[index]
        for index in NEGATIVE_STEPS:
            with pytest.raises(Exception):  # noqa: B017 (safetensors' types vary by form)
                ps[index]


@pytest.mark.parametrize("fmt", FORMATS)
def test_file_level_api_matches_safetensors(files, fmt):
    path, names = files[fmt]
    with st_open(str(files["st"][0]), "np") as ref, safe_open(path, "np") as ours:
        assert ours.keys() == sorted(names)
        if fmt == "st":
            assert ours.offset_keys() == ref.offset_keys()
        if fmt in ("st", "zt"):
            assert ours.keys() == ref.keys()
            assert ours.metadata() == ref.metadata() == {"k": "v"}
        if fmt == "zt":
            assert ours.offset_keys() == names  # the order they were written in
        assert set(ours.get_tensors()) == set(names)
        assert list(ours.get_tensors()) == ours.offset_keys()


def test_metadata_is_none_without_metadata(tmp_path):
    t = {"a": torch.ones(2)}
    st_save(t, str(tmp_path / "a.safetensors"))
    ztt.save_file(t, tmp_path / "a.zt")
    np.savez(tmp_path / "a.npz", a=np.ones(2))
    with st_open(str(tmp_path / "a.safetensors"), "pt") as ref:
        assert ref.metadata() is None
    for name in ("a.safetensors", "a.zt", "a.npz"):
        with safe_open(tmp_path / name, "pt") as f:
            assert f.metadata() is None, name


def test_offset_keys_order_ties_of_empty_tensors_as_safetensors(tmp_path):
    t = {
        "z": torch.zeros(0),
        "b": torch.ones(3),
        "a": torch.zeros(0, 2),
        "m": torch.ones(1, dtype=torch.int8),
    }
    path = tmp_path / "a.safetensors"
    st_save(t, str(path))
    with st_open(str(path), "pt") as ref, safe_open(path, "pt") as f:
        assert f.offset_keys() == ref.offset_keys()


def test_out_of_range_and_malformed_indexes(files):
    with safe_open(files["zt"][0], "np") as f:
        s = f.get_slice("t_F32")
        for index in (5, -6, (0, 6), (0, 0, 7), (0, 0, -8), [5], (slice(None), [-7]), 2**70, -(2**70)):
            with pytest.raises(IndexError, match="out of bounds"):
                s[index]
        with pytest.raises(IndexError, match="too many indices"):
            s[0, 0, 0, 0]
        with pytest.raises(IndexError, match="single ellipsis"):
            s[..., 0, ...]
        with pytest.raises(IndexError, match="single list"):
            s[[0], [0]]
        with pytest.raises(ValueError, match="step cannot be zero"):
            s[::0]
        for index in (True, np.bool_(False), None, 1.5, "a", (slice(None), [[0]]), [0.5], torch.tensor(True)):
            with pytest.raises(IndexError):
                s[index]
        assert f.get_slice("scalar")[()].shape == ()
        with pytest.raises(IndexError):
            f.get_slice("scalar")[0]
        with pytest.raises(IndexError, match="axis 0 with size 0"):
            f.get_slice("empty")[0]
        # Huge slice bounds are clamped like any other.
        assert s[-(2**70) : 2**70 : 2**70].shape == (1, 6, 7)


def test_frameworks_devices_and_errors(files):
    path = files["zt"][0]
    for fw in ("pt", "torch", "pytorch"):
        with safe_open(path, fw) as f:
            assert isinstance(f.get_slice("t_F32")[0], torch.Tensor)
    for fw in ("np", "numpy"):
        with safe_open(path, fw) as f:
            assert isinstance(f.get_slice("t_F32")[0], np.ndarray)
    with pytest.raises(ZTensorError, match="framework bogus is invalid"):
        safe_open(path, "bogus")
    with pytest.raises(ZTensorError, match="framework tf is not supported"):
        safe_open(path, "tf")
    with pytest.raises(ZTensorError, match="Device cuda:0 is not supported for framework numpy"):
        safe_open(path, "np", device="cuda:0")
    with pytest.raises(ZTensorError, match='backend "bad" is invalid'):
        safe_open(path, "pt", backend="bad")
    with pytest.raises(FileNotFoundError):
        safe_open(path.parent / "missing.zt", "pt")
    with safe_open(path, "pt", device=None) as f:
        assert f.get_tensor("t_F32").device.type == "cpu"
    with safe_open(path, "pt", device="meta") as f:
        t = f.get_slice("t_F32")[1:3]
        assert t.device.type == "meta" and t.shape == (2, 6, 7)
    with pytest.raises(KeyError, match="nope"):
        safe_open(path, "pt").get_slice("nope")


def test_closed_file_refuses_reads_but_slices_outlive_it(files):
    with safe_open(files["zt"][0], "np") as f:
        s = f.get_slice("t_I32")
        expected = f.get_tensor("t_I32")[1:3].copy()
    for call in (
        f.keys,
        f.offset_keys,
        f.metadata,
        f.get_tensors,
        lambda: f.get_tensor("t_I32"),
        lambda: f.get_slice("t_I32"),
    ):
        with pytest.raises(ZTensorError, match="closed"):
            call()
    np.testing.assert_array_equal(s[1:3], expected)


def _owner(arr):
    """The object whose memory a NumPy array views (our native Buffer)."""
    while isinstance(arr, np.ndarray):
        arr = arr.base
    return arr


def test_rows_of_raw_tensors_are_views_and_writes_stay_private(files):
    with safe_open(files["zt"][0], "np") as f:
        s = f.get_slice("t_F64")
        rows = s[1:3]
        assert _owner(rows).zero_copy and rows.flags.writeable
        assert not _owner(s[:, 1:3]).zero_copy
        before = s[1:3].copy()
        rows[...] = 0
        np.testing.assert_array_equal(s[1:3], before)  # a fresh mapping per read
        np.testing.assert_array_equal(f.get_tensor("t_F64")[1:3], before)
    with safe_open(files["zt"][0], "np", backend="pread") as f:
        assert not _owner(f.get_slice("t_F64")[1:3]).zero_copy


def test_reader_get_slice(files):
    with ztensor.Reader(files["zt"][0]) as r:
        s = r.get_slice("t_U16")
        full = r["t_U16"]
        np.testing.assert_array_equal(s[0, ::2, [6, 0]], full[0, ::2, [6, 0]])
        assert s.get_shape() == [5, 6, 7] and s.get_dtype() == "U16"


def test_f4_shape_and_dtype_as_safetensors(tmp_path):
    t = {"f4": torch.arange(24, dtype=torch.uint8).reshape(3, 8).view(torch.float4_e2m1fn_x2)}
    st_save(t, str(tmp_path / "a.safetensors"))
    with (
        st_open(str(tmp_path / "a.safetensors"), "pt") as ref,
        safe_open(tmp_path / "a.safetensors", "pt") as f,
    ):
        s = f.get_slice("f4")
        assert (s.get_shape(), s.get_dtype()) == (ref.get_slice("f4").get_shape(), "F4") == ([3, 16], "F4")
        # Reads index the tensor as torch holds it: bytes of two values.
        got = s[1:, 2:5]
        assert got.dtype == torch.float4_e2m1fn_x2 and got.shape == (2, 3)
        assert torch.equal(got.view(torch.uint8), t["f4"].view(torch.uint8)[1:, 2:5])


def test_numpy_framework_does_not_import_torch(files):
    code = (
        "import sys, ztensor\n"
        f"f = ztensor.safe_open({str(files['zt'][0])!r}, 'np')\n"
        "f.get_slice('t_F32')[0, 1:3]; f.get_tensor('t_BF16'); f.get_tensors()\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _crc32c_file(tmp_path, name="c.zt", compress=None):
    data = np.arange(64 * 1024, dtype=np.float32).reshape(256, 256)
    path = tmp_path / name
    with ztensor.Writer(path) as w:
        w.add("t", data, compress=compress, checksum="crc32c")
    meta = ztensor.Reader(path).metadata("t").components["data"]
    return path, data, meta


@pytest.mark.parametrize("compress", [None, 3])
@pytest.mark.parametrize("backend", ["mmap", "pread"])
def test_a_flipped_bit_outside_the_requested_rows_is_caught(tmp_path, backend, compress):
    path, data, meta = _crc32c_file(tmp_path, compress=compress)
    with safe_open(path, "np", backend=backend) as f:  # intact: fine
        np.testing.assert_array_equal(f.get_slice("t")[:2], data[:2])
    raw_bytes = bytearray(path.read_bytes())
    raw_bytes[meta["offset"] + meta["length"] - 1] ^= 0x04  # the last row, or the last frame
    path.write_bytes(bytes(raw_bytes))
    with safe_open(path, "np", backend=backend) as f:
        s = f.get_slice("t")
        for _ in range(2):  # a failed check is not remembered as a pass
            with pytest.raises(ZTensorError, match="checksum mismatch"):
                s[:2]
        with pytest.raises(ZTensorError, match="checksum mismatch"):
            s[0, 0]


def test_a_zstd_slice_decodes_only_its_frames(tmp_path):
    """A damaged last frame (no digest to catch it first) breaks the tensor's
    last rows and a whole read, not a slice of its first rows."""
    data = (np.arange(600 * 1000, dtype=np.uint32) // 3 % 5000).reshape(600, 1000)  # compressible
    path = tmp_path / "z.zt"
    with ztensor.Writer(path) as w:
        w.add("t", data, compress=3)
    meta = ztensor.Reader(path).metadata("t").components["data"]
    raw_bytes = bytearray(path.read_bytes())
    at = meta["offset"] + meta["length"] - 100
    raw_bytes[at : at + 64] = bytes(64)
    path.write_bytes(bytes(raw_bytes))
    for backend in ("mmap", "pread"):
        with safe_open(path, "np", backend=backend) as f:
            with pytest.raises(ZTensorError, match="zstd"):
                f.get_tensor("t")
            np.testing.assert_array_equal(f.get_slice("t")[:100], data[:100])
            np.testing.assert_array_equal(f.get_slice("t")[5, 10:20], data[5, 10:20])
            with pytest.raises(ZTensorError, match="zstd"):
                f.get_slice("t")[-1]


def test_threads_share_one_reader(tmp_path):
    """Concurrent slices of one checksummed zstd tensor (the digest check and
    the frame index are built once, under contention) all come out right."""
    from concurrent.futures import ThreadPoolExecutor

    data = np.random.default_rng(3).standard_normal((1200, 700)).astype(np.float32)  # 3.2 MB: 4 frames
    path = tmp_path / "z.zt"
    with ztensor.Writer(path) as w:
        w.add("t", data, compress=1, checksum="crc32c")
    with safe_open(path, "np") as f:
        s = f.get_slice("t")

        def job(i):
            rows = slice(i * 37 % 1100, i * 37 % 1100 + 100)
            return np.array_equal(s[rows], data[rows]) and np.array_equal(s[:, i::9], data[:, i::9])

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(job, range(64)))
