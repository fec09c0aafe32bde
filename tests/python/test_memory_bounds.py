"""Resource bounds: opening and reading a hostile file never takes more memory
than a small multiple of the file's size plus what its (validated) tensors
legitimately decode to.

The hostile corpus is built at test time, deterministically: small valid files
made by the real libraries (fuzz/make_seeds.py), seeded mutations of them
(bit flips, truncations, absurd sizes written over length fields), crafted
headers that declare absurd sizes for each format, and the committed fuzz
regression inputs. Files are read in child interpreters, one per format, each
under RLIMIT_AS (so an allocation sized from a hostile header cannot hide in
lazily mapped zero pages: it fails, cleanly or with an abort that fails this
test). Per file, the child resets the peak-RSS mark (/proc/self/clear_refs),
opens the file, reads every tensor zero-copy and copied, verifies the file,
and records the peak growth of resident memory.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import random
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ZtBuilder, build_legacy_zt, cbor_encode, zstd_raw_frame, zstd_rle_frame

ROOT = Path(__file__).resolve().parents[2]
REGRESSIONS = ROOT / "crates" / "ztensor-formats" / "tests" / "fuzz-regressions"
EXT = {
    "zt": ".zt",
    "safetensors": ".safetensors",
    "npz": ".npz",
    "npy": ".npy",
    "pickle": ".pt",
    "gguf": ".gguf",
    "onnx": ".onnx",
    "hdf5": ".h5",
}

#: allowed peak growth: FILE_FACTOR x file size + DECODED_FACTOR x bytes the
#: reads returned, or the (validated) dense sizes they declared if larger -
#: each tensor is read twice, a view and a copy - + SLACK.
FILE_FACTOR = 4
#: A pickle may create one object per 4 bytes (torch.save spends about 10),
#: and an object costs about 90 bytes: a megabyte of empty dicts is a
#: legitimate pickle of some 25 MB of Python-like objects.
FILE_FACTOR_BY_FORMAT = {"pickle": 32}
DECODED_FACTOR = 2
SLACK = 24 << 20
#: address space the child may add after importing (RLIMIT_AS).
AS_HEADROOM = 3 << 30
MUTATIONS_PER_SEED = 12
HUGE = (2**31 - 1, 2**32 - 1, 2**40, 2**62, 2**63 - 1, 2**64 - 1)

pytestmark = pytest.mark.timeout(120) if importlib.util.find_spec("pytest_timeout") else []


# ---------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------


def seeds(tmp: Path) -> dict[str, list[Path]]:
    """The fuzz seeds, generated into tmp by fuzz/make_seeds.py."""
    spec = importlib.util.spec_from_file_location("make_seeds", ROOT / "fuzz" / "make_seeds.py")
    make_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_seeds)
    out = tmp / "seeds"
    s = make_seeds.Seeds(out)
    work = tmp / "seed_work"
    for make in (
        make_seeds.zt_seeds,
        make_seeds.safetensors_seeds,
        make_seeds.numpy_seeds,
        make_seeds.torch_seeds,
        make_seeds.gguf_seeds,
        make_seeds.onnx_seeds,
        make_seeds.hdf5_seeds,
    ):
        (work / make.__name__).mkdir(parents=True)
        make(s, work / make.__name__)
    return {t: sorted((out / t).iterdir()) for t in EXT if (out / t).is_dir()}


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded mutation, biased towards length fields."""
    b = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0 and b:  # flip a few bytes
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1 and len(b) > 1:  # truncate
        del b[rng.randrange(1, len(b)) :]
    elif kind in (2, 3) and len(b) >= 8:  # an absurd little-endian integer
        width = rng.choice((2, 4, 8))
        at = rng.randrange(len(b) - width + 1)
        value = rng.choice(HUGE) & ((1 << (8 * width)) - 1)
        b[at : at + width] = value.to_bytes(width, "little")
    elif b:  # a big-endian one (protobuf, HDF5 and zip varints differ; CBOR is big-endian)
        at = rng.randrange(len(b))
        b[at : at + 5] = bytes([0x1B, 0x7F, 0xFF, 0xFF, 0xFF])[: len(b) - at]
    return bytes(b)


def crafted_zt() -> list[bytes]:
    out = []
    b = ZtBuilder()
    b.add_dense("big", np.zeros(4, np.float32))
    b.objects["big"]["shape"] = [2**40]  # declares 4 TiB of raw data in 16 bytes
    out.append(b.build())
    b = ZtBuilder()  # a zstd frame whose header claims 1 TiB
    b.add_dense("z", np.zeros(4, np.float32), encoding="zstd", stored=zstd_raw_frame(b"\0" * 16, fcs=2**40))
    b.objects["z"]["shape"] = [2**38]
    b.objects["z"]["components"]["data"]["uncompressed_length"] = 2**40
    out.append(b.build())
    b = ZtBuilder()  # a legitimate zstd bomb: 32 MiB of zeros from a few bytes
    n = 8 << 20
    b.add_dense("bomb", np.zeros(1, np.float32), encoding="zstd", stored=zstd_rle_frame(0, 4 * n, fcs=4 * n))
    b.objects["bomb"]["shape"] = [n]
    b.objects["bomb"]["components"]["data"]["uncompressed_length"] = 4 * n
    out.append(b.build())
    b = ZtBuilder()  # uncompressed_length that disagrees with the frame and the shape
    b.add_dense("lie", np.zeros(4, np.float32), encoding="zstd")
    b.objects["lie"]["components"]["data"]["uncompressed_length"] = 2**62
    out.append(b.build())
    good = ZtBuilder()
    good.add_dense("a", np.arange(4, dtype=np.float32))
    img = good.build()
    out.append(img[:-16] + struct.pack("<Q", 2**62) + img[-8:])  # footer: a 4 EiB manifest
    # CBOR heads that announce 2^40 items / bytes, and deep nesting
    for head in (
        b"\x9b" + struct.pack(">Q", 2**40),
        b"\x7b" + struct.pack(">Q", 2**40),
        b"\xbb" + struct.pack(">Q", 2**40),
        b"\x81" * 100_000,
    ):
        m = cbor_encode({"version": "1.2.0"})
        manifest = b"\xa3" + m[1:] + cbor_encode("attributes") + head + cbor_encode("objects") + b"\xa0"
        out.append(good.buf + manifest + struct.pack("<Q", len(manifest)) + b"ZTEN1000")
    out.append(
        build_legacy_zt(
            {"a": np.zeros(2, np.float32)},
            extra_entries=[
                {
                    "name": "x",
                    "offset": 8,
                    "size": 2**62,
                    "dtype": "float32",
                    "shape": [2**60],
                    "encoding": "raw",
                    "layout": "dense",
                }
            ],
        )
    )
    return out


def crafted_safetensors() -> list[bytes]:
    def st(header: dict | bytes, data: bytes = b"\0" * 16, n: int | None = None) -> bytes:
        h = header if isinstance(header, bytes) else json.dumps(header).encode()
        return struct.pack("<Q", len(h) if n is None else n) + h + data

    return [
        st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, n=2**62),
        st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, n=100 << 20),
        st({"a": {"dtype": "F32", "shape": [2**38], "data_offsets": [0, 2**40]}}),
        st({"a": {"dtype": "F64", "shape": [2**62, 2**62], "data_offsets": [0, 16]}}),
        st({"a": {"dtype": "U8", "shape": [16], "data_offsets": [2**64 - 8, 8]}}),
        st(b"[" * 100_000),
    ]


def npy_image(header: str, data: bytes, major: int = 1, header_len: int | None = None) -> bytes:
    text = header.encode("latin1")
    text += b" " * ((-(10 + len(text) + 1)) % 64) + b"\n"
    n = len(text) if header_len is None else header_len
    size = struct.pack("<H", n) if major == 1 else struct.pack("<I", n)
    return b"\x93NUMPY" + bytes([major, 0]) + size + text + data


def crafted_npy() -> list[bytes]:
    d = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }"
    return [
        npy_image(d % "(2**40,)", b"\0" * 8),
        npy_image(d % "(1099511627776,)", b"\0" * 8),
        npy_image(d % "(2147483648, 2147483648, 2147483648)", b"\0" * 8),
        npy_image(d % "(1,)", b"\0" * 8, header_len=65535),
        npy_image(d % "(1,)", b"\0" * 8, major=2, header_len=2**32 - 1),
        npy_image("{'descr': '<U1099511627776', 'fortran_order': False, 'shape': (1,), }", b"\0" * 8),
        npy_image("{'descr': [('a', '<f4')] * 1, 'fortran_order': False, 'shape': (1,), }", b"\0" * 8),
        npy_image("{'descr': '<f8', 'fortran_order': True, 'shape': (" + "1, " * 10_000 + "), }", b"\0" * 8),
        npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': " + "(" * 10_000 + "), }", b""),
    ]


def zip_image(members: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def patch_sizes(image: bytes, usize: int) -> bytes:
    """Overwrites every uncompressed-size field (local and central) of a zip."""
    b = bytearray(image)
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = b.find(sig)
        while i >= 0:
            b[i + at : i + at + 4] = struct.pack("<I", usize)
            i = b.find(sig, i + 4)
    return bytes(b)


def crafted_npz() -> list[bytes]:
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }"
    small = npy_image(d % "(4,)", b"\0" * 16)
    bomb = npy_image(d % f"({4 << 20},)", b"\0" * (16 << 20))  # 16 MiB of zeros, legitimately
    out = [
        zip_image({"a.npy": npy_image(d % "(2**40,)", b"\0" * 16)}),
        zip_image({"a.npy": npy_image(d % "(1099511627776,)", b"\0" * 16)}, compress=True),
        zip_image({"bomb.npy": bomb}, compress=True),
        patch_sizes(zip_image({"a.npy": small}, compress=True), 2**32 - 1),
        patch_sizes(zip_image({"a.npy": small}), 2**32 - 1),
    ]
    eocd = zip_image({"a.npy": small})
    i = eocd.rfind(b"PK\x05\x06")
    out.append(eocd[: i + 8] + struct.pack("<HHII", 65535, 65535, 2**32 - 1, 0) + eocd[i + 20 :])
    return out


def crafted_pickle(torch_zip: bytes | None) -> list[bytes]:
    out = [
        b"\x80\x02X" + struct.pack("<I", 2**31) + b"abc.",  # BINUNICODE of 2 GiB
        b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.",  # FRAME of 4 EiB
        b"\x80\x02r" + struct.pack("<I", 2**31) + b"N.",  # LONG_BINPUT at index 2^31
        b"\x80\x02h\x00.",  # BINGET of nothing
        b"\x80\x02" + b"(" * 100_000 + b".",  # MARKs
        b"\x80\x02" + b"]" * 200_000 + b".",  # many lists
        b"\x80\x05\x8e" + struct.pack("<Q", 2**62) + b".",  # BINBYTES8
        # a megabyte of one-byte objects: the object budget, not the file, must bound them
        b"\x80\x02" + b"}" * 1_000_000 + b".",
        b"\x80\x02" + b"]" * 1_000_000 + b".",
        b"\x80\x02" + b"N" * 1_000_000 + b".",
        b"\x80\x04" + b"N\x94" * 500_000 + b".",  # MEMOIZE
        b"\x80\x02]" + b"h\x00" * 10 + b"]q\x00" + b"h\x00a" * 300_000 + b".",
    ]
    if torch_zip is not None:
        # A storage that claims 2^40 elements, and a view far beyond it.
        with zipfile.ZipFile(io.BytesIO(torch_zip)) as z:
            members = {n: z.read(n) for n in z.namelist()}
        pkl = next(n for n in members if n.endswith("data.pkl"))
        for old, new in ((b"K\x0c", b"\x8a\x06" + (2**40).to_bytes(6, "little")),):
            if old in members[pkl]:
                patched = dict(members)
                patched[pkl] = members[pkl].replace(old, new)
                out.append(zip_image(patched))
    return out


def gguf_image(n_tensors: int, n_kv: int, body: bytes) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + body


def gstr(s: bytes, n: int | None = None) -> bytes:
    return struct.pack("<Q", len(s) if n is None else n) + s


def crafted_gguf() -> list[bytes]:
    tensor = gstr(b"t") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<IQ", 0, 0)
    pad = b"\0" * 64
    return [
        gguf_image(2**40, 0, b""),
        gguf_image(0, 2**40, b""),
        gguf_image(0, 1, gstr(b"k", 2**40)),
        gguf_image(0, 1, gstr(b"k") + struct.pack("<I", 9) + struct.pack("<IQ", 0, 2**40)),  # u8 array
        gguf_image(0, 1, gstr(b"k") + struct.pack("<I", 9) + struct.pack("<IQ", 8, 2**40)),  # str array
        gguf_image(0, 1, gstr(b"k") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 2**20) * 1000),
        gguf_image(1, 0, gstr(b"t") + struct.pack("<I", 2**31) + pad),
        gguf_image(
            1,
            0,
            gstr(b"t")
            + struct.pack("<I", 2)
            + struct.pack("<QQ", 2**40, 2**40)
            + struct.pack("<IQ", 0, 0)
            + pad,
        ),
        gguf_image(
            1,
            0,
            gstr(b"t") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<IQ", 0, 2**62) + pad,
        ),
        gguf_image(2, 0, tensor + tensor + pad),
    ]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def crafted_onnx() -> list[bytes]:
    def field(num: int, payload: bytes, n: int | None = None) -> bytes:
        return varint(num << 3 | 2) + varint(len(payload) if n is None else n) + payload

    dims = varint(1 << 3) + varint(2**40)  # TensorProto.dims = [2^40]
    dtype = varint(2 << 3) + varint(1)  # FLOAT
    tensor = dims + dtype + field(8, b"w") + field(9, b"\0" * 16)  # name, raw_data
    return [
        field(7, b"", n=2**40),  # a graph of 1 TiB
        field(7, field(5, tensor)),  # an initializer declaring 4 TiB in 16 bytes
        field(7, field(5, field(9, b"", n=2**62))),
        field(7, field(5, dims * 100_000)),
    ]


def crafted_hdf5(seed: bytes | None) -> list[bytes]:
    if seed is None:
        return []
    out = []
    for at in (24, 32, 40, 48):  # superblock v0 addresses: base, free-space, EOF, driver
        b = bytearray(seed)
        b[at : at + 8] = struct.pack("<Q", 2**62)
        out.append(bytes(b))
    return out


def corpus(tmp: Path) -> dict[str, list[Path]]:
    made = seeds(tmp)
    rng = random.Random(20261126)
    files: dict[str, list[Path]] = {t: [] for t in EXT}
    out = tmp / "hostile"
    out.mkdir()

    def put(target: str, data: bytes) -> None:
        p = out / f"{target}_{len(files[target]):04d}{EXT[target]}"
        p.write_bytes(data)
        files[target].append(p)

    for target, paths in made.items():
        fmt = "zt" if target == "cbor" else target
        if target == "cbor":
            continue
        for p in paths:
            data = p.read_bytes()
            put(fmt, data)
            for _ in range(MUTATIONS_PER_SEED):
                put(fmt, mutate(data, rng))

    def first(t, suffix):
        return next((p.read_bytes() for p in made.get(t, []) if p.name.endswith(suffix)), None)

    for data in crafted_zt():
        put("zt", data)
    for data in crafted_safetensors():
        put("safetensors", data)
    for data in crafted_npy():
        put("npy", data)
    for data in crafted_npz():
        put("npz", data)
    for data in crafted_pickle(first("pickle", "state_zip.pt")):
        put("pickle", data)
    for data in crafted_gguf():
        put("gguf", data)
    for data in crafted_onnx():
        put("onnx", data)
    for data in crafted_hdf5(first("hdf5", "contiguous.h5")):
        put("hdf5", data)
    for target in EXT:
        folder = REGRESSIONS / target
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                put(target, p.read_bytes())
    extra = os.environ.get("ZTENSOR_MEMORY_CORPUS")  # e.g. fuzz/corpus, for a longer run
    if extra:
        for target in EXT:
            for p in sorted((Path(extra) / target).glob("*")) if (Path(extra) / target).is_dir() else []:
                try:
                    put(target, p.read_bytes())
                except FileNotFoundError:
                    pass  # a running fuzzer replaced it
    return files


# ---------------------------------------------------------------------------
# the child
# ---------------------------------------------------------------------------

CHILD = r"""
import json, resource, sys

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

import numpy as np
import ztensor
from ztensor import ZTensorError
from ztensor._dtypes import numpy_dtype

limit = status("VmSize") + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
paths = json.load(open(sys.argv[1]))
progress = open(sys.argv[2] + ".progress", "w")
clean = (ZTensorError, KeyError, ValueError, TypeError, OSError)
results = []
for path in paths:
    progress.write(path + "\n"); progress.flush()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    base = status("VmRSS")
    returned, declared, error = 0, 0, None
    try:
        with ztensor.open(path) as r:
            for name in r.keys():
                try:
                    meta = r.metadata(name)
                    if meta.format == "dense":
                        for copy in (False, True):
                            # The declared size the format validated may be
                            # allocated even when decoding then fails.
                            declared += int(np.prod(meta.shape, dtype=np.uint64)) * \
                                numpy_dtype(meta.dtype, meta.type).itemsize
                            a = r.read_tensor(name, copy=copy)
                            returned += a.nbytes
                            del a
                    else:
                        for copy in (False, True):
                            parts = r.read_components(name, copy=copy)
                            returned += sum(a.nbytes for a in parts.values())
                            del parts
                except clean as e:
                    if "internal error" in str(e):
                        raise
            try:
                r.verify()
            except ZTensorError as e:
                if "internal error" in str(e):
                    raise
    except clean as e:
        error = f"{type(e).__name__}: {e}"[:300]
    peak = status("VmHWM") - base
    results.append({"path": path, "peak": peak, "returned": returned, "declared": declared,
                    "error": error})
json.dump(results, open(sys.argv[2], "w"))
"""


def run_child(tmp: Path, target: str, paths: list[Path]) -> list[dict]:
    cases = tmp / f"{target}.json"
    out = tmp / f"{target}.out.json"
    cases.write_text(json.dumps([str(p) for p in paths]))
    env = dict(
        os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", RAYON_NUM_THREADS="2", RUST_BACKTRACE="0"
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(cases), str(out), str(AS_HEADROOM)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if proc.returncode != 0:
        progress = Path(str(out) + ".progress")
        last = progress.read_text().splitlines()[-1:] if progress.exists() else ["?"]
        raise AssertionError(
            f"{target}: child exited with {proc.returncode} while reading {last}:\n{proc.stderr[-3000:]}"
        )
    return json.loads(out.read_text())


def test_hostile_files_stay_within_memory_bounds(tmp_path):
    files = corpus(tmp_path)
    assert sum(map(len, files.values())) > 500
    worst = None  # (peak / (file size + bytes returned), result, size)
    worst_unread = None  # the largest peak of a file that returned no data
    worst_big = None  # the largest peak / file size among files of 64 KiB or more
    failures = []
    opened = 0
    for target, paths in files.items():
        for r in run_child(tmp_path, target, paths):
            size = os.path.getsize(r["path"])
            factor = FILE_FACTOR_BY_FORMAT.get(target, FILE_FACTOR)
            allowed = factor * size + DECODED_FACTOR * max(r["returned"], r["declared"]) + SLACK
            if r["error"] is None:
                opened += 1
            if r["error"] and "internal error" in r["error"]:
                failures.append(f"{r['path']}: panic reached Python: {r['error']}")
            if r["peak"] > allowed:
                failures.append(
                    f"{r['path']} ({size} bytes, {r['returned']} returned): "
                    f"peak {r['peak']} > allowed {allowed}"
                )
            ratio = r["peak"] / (size + r["returned"])
            if worst is None or ratio > worst[0]:
                worst = (ratio, r, size)
            if r["returned"] == 0 and (worst_unread is None or r["peak"] > worst_unread[0]["peak"]):
                worst_unread = (r, size)
            if size >= 64 << 10 and (worst_big is None or r["peak"] / size > worst_big[0]):
                worst_big = (r["peak"] / size, r, size)
    ratio, r, size = worst
    u, usize = worst_unread
    print(
        f"\nmemory bounds: {sum(map(len, files.values()))} files, {opened} opened. Worst peak RSS "
        f"growth / (file size + bytes returned) = {ratio:.1f} ({r['peak']} bytes for "
        f"{Path(r['path']).name}: {size} bytes, {r['returned']} returned). Largest growth for a "
        f"file that returned nothing: {u['peak']} bytes ({Path(u['path']).name}, {usize} bytes). "
        f"Worst peak / file size of files >= 64 KiB: {worst_big[0]:.1f} ({Path(worst_big[1]['path']).name}, "
        f"{worst_big[2]} bytes, {worst_big[1]['returned']} returned)"
    )
    assert not failures, "\n".join(failures[:20])
    assert opened > 50  # the valid seeds (and harmless mutations) did open
