"""Reading .h5 files written by the real ``h5py``.

Files are created at test time with h5py (libver earliest, latest and
("v108", "latest"); contiguous, chunked, gzip+shuffle, lzf, fletcher32, fill
values, compact layout, big-endian, bool, complex, 0-d, empty, nested and
track-order groups, a userblock, a hard link, file attributes) and compared
bit-exactly (values, dtype, shape) with what h5py reads, through
``ztensor.numpy.load_file``, ``ztensor.Reader`` and ``ztensor.torch``.
Hostile files (truncations, byte flips, absurd dimensions) run in a child
interpreter with bounded memory.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

import ztensor.numpy as ztnp  # noqa: E402
from conftest import assert_bits_equal, file_sha256, run_hostile  # noqa: E402
from ztensor import Reader, ZTensorError  # noqa: E402

LIBVERS = {
    "earliest": ("earliest", "latest"),
    "latest": ("latest", "latest"),
    "v108": ("v108", "latest"),
}


def sample_arrays() -> dict:
    rng = np.random.default_rng(5)
    f4 = rng.standard_normal((6, 7)).astype("<f4")
    f4[0, :4] = [np.nan, -0.0, np.inf, -np.inf]
    return {
        "f4": f4,
        "f8": rng.standard_normal(33),
        "f2": rng.standard_normal((4, 4)).astype("f2"),
        "i1": np.arange(-128, 128, dtype="i1"),
        "u1": np.arange(256, dtype="u1").reshape(16, 16),
        "i2": np.array([-32768, 0, 32767], dtype="i2"),
        "u2": np.arange(0, 65535, 997, dtype="u2"),
        "i4": np.array([np.iinfo("i4").min, -1, np.iinfo("i4").max], dtype="i4"),
        "u4": np.array([0, 1, 2**32 - 1], dtype="u4"),
        "i8": np.array([np.iinfo("i8").min, 0, np.iinfo("i8").max], dtype="i8"),
        "u8": np.array([0, 2**64 - 1], dtype="u8"),
        "be_f4": (np.arange(10) / 3).astype(">f4"),
        "be_i8": np.array([-2, 1 << 40, 7], dtype=">i8"),
        "be_u2": np.array([1, 258, 65535], dtype=">u2"),
        "be_f8": np.linspace(-1, 1, 5).astype(">f8"),
        "bool": rng.random((3, 5)) > 0.5,
        "c8": (rng.standard_normal(6) + 1j * rng.standard_normal(6)).astype("c8"),
        "c16": (rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))).astype("c16"),
        "be_c8": np.array([1.5 - 2j, -0.0 + 3j], dtype=">c8"),
        "scalar": np.float64(2.75),
        "scalar_i": np.int32(-9),
        "empty": np.zeros((0, 3), dtype="f4"),
        "empty_i": np.zeros((4, 0, 2), dtype="i2"),
    }


def write_file(path, libver, userblock=0):
    """Every storage h5py offers for numeric data, in one file."""
    arrays = sample_arrays()
    kw = {"userblock_size": userblock} if userblock else {}
    with h5py.File(path, "w", libver=LIBVERS[libver], **kw) as f:
        for k, a in arrays.items():
            f[k] = a
        big = np.arange(5000, dtype="<i4").reshape(50, 100)
        f.create_dataset("chunked", data=big, chunks=(7, 30))  # partial edge chunks
        f.create_dataset(
            "gzip_shuffle",
            data=big.astype("f8"),
            chunks=(16, 16),
            compression="gzip",
            compression_opts=6,
            shuffle=True,
        )
        f.create_dataset("lzf", data=big.astype("u2"), chunks=(9, 40), compression="lzf")
        f.create_dataset("fletcher", data=big[:10], chunks=(3, 33), fletcher32=True)
        f.create_dataset("gzip_be", data=big.astype(">f4"), chunks=(8, 8), compression="gzip")
        f.create_dataset("gzip_bool", data=big % 3 == 0, chunks=(10, 10), compression="gzip")
        f.create_dataset(
            "gzip_c8", data=(big[:4] + 1j).astype("c8"), chunks=(2, 50), compression="gzip", shuffle=True
        )
        # fill values: a partially written chunked dataset and never-written ones
        d = f.create_dataset("partial", shape=(20, 10), dtype="f4", chunks=(4, 4), fillvalue=-1.5)
        d[2:5, 3:9] = 7
        d = f.create_dataset(
            "partial_gzip", shape=(30,), dtype="i8", chunks=(4,), compression="gzip", fillvalue=42
        )
        d[10:13] = [1, 2, 3]
        f.create_dataset("never_chunked", shape=(5, 6), dtype="u2", chunks=(2, 2), fillvalue=9)
        f.create_dataset("never_contig", shape=(7,), dtype="f8", fillvalue=0.5)
        f.create_dataset("never_default", shape=(3, 3), dtype="i4")
        # compact layout (bytes inside the object header)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple((4, 3))
        h5py.h5d.create(f.id, b"compact", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl).write(
            h5py.h5s.ALL, h5py.h5s.ALL, np.arange(12, dtype="f4").reshape(4, 3)
        )
        # nested groups, a track-order group, a hard link
        g = f.create_group("grp")
        g.create_group("sub")["x"] = np.arange(5, dtype="i2")
        g["y"] = np.ones((2, 2), dtype="f8")
        t = f.create_group("ordered", track_order=True)
        for name in ("zz", "aa", "mm"):
            t[name] = np.full(3, ord(name[0]), dtype="u1")
        f["grp/alias"] = f["f4"]
        # an enum other than bool reads as its integer codes
        f.create_dataset(
            "enum",
            data=np.array([0, 2, 1, 2], dtype="u1"),
            dtype=h5py.enum_dtype({"R": 0, "G": 1, "B": 2}, basetype="u1"),
        )
        # not tensors: strings and a record compound
        f["text"] = "hello"
        f["record"] = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])
        f.attrs["int"] = 7
        f.attrs["neg"] = np.int16(-3)
        f.attrs["float"] = 2.5
        f.attrs["text"] = "héllo"
        f.attrs["fixed"] = np.bytes_(b"fixed bytes")
        f.attrs["ints"] = np.arange(4, dtype="u8")
        f.attrs["floats"] = np.array([0.5, -1.0], dtype="f4")
        for i in range(10):  # past 8 attributes, newer libvers store them densely
            f.attrs[f"extra{i}"] = np.uint8(i)
        f["f8"].attrs["units"] = "m/s"
        f["f8"].attrs["scale"] = 0.25
    return arrays


def stored_dtype(path, name):
    with h5py.File(path, "r") as f:
        return f[name].dtype


def h5py_contents(path) -> dict:
    """Every numeric dataset as h5py reads it, keyed by dotted path."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biufc":
            a = obj[()]
            a = np.asarray(a)
            out[name.replace("/", ".")] = a.astype(a.dtype.newbyteorder("="))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
        if "grp/alias" in f:  # visititems visits a hard-linked object once
            out["grp.alias"] = np.asarray(f["grp/alias"][()])
    return out


def assert_matches_h5py(ours: dict, expected: dict, what):
    for k, e in expected.items():
        assert k in ours, f"{what}: {k} missing (have {sorted(ours)})"
        assert_bits_equal(ours[k], e, f"{what}:{k}")


@pytest.fixture(scope="module", params=list(LIBVERS))
def h5file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("h5") / f"{request.param}.h5"
    write_file(path, request.param)
    return path


def test_load_file_matches_h5py(h5file):
    expected = h5py_contents(h5file)
    assert len(expected) > 40
    with Reader(h5file) as r:
        assert r.format == "hdf5"
        keys = set(r.keys())
        bad = {k for k in keys if k not in expected}
        assert bad == {"text", "record"}, bad
    for copy in (False, True):
        with pytest.raises(ZTensorError, match="text|record"):
            ztnp.load_file(h5file, copy=copy)
    with Reader(h5file) as r:
        for copy in (False, True):
            ours = {k: r.read_tensor(k, copy=copy) for k in expected}
            assert_matches_h5py(ours, expected, f"{h5file.name} copy={copy}")


def test_metadata_and_per_tensor_errors(h5file):
    with Reader(h5file) as r:
        meta = r.metadata()
        assert meta["int"] == 7 and meta["neg"] == -3 and meta["float"] == 2.5
        assert meta["text"] == "héllo" and meta["fixed"] == "fixed bytes"
        assert list(meta["ints"]) == [0, 1, 2, 3] and list(meta["floats"]) == [0.5, -1.0]
        assert all(meta[f"extra{i}"] == i for i in range(10))
        with h5py.File(h5file, "r") as f:
            assert sorted(meta) == sorted(f.attrs)
        for name in ("text", "record"):
            with pytest.raises(ZTensorError, match=name):
                r[name]
        assert r.metadata("c8").dtype == "float32" and r.metadata("c8").type == "complex64"
        assert r.metadata("c16").type == "complex128"
        assert r.metadata("bool").dtype == "bool"
        assert r.metadata("f8").attributes == {"units": "m/s", "scale": 0.25}
        assert r.metadata("grp.sub.x").shape == [5]
        assert r.metadata("scalar").shape == []
        assert {"ordered.zz", "ordered.aa", "ordered.mm"} <= set(r.keys())


def test_contiguous_is_zero_copy_and_aliases_share_bytes(h5file):
    for k in ("be_f4", "be_i8", "be_u2", "be_f8", "gzip_be", "be_c8"):
        assert stored_dtype(h5file, k).byteorder == ">", k  # really big-endian in the file
    raw = h5file.read_bytes()
    before = file_sha256(h5file)
    with h5py.File(h5file, "r") as f:
        offsets = {k: f[k].id.get_offset() for k in ("f4", "i8", "u1", "c8", "bool")}
    with Reader(h5file) as r:
        for k, off in offsets.items():
            c = r.metadata(k).components["data"]
            assert c["encoding"] == "raw", k
            assert c["offset"] == off, k
            assert raw[off : off + c["length"]] == np.ascontiguousarray(r.read_tensor(k)).tobytes()
        alias = r.metadata("grp.alias").components["data"]
        assert alias["offset"] == offsets["f4"]
        for k in ("chunked", "gzip_shuffle", "compact", "be_f4", "never_contig"):
            assert r.metadata(k).components["data"]["encoding"] == "hdf5", k
    with Reader(h5file) as r:
        a = r.read_tensor("f4")
        a[...] = 0
    assert file_sha256(h5file) == before


def test_torch_load(tmp_path):
    torch = pytest.importorskip("torch")
    import ztensor.torch as zttorch

    path = tmp_path / "t.h5"
    arrays = {
        "f": np.arange(12, dtype="f4").reshape(3, 4),
        "i": np.arange(5, dtype="i8"),
        "b": np.array([True, False]),
        "c": np.array([1 + 2j], dtype="c8"),
    }
    with h5py.File(path, "w") as f:
        for k, a in arrays.items():
            f[k] = a
        f.create_dataset("z", data=np.arange(100, dtype=">f8"), chunks=(10,), compression="gzip")
    ts = zttorch.load_file(path)
    for k, a in arrays.items():
        assert torch.equal(ts[k], torch.from_numpy(a)), k
    assert torch.equal(ts["z"], torch.arange(100, dtype=torch.float64))


def test_userblock_and_from_bytes(tmp_path):
    path = tmp_path / "ub.h5"
    write_file(path, "latest", userblock=1024)
    expected = h5py_contents(path)
    with Reader(path) as r:
        ours = {k: r.read_tensor(k) for k in expected}
        with h5py.File(path, "r") as f:
            assert r.metadata("f4").components["data"]["offset"] == f["f4"].id.get_offset()
    assert_matches_h5py(ours, expected, "userblock")
    # found past the userblock whatever the file is called
    renamed = tmp_path / "ub.data"
    renamed.write_bytes(path.read_bytes())
    with Reader(renamed) as r:
        assert r.format == "hdf5"
        assert_matches_h5py({k: r.read_tensor(k) for k in expected}, expected, "userblock, renamed")
    # an image in memory (no path): detected past the userblock too
    plain = tmp_path / "plain.h5"
    write_file(plain, "earliest")
    for p in (path, plain):
        expected = h5py_contents(p)
        r = Reader._from_bytes(p.read_bytes())
        try:
            assert r.format == "hdf5"
            assert r.metadata()["int"] == 7
            ours = {k: r.read_tensor(k) for k in expected}
        finally:
            r.close()
        assert_matches_h5py(ours, expected, f"from_bytes {p.name}")


@pytest.mark.parametrize("name", ["weights.bin", "NOEXT", "x.HDF5"])
def test_detected_by_content(tmp_path, name):
    path = tmp_path / name
    with h5py.File(path, "w") as f:
        f["a"] = np.arange(6, dtype="i4")
    with Reader(path) as r:
        assert r.format == "hdf5"
        assert_bits_equal(r["a"], np.arange(6, dtype="i4"))


# ---------------------------------------------------------------------------
# hostile files (child interpreter, bounded memory)
# ---------------------------------------------------------------------------

MEMORY_LIMIT = 3 << 30


def small_file(path, libver):
    with h5py.File(path, "w", libver=libver) as f:
        f["a"] = np.arange(12, dtype="f4").reshape(3, 4)
        f.create_dataset("z", data=np.arange(64, dtype="i4"), chunks=(16,), compression="gzip", shuffle=True)
        f.create_dataset("l", data=np.arange(40, dtype="u2"), chunks=(8,), compression="lzf", fletcher32=True)
        f.create_group("g")["b"] = np.array([True, False])
        for i in range(10):  # dense attribute storage with libver="latest"
            f.attrs[f"k{i}"] = i
    return path.read_bytes()


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_hostile_files(tmp_path, libver):
    data = small_file(tmp_path / "src.h5", libver)
    files = []

    def add(name, blob):
        p = tmp_path / name
        p.write_bytes(blob)
        files.append(p)

    for cut in sorted(set(range(0, len(data), max(1, len(data) // 150))) | {len(data) - 1, 8, 9}):
        add(f"trunc{cut}.h5", data[:cut])
    rng = random.Random(11)
    for i in range(300):
        m = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            m[rng.randrange(0, len(m))] ^= 1 << rng.randrange(8)
        add(f"flip{i}.h5", bytes(m))
    # absurd dimensions: rewrite every 64-bit 12 / 3 / 4 / 64 size field near
    # the dataspaces into huge values (whichever of them is a dimension)
    for i, (old, new) in enumerate(((12, 1 << 40), (3, 1 << 62), (64, (1 << 64) - 1), (4, 1 << 33))):
        needle = struct.pack("<Q", old)
        at = data.find(needle)
        while at != -1 and i < 4:
            add(f"dims{i}_{at}.h5", data[:at] + struct.pack("<Q", new) + data[at + 8 :])
            at = data.find(needle, at + 1)
    results = run_hostile(tmp_path, files, memory_limit=MEMORY_LIMIT, load_file=False)
    assert results[f"trunc{len(data) - 1}.h5"]["ok"] in (True, False)
    assert results["trunc8.h5"]["type"] == "ZTensorError"
    assert sum(r["ok"] for r in results.values()) > 0


def test_absurd_dimensions_fail_alone(tmp_path):
    """A dataset declaring 2^40 x 2^40 elements is refused before anything is
    allocated; the file's other datasets stay readable."""
    path = tmp_path / "big.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["ok"] = np.arange(3, dtype="i4")
        f.create_dataset(
            "huge", shape=(1 << 40, 1 << 40), dtype="f8", chunks=(1, 1024), maxshape=(None, None)
        )
    with Reader(path) as r:
        assert_bits_equal(r["ok"], np.arange(3, dtype="i4"))
        with pytest.raises(ZTensorError, match="huge"):
            r["huge"]


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_patched_dataspace_claiming_absurd_dims(tmp_path, libver):
    """The 3 x 4 dataspace of a contiguous dataset rewritten to 2^40 x 2^40
    (and to 2^62 x 4): that tensor fails cleanly, its neighbour still reads."""
    src = tmp_path / "src.h5"
    with h5py.File(src, "w", libver=libver) as f:
        f["a"] = np.arange(12, dtype="f4").reshape(3, 4)
        f["b"] = np.arange(5, dtype="i2")
    data = src.read_bytes()
    needle = struct.pack("<QQ", 3, 4)
    assert needle in data
    for i, dims in enumerate(((1 << 40, 1 << 40), (1 << 62, 4), ((1 << 64) - 1, 2))):
        path = tmp_path / f"patched{i}.h5"
        path.write_bytes(data.replace(needle, struct.pack("<QQ", *dims)))
        with Reader(path) as r:
            assert_bits_equal(r["b"], np.arange(5, dtype="i2"))
            with pytest.raises(ZTensorError):
                r["a"]


def test_fletcher32_mismatch_fails_that_tensor(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("l", data=np.arange(400, dtype="i4"), chunks=(100,), fletcher32=True)
        f["ok"] = np.arange(3, dtype="i4")
        info = f["l"].id.get_chunk_info(1)
    data = bytearray(path.read_bytes())
    data[info.byte_offset + 5] ^= 0x10  # inside the second chunk's elements
    path.write_bytes(bytes(data))
    with Reader(path) as r:
        assert_bits_equal(r["ok"], np.arange(3, dtype="i4"))
        with pytest.raises(ZTensorError, match="l"):
            r["l"]


def test_patched_chunk_dims_claiming_a_huge_chunk(tmp_path):
    """Chunk dimensions rewritten to 2^30 elements (a 4 GiB chunk for a
    20-element dataset) are refused before the library allocates a chunk."""
    src = tmp_path / "src.h5"
    with h5py.File(src, "w", libver="earliest") as f:
        f.create_dataset("c", data=np.arange(20, dtype="i4"), chunks=(7,))
        f["ok"] = np.arange(3, dtype="i2")
    data = src.read_bytes()
    needle = struct.pack("<II", 7, 4)  # layout message v3: chunk dim, element size
    assert data.count(needle) == 1
    path = tmp_path / "patched.h5"
    path.write_bytes(data.replace(needle, struct.pack("<II", 1 << 30, 4)))
    (result,) = run_hostile(tmp_path, [path], memory_limit=MEMORY_LIMIT, load_file=False).values()
    assert result["ok"]  # the file opens; "c" fails alone (checked below)
    with Reader(path) as r:
        assert_bits_equal(r["ok"], np.arange(3, dtype="i2"))
        with pytest.raises(ZTensorError, match="chunk"):
            r["c"]
