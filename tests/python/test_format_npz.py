"""Reading NumPy .npz archives and .npy files written by NumPy itself.

Files are created at test time with ``np.save`` / ``np.savez`` /
``np.savez_compressed`` and every array is compared bit-exactly (dtype,
shape, bytes) with ``np.load`` (converted to native byte order and C order,
which is what ztensor returns) and with the array that was saved, through
``ztensor.numpy.load_file`` (zero-copy and copy) and ``ztensor.Reader``.
Hostile archives are built field by field and opened in a child
interpreter so that a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest

import ztensor.numpy as ztnp
from conftest import all_dtypes, assert_bits_equal, file_sha256, run_hostile
from ztensor import Reader, ZTensorError

# ml_dtypes 1-byte types NumPy saves as '<V1': which one it was is lost.
AMBIGUOUS = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz")
# NumPy cannot load these back itself ('<V2' loads as raw void, '<f1' fails).
NUMPY_CANNOT_LOAD = ("bfloat16", "float8_e5m2")


def numpy_loads(key: str) -> bool:
    return not any(key.startswith(n) for n in NUMPY_CANNOT_LOAD)


def native(a: np.ndarray) -> np.ndarray:
    """What ztensor returns for `a`: native (little-endian) byte order, C order."""
    a = np.asarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.array(a, order="C", copy=True)


def arrays_to_save() -> dict:
    """Every dtype, in little- and big-endian, C and Fortran order, 0-d and empty."""
    samples = all_dtypes()
    out = {}
    for name, a in samples.items():
        if name in AMBIGUOUS:
            continue
        out[name] = a
        if a.dtype.itemsize > 1 and name != "bool":
            out[name + "_be"] = a.astype(a.dtype.newbyteorder(">"))
        if a.ndim >= 2:
            out[name + "_f"] = np.asfortranarray(a)
            if a.dtype.itemsize > 1:
                out[name + "_fbe"] = np.asfortranarray(a.astype(a.dtype.newbyteorder(">")))
    out["f3d"] = np.asfortranarray(np.arange(2 * 3 * 5, dtype=np.int32).reshape(2, 3, 5))
    out["f3d_be"] = np.asfortranarray(np.arange(4 * 3 * 2, dtype=">f8").reshape(4, 3, 2))
    out["row_f"] = np.asfortranarray(np.arange(9, dtype=np.float32).reshape(1, 9))
    out["scalar"] = np.array(-7.25, dtype=np.float64)
    out["scalar_be"] = np.array(3, dtype=">i4")
    out["scalar_c"] = np.array(1 + 2j, dtype=np.complex128)
    out["empty"] = np.zeros((0, 5), dtype=np.float32)
    out["empty_f_be"] = np.asfortranarray(np.zeros((3, 0), dtype=">i8"))
    out["bool_f"] = np.asfortranarray(np.eye(5, dtype=bool)[:, ::-1])
    out["sliced"] = np.arange(100, dtype=np.int16).reshape(10, 10)[::2, 1::3]
    return out


def check_against_numpy(path, arrays, ref_loadable=True):
    ref = {}
    if ref_loadable:
        with np.load(path) as z:
            ref = {k: z[k] for k in z.files if numpy_loads(k)}
    for copy in (False, True):
        ours = ztnp.load_file(path, copy=copy)
        assert set(ours) == set(arrays)
        for k, a in arrays.items():
            assert_bits_equal(ours[k], native(a), f"{k} copy={copy} vs saved")
            assert ours[k].flags.c_contiguous
            if k in ref:
                assert_bits_equal(ours[k], native(ref[k]), f"{k} copy={copy} vs np.load")
    for eager in (False, True):
        with Reader(path, eager=eager) as r:
            assert sorted(r.keys()) == sorted(arrays)
            for k, a in arrays.items():
                assert_bits_equal(r[k], native(a), f"{k} eager={eager}")
                assert_bits_equal(r.read_tensor(k, copy=True), native(a), f"{k} eager={eager}")
                assert r.metadata(k).shape == list(a.shape)
            r.verify()


@pytest.mark.parametrize("saver", ["savez", "savez_compressed"])
def test_every_dtype_and_layout(tmp_path, saver):
    arrays = arrays_to_save()
    path = tmp_path / "a.npz"
    getattr(np, saver)(path, **arrays)
    check_against_numpy(path, arrays)
    with Reader(path) as r:
        assert r.format == "npz"
        assert r.metadata() == {}
        enc = {k: r.metadata(k).components["data"]["encoding"] for k in arrays}
        assert r.metadata("bfloat16").dtype == "bfloat16"
        assert r.metadata("float8_e5m2").type == "f8_e5m2"
        assert r.metadata("complex128").type == "complex128"
        assert r.metadata("complex64_be").dtype == "float32"
    if saver == "savez":
        assert enc["float32"] == "raw" and enc["row_f"] == "raw"
        assert enc["float32_be"] == "byteswap"
        assert enc["float32_f"] == "strided" and enc["float32_fbe"] == "strided"
    else:
        assert enc["float32"] == "deflate"


def test_torch_front_end(tmp_path):
    import torch

    import ztensor.torch as zttorch

    arrays = arrays_to_save()
    path = tmp_path / "t.npz"
    np.savez_compressed(path, **arrays)
    expect_dtype = {
        "bfloat16": torch.bfloat16,
        "float8_e5m2": torch.float8_e5m2,
        "complex64": torch.complex64,
        "complex128": torch.complex128,
        "uint16": torch.uint16,
        "bool": torch.bool,
        "float16": torch.float16,
    }
    for copy in (False, True):
        ours = zttorch.load_file(path, copy=copy)
        assert set(ours) == set(arrays)
        for k, a in arrays.items():
            t = ours[k]
            assert tuple(t.shape) == a.shape, k
            flat = t.contiguous().reshape(-1)
            got = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
            assert got == native(a).tobytes(), k
            base = k.split("_")[0] if not k.startswith("float8") else "float8_e5m2"
            if base in expect_dtype:
                assert t.dtype == expect_dtype[base], (k, t.dtype)


def test_positional_names_and_other_members(tmp_path):
    import zipfile

    a, b = np.arange(3, dtype=np.uint8), np.ones((2, 2), dtype=np.float16)
    path = tmp_path / "p.npz"
    np.savez(path, a, b, named=a, **{"h\u00e9llo w\u00f6rld \u2603": b})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("README.txt", "not an array")
        z.writestr("sub/dir/x.npy", b"")  # an empty member: unreadable, listed
    with Reader(path) as r:
        assert sorted(r.keys()) == sorted(
            ["arr_0", "arr_1", "named", "sub/dir/x", "h\u00e9llo w\u00f6rld \u2603"]
        )
        assert_bits_equal(r["arr_1"], b, "arr_1")
        assert_bits_equal(r["h\u00e9llo w\u00f6rld \u2603"], b, "unicode")
        with pytest.raises(ZTensorError, match="sub/dir/x"):
            r["sub/dir/x"]


def test_ambiguous_fp8_object_and_unicode_fail_alone(tmp_path):
    samples = all_dtypes()
    good = np.arange(12, dtype=np.int64).reshape(3, 4)
    path = tmp_path / "mixed.npz"
    extra = {name: samples[name] for name in AMBIGUOUS}
    np.savez(
        path,
        good=good,
        obj=np.array([1, "a", None], dtype=object),
        text=np.array(["ab", "cde"]),
        when=np.array(["2020-01-01"], dtype="M8[D]"),
        rec=np.zeros(2, dtype=[("x", "<f4"), ("y", ">i2")]),
        **extra,
    )
    with Reader(path) as r:
        assert len(r) == 5 + len(AMBIGUOUS)
        assert_bits_equal(r["good"], good, "good")
        for name, needle in [
            ("obj", "object"),
            ("text", "<U3"),
            ("when", "datetime64"),
            ("rec", "structured"),
        ] + [(n, "<V1") for n in AMBIGUOUS]:
            with pytest.raises(ZTensorError, match=needle) as e:
                r[name]
            assert name in str(e.value)
    with pytest.raises(ZTensorError):
        ztnp.load_file(path)


def test_zero_copy_stored_members_are_writable_and_private(tmp_path):
    arrays = {
        "w": np.arange(4096, dtype=np.float32).reshape(64, 64),
        "i": np.arange(100, dtype=np.int64),
        "b": np.arange(10) % 2 == 0,
    }
    path = tmp_path / "z.npz"
    np.savez(path, **arrays)
    raw = path.read_bytes()
    before = file_sha256(path)
    with Reader(path) as r:
        for k, a in arrays.items():
            c = r.metadata(k).components["data"]
            assert c["encoding"] == "raw"
            assert raw[c["offset"] : c["offset"] + c["length"]] == a.tobytes()
    ours = ztnp.load_file(path)
    for k, a in ours.items():
        assert a.flags.writeable, k
        a[...] = 0 if a.dtype != bool else False
    assert file_sha256(path) == before
    assert_bits_equal(ztnp.load_file(path)["w"], arrays["w"], "w")


def test_upper_case_extension(tmp_path):
    arrays = {"x": np.arange(6, dtype=np.int16).reshape(2, 3)}
    path = tmp_path / "UPPER.NPZ"
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    with Reader(path) as r:
        assert r.format == "npz"
    check_against_numpy(path, arrays)


@pytest.mark.parametrize("name", ["single.npy", "SINGLE.NPY", "noext"])
def test_single_npy_every_dtype(tmp_path, name):
    for key, a in arrays_to_save().items():
        path = tmp_path / name
        with open(path, "wb") as f:
            np.save(f, a)
        with Reader(path) as r:
            assert r.format == "npy"
            assert r.keys() == ["arr_0"]
            assert_bits_equal(r["arr_0"], native(a), key)
        for copy in (False, True):
            ours = ztnp.load_file(path, copy=copy)
            assert list(ours) == ["arr_0"]
            assert_bits_equal(ours["arr_0"], native(a), key)
            if numpy_loads(key):
                assert_bits_equal(ours["arr_0"], native(np.load(path)), key)


def test_npy_versions_2_and_3(tmp_path):
    a = np.arange(20, dtype=">f4").reshape(4, 5, order="F")
    for version in ((2, 0), (3, 0)):
        path = tmp_path / f"v{version[0]}.npy"
        with open(path, "wb") as f:
            np.lib.format.write_array(f, a, version=version)
        with Reader(path) as r:
            assert_bits_equal(r["arr_0"], native(a), str(version))
        assert_bits_equal(ztnp.load_file(path)["arr_0"], native(np.load(path)), str(version))


def test_npy_object_array_is_refused(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with Reader(path) as r:
        assert r.keys() == ["arr_0"]
        with pytest.raises(ZTensorError, match="object"):
            r["arr_0"]


# ---------------------------------------------------------------------------
# hostile archives
# ---------------------------------------------------------------------------


def npy_bytes(a: np.ndarray) -> bytes:
    import io

    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def npy_header(d: dict) -> bytes:
    import io

    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, d)
    return f.getvalue()


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


class ZipBuilder:
    """A zip archive written field by field, so tests can lie in any field."""

    def __init__(self):
        self.buf = bytearray()
        self.central = bytearray()
        self.count = 0

    def local(self, name, payload, *, method, crc=0, csize=None, usize=0, flags=0):
        off = len(self.buf)
        csize = len(payload) if csize is None else csize
        n = name.encode()
        self.buf += (
            struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0, crc, csize, usize, len(n), 0)
            + n
            + payload
        )
        return off

    def record(self, name, *, local, method, csize, usize, crc=0, flags=0):
        n = name.encode()
        self.central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                flags,
                method,
                0,
                0,
                crc,
                csize,
                usize,
                len(n),
                0,
                0,
                0,
                0,
                0,
                local,
            )
            + n
        )
        self.count += 1

    def add(self, name, content, *, method=0, usize=None):
        payload = raw_deflate(content) if method == 8 else content
        usize = len(content) if usize is None else usize
        crc = zlib.crc32(content)
        off = self.local(name, payload, method=method, crc=crc, usize=usize)
        self.record(name, local=off, method=method, csize=len(payload), usize=usize, crc=crc)
        return off, len(payload)

    def build(self) -> bytes:
        cd = len(self.buf)
        return bytes(
            self.buf
            + self.central
            + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, self.count, self.count, len(self.central), cd, 0)
        )


def test_zip_bombs(tmp_path):
    files = []

    def write(name, blob):
        p = tmp_path / name
        p.write_bytes(blob)
        files.append(p)

    good = np.arange(8, dtype=np.float32)
    # 1. header + shape claim 32 data bytes, the archive agrees, the stream gives 64 MiB more
    small = npy_bytes(np.zeros(8, dtype=np.float32))
    z = ZipBuilder()
    z.add("good.npy", npy_bytes(good), method=8)
    payload = raw_deflate(small + bytes(64 << 20))
    off = z.local("bomb.npy", payload, method=8, usize=len(small))
    z.record("bomb.npy", local=off, method=8, csize=len(payload), usize=len(small))
    write("bomb_long.npz", z.build())
    # 2. the header claims 2^28 bytes (and so does the archive) but the stream is tiny
    big = npy_header({"descr": "|u1", "fortran_order": False, "shape": (1 << 28,)})
    z = ZipBuilder()
    z.add("good.npy", npy_bytes(good), method=8)
    z.add("bomb.npy", big, method=8, usize=len(big) + (1 << 28))
    write("bomb_ratio.npz", z.build())
    # 3. archive claims a small size, header claims a large shape
    z = ZipBuilder()
    z.add("good.npy", npy_bytes(good), method=8)
    z.add("bomb.npy", big, method=8, usize=len(big))
    write("bomb_mismatch.npz", z.build())
    # 4. sizes consistent, but the stream stops early
    full = npy_bytes(np.arange(100000, dtype=np.int32))
    z = ZipBuilder()
    z.add("good.npy", npy_bytes(good), method=8)
    payload = raw_deflate(full[: len(full) // 2])
    off = z.local("bomb.npy", payload, method=8, usize=len(full))
    z.record("bomb.npy", local=off, method=8, csize=len(payload), usize=len(full))
    write("bomb_short.npz", z.build())
    # 5. right sizes, wrong CRC-32 (a damaged stream that still inflates fully)
    z = ZipBuilder()
    z.add("good.npy", npy_bytes(good), method=8)
    payload = raw_deflate(full)
    off = z.local("bomb.npy", payload, method=8, usize=len(full))
    z.record(
        "bomb.npy", local=off, method=8, csize=len(payload), usize=len(full), crc=zlib.crc32(full) ^ 0x80
    )
    write("bomb_crc.npz", z.build())

    res = run_hostile(tmp_path, files)
    expect = {
        "bomb_long.npz": "longer than declared",
        "bomb_ratio.npz": "cannot come from",
        "bomb_mismatch.npz": "declares",
        "bomb_short.npz": "shorter than declared",
        "bomb_crc.npz": "CRC-32 mismatch",
    }
    for name, needle in expect.items():
        r = res[name]
        assert r["ok"] is False and r["type"] == "ZTensorError", r
        assert needle in r["errors"]["bomb"], r
        assert "good" not in r["errors"], r
        assert r["rss_growth_kb"] < 100 * 1024, r
    # The good member of a bomb archive is still readable in-process.
    with Reader(files[0]) as r:
        assert_bits_equal(r["good"], good, "good")


def test_overlapping_and_out_of_range_members(tmp_path):
    files = []

    def write(name, blob):
        p = tmp_path / name
        p.write_bytes(blob)
        files.append(p)

    a = npy_bytes(np.arange(16, dtype=np.float32))
    b = npy_bytes(np.arange(4, dtype=np.int64))
    # two names for one local header (exact alias): the second one is not the header's name
    z = ZipBuilder()
    off, clen = z.add("a.npy", a)
    z.add("b.npy", b)
    z.record("alias.npy", local=off, method=0, csize=clen, usize=clen)
    write("alias.npz", z.build())
    # a record whose data runs into the next member
    z = ZipBuilder()
    off, clen = z.add("a.npy", a)
    off_b, _ = z.add("b.npy", b)
    off_c, _ = z.add("c.npy", b)
    z.central = bytearray()
    z.count = 0
    z.record("a.npy", local=off, method=0, csize=clen + 10, usize=clen + 10)
    z.record("b.npy", local=off_b, method=0, csize=len(b), usize=len(b), crc=zlib.crc32(b))
    z.record("c.npy", local=off_c, method=0, csize=len(b), usize=len(b), crc=zlib.crc32(b))
    write("partial.npz", z.build())
    # data past the end of the file, local header past the end, 2^32-1 sizes
    z = ZipBuilder()
    z.add("ok.npy", b)
    off = z.local("past.npy", a, method=0, csize=len(a), usize=len(a))
    z.record("past.npy", local=off, method=0, csize=1 << 30, usize=1 << 30)
    z.record("nowhere.npy", local=0xFFFFFF00, method=0, csize=10, usize=10)
    z.record("huge.npy", local=off, method=8, csize=0xFFFFFFFE, usize=0xFFFFFFFE)
    write("past.npz", z.build())

    res = run_hostile(tmp_path, files)
    assert "local header" in res["alias.npz"]["errors"]["alias"]
    assert "a" not in res["alias.npz"]["errors"]
    assert "b" not in res["alias.npz"]["errors"]
    assert "overlap" in res["partial.npz"]["errors"]["a"]
    assert "overlap" in res["partial.npz"]["errors"]["b"]
    assert "c" not in res["partial.npz"]["errors"]
    for k in ("past", "nowhere", "huge"):
        assert k in res["past.npz"]["errors"], res["past.npz"]
    assert "ok" not in res["past.npz"]["errors"]


def test_truncated_and_mutated_archives(tmp_path):
    arrays = {
        "a": np.arange(300, dtype=">f8").reshape(20, 15, order="F"),
        "b": np.arange(50, dtype=np.int16),
        "c": np.array(2.5 + 1j, dtype=np.complex64),
    }
    files = []
    for saver in ("savez", "savez_compressed"):
        src = tmp_path / f"{saver}.npz"
        getattr(np, saver)(src, **arrays)
        data = src.read_bytes()
        cuts = sorted(
            set(range(0, 200))
            | set(range(0, len(data), max(1, len(data) // 150)))
            | set(range(len(data) - 120, len(data)))
        )
        for cut in cuts:
            p = tmp_path / f"{saver}_cut{cut}.npz"
            p.write_bytes(data[:cut])
            files.append(p)
        rng = random.Random(11 if saver == "savez" else 12)
        for i in range(150):
            m = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
            p = tmp_path / f"{saver}_flip{i}.npz"
            p.write_bytes(bytes(m))
            files.append(p)
    # single .npy files too
    data = npy_bytes(arrays["a"])
    for cut in range(0, len(data), 13):
        p = tmp_path / f"npy_cut{cut}.npy"
        p.write_bytes(data[:cut])
        files.append(p)
    res = run_hostile(tmp_path, files)
    assert not res["savez_cut100.npz"]["ok"]
