"""Shared fixtures and helpers for the ztensor Python test-suite.

Everything here is independent of the package under test: the CBOR codec, the
CRC-32C implementation, the zstd frame builder and the `.zt` file builder are
written from the format description (docs/format.md), so that tests can check the
package against an independent model instead of against itself.

Helpers are plain module-level functions (import them with
``from conftest import ...``); fixtures wrap the ones that need state.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

PYTHON = sys.executable
HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

ML_DTYPE_NAMES = (
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
)

#: numpy dtype name -> (TensorMetadata.dtype, TensorMetadata.type, manifest dtype)
DTYPE_INFO = {
    "float64": ("float64", None, "f64"),
    "float32": ("float32", None, "f32"),
    "float16": ("float16", None, "f16"),
    "bfloat16": ("bfloat16", None, "bf16"),
    "int64": ("int64", None, "i64"),
    "int32": ("int32", None, "i32"),
    "int16": ("int16", None, "i16"),
    "int8": ("int8", None, "i8"),
    "uint64": ("uint64", None, "u64"),
    "uint32": ("uint32", None, "u32"),
    "uint16": ("uint16", None, "u16"),
    "uint8": ("uint8", None, "u8"),
    "bool": ("bool", None, "bool"),
    "float8_e4m3fn": ("uint8", "f8_e4m3fn", "u8"),
    "float8_e5m2": ("uint8", "f8_e5m2", "u8"),
    "float8_e4m3fnuz": ("uint8", "f8_e4m3fnuz", "u8"),
    "float8_e5m2fnuz": ("uint8", "f8_e5m2fnuz", "u8"),
    "complex64": ("float32", "complex64", "f32"),
    "complex128": ("float64", "complex128", "f64"),
}

ALL_DTYPE_NAMES = tuple(DTYPE_INFO)
#: the 13 storage dtypes the reference 1.2.3 numpy writer accepts
REF_DTYPE_NAMES = ALL_DTYPE_NAMES[:13]

MANIFEST_DTYPE_WIDTH = {
    "f64": 8,
    "f32": 4,
    "f16": 2,
    "bf16": 2,
    "i64": 8,
    "i32": 4,
    "i16": 2,
    "i8": 1,
    "u64": 8,
    "u32": 4,
    "u16": 2,
    "u8": 1,
    "bool": 1,
}


def np_dtype(name: str) -> np.dtype:
    """numpy dtype from a name, including ml_dtypes names."""
    if name in ML_DTYPE_NAMES:
        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


def _bits(dtype, values_u):
    """Array of `dtype` whose bit patterns are `values_u` (list of ints)."""
    dt = np_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    u = np.dtype(f"u{dt.itemsize}")
    return np.array(values_u, dtype=u).view(dt)


def all_dtypes(seed: int = 1234) -> dict[str, np.ndarray]:
    """One sample array per supported dtype (keyed by numpy dtype name).

    Floats include NaN (several payloads, signed, signalling), +-inf, -0.0,
    subnormals, extremes; narrow float types contain *every* bit pattern; ints
    include min/max; bool random; complex mixes specials in both parts.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}

    f64_special = [
        0x0000000000000000,
        0x8000000000000000,
        0x7FF0000000000000,
        0xFFF0000000000000,
        0x7FF8000000000000,
        0xFFF8000000000000,
        0x7FF8000000000001,
        0x7FF0000000000001,  # qNaN payload, sNaN
        0x0000000000000001,
        0x000FFFFFFFFFFFFF,  # subnormals
        0x7FEFFFFFFFFFFFFF,
        0xFFEFFFFFFFFFFFFF,
        0x3FF0000000000000,
    ]
    f64 = np.concatenate(
        [
            _bits(np.float64, f64_special),
            rng.standard_normal(37),
            rng.integers(0, 2**64, size=14, dtype=np.uint64, endpoint=False).view(np.float64),
        ]
    )
    out["float64"] = f64.reshape(8, 8)

    f32_special = [
        0x00000000,
        0x80000000,
        0x7F800000,
        0xFF800000,
        0x7FC00000,
        0xFFC00000,
        0x7FC00001,
        0x7F800001,
        0x00000001,
        0x007FFFFF,
        0x7F7FFFFF,
        0xFF7FFFFF,
        0x3F800000,
    ]
    f32 = np.concatenate(
        [
            _bits(np.float32, f32_special),
            rng.standard_normal(81).astype(np.float32),
            rng.integers(0, 2**32, size=50, dtype=np.uint64).astype(np.uint32).view(np.float32),
        ]
    )
    out["float32"] = f32.reshape(2, 3, 24)

    # every bit pattern of the 16-bit float types
    out["float16"] = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    out["bfloat16"] = (
        np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np_dtype("bfloat16")).reshape(16, 4096)
    )

    for name, dt in (("int64", np.int64), ("int32", np.int32), ("int16", np.int16), ("int8", np.int8)):
        info = np.iinfo(dt)
        vals = np.concatenate(
            [
                np.array([info.min, info.max, 0, -1, 1, info.min + 1, info.max - 1], dtype=dt),
                rng.integers(info.min, info.max, size=57, dtype=dt, endpoint=True),
            ]
        )
        out[name] = vals.reshape(4, 16)
    for name, dt in (
        ("uint64", np.uint64),
        ("uint32", np.uint32),
        ("uint16", np.uint16),
        ("uint8", np.uint8),
    ):
        info = np.iinfo(dt)
        vals = np.concatenate(
            [
                np.array([0, info.max, 1, info.max - 1, info.max // 2 + 1], dtype=dt),
                rng.integers(0, info.max, size=59, dtype=dt, endpoint=True),
            ]
        )
        out[name] = vals.reshape(16, 4)
    out["bool"] = (rng.integers(0, 2, size=77) == 1).reshape(7, 11)

    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        out[name] = np.arange(256, dtype=np.uint16).astype(np.uint8).view(np_dtype(name)).reshape(16, 16)

    specials = [0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, 1e-30, 3.0e38]
    re, im = np.meshgrid(specials, specials)
    c = re.ravel() + 0j
    c.imag = im.ravel()
    c64 = np.concatenate(
        [
            c.astype(np.complex64),
            (rng.standard_normal(19) + 1j * rng.standard_normal(19)).astype(np.complex64),
        ]
    )
    out["complex64"] = c64.reshape(10, 10)
    c128 = np.concatenate([c.astype(np.complex128), rng.standard_normal(39) + 1j * rng.standard_normal(39)])
    out["complex128"] = c128.reshape(4, 30)

    for k, v in out.items():
        assert v.dtype == np_dtype(k), (k, v.dtype)
        assert v.flags.c_contiguous
    return out


def bits_equal(a, b) -> bool:
    """Bit-exact equality of two arrays: same dtype, shape and bytes."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return (
        np.ascontiguousarray(a).view(np.uint8).tobytes() == np.ascontiguousarray(b).view(np.uint8).tobytes()
    )


def assert_bits_equal(actual, expected, what=""):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    ab = np.ascontiguousarray(actual).reshape(-1).view(np.uint8)
    eb = np.ascontiguousarray(expected).reshape(-1).view(np.uint8)
    if not np.array_equal(ab, eb):
        bad = np.flatnonzero(ab != eb)
        raise AssertionError(f"{what}: {bad.size} differing bytes, first at byte {bad[0]}")


def le_bytes(arr: np.ndarray) -> bytes:
    """Little-endian C-order bytes of an array (what the file must store)."""
    arr = np.asarray(arr)
    dt = arr.dtype
    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.astype(dt.newbyteorder("<"))
    return np.ascontiguousarray(arr).tobytes()


def file_sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------


def _make_crc32c_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    t = _CRC32C_TABLE
    for b in bytes(data):
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def digest_string(kind: str, data: bytes) -> str:
    """Digest text exactly as the reference writes it (docs/format.md section 8)."""
    if kind == "crc32c":
        return f"crc32c:0x{crc32c(data):08X}"
    if kind == "sha256":
        return "sha256:" + hashlib.sha256(bytes(data)).hexdigest()
    raise ValueError(kind)


# ---------------------------------------------------------------------------
# minimal CBOR (RFC 8949) encoder / decoder
# ---------------------------------------------------------------------------


class CborRaw(bytes):
    """Pre-encoded CBOR bytes, inserted verbatim by cbor_encode."""


class CborTag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def __eq__(self, other):
        return isinstance(other, CborTag) and (self.tag, self.value) == (other.tag, other.value)

    def __repr__(self):
        return f"CborTag({self.tag}, {self.value!r})"


def cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([(major << 5) | n])
    if n < 2**8:
        return bytes([(major << 5) | 24, n])
    if n < 2**16:
        return bytes([(major << 5) | 25]) + struct.pack(">H", n)
    if n < 2**32:
        return bytes([(major << 5) | 26]) + struct.pack(">I", n)
    if n < 2**64:
        return bytes([(major << 5) | 27]) + struct.pack(">Q", n)
    raise OverflowError(n)


def cbor_encode(obj) -> bytes:
    """Definite-length CBOR; dict keys are emitted in the dict's order."""
    if isinstance(obj, CborRaw):
        return bytes(obj)
    if obj is None:
        return b"\xf6"
    if obj is True:
        return b"\xf5"
    if obj is False:
        return b"\xf4"
    if isinstance(obj, CborTag):
        return cbor_head(6, obj.tag) + cbor_encode(obj.value)
    if isinstance(obj, int):
        return cbor_head(0, obj) if obj >= 0 else cbor_head(1, -1 - obj)
    if isinstance(obj, float):
        return b"\xfb" + struct.pack(">d", obj)
    if isinstance(obj, str):
        b = obj.encode("utf-8")
        return cbor_head(3, len(b)) + b
    if isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj)
        return cbor_head(2, len(b)) + b
    if isinstance(obj, (list, tuple)):
        return cbor_head(4, len(obj)) + b"".join(cbor_encode(x) for x in obj)
    if isinstance(obj, dict):
        return cbor_head(5, len(obj)) + b"".join(cbor_encode(k) + cbor_encode(v) for k, v in obj.items())
    raise TypeError(f"cannot CBOR-encode {type(obj)}")


def cbor_decode(data: bytes, pos: int = 0):
    """Decode one CBOR item starting at `pos`; returns (value, end_pos).

    Supports what manifests use (definite lengths, ints, text, bytes, arrays,
    maps, floats, simple values, tags). Maps become dicts keeping wire order.
    """
    data = bytes(data)

    def item(p):
        ib = data[p]
        major, info = ib >> 5, ib & 31
        p += 1
        if major == 7:
            if info == 20:
                return False, p
            if info == 21:
                return True, p
            if info in (22, 23):
                return None, p
            if info == 25:
                return struct.unpack(">e", data[p : p + 2])[0], p + 2
            if info == 26:
                return struct.unpack(">f", data[p : p + 4])[0], p + 4
            if info == 27:
                return struct.unpack(">d", data[p : p + 8])[0], p + 8
            raise ValueError(f"unsupported simple value {info}")
        if info < 24:
            n = info
        elif info == 24:
            n = data[p]
            p += 1
        elif info == 25:
            n = struct.unpack(">H", data[p : p + 2])[0]
            p += 2
        elif info == 26:
            n = struct.unpack(">I", data[p : p + 4])[0]
            p += 4
        elif info == 27:
            n = struct.unpack(">Q", data[p : p + 8])[0]
            p += 8
        else:
            raise ValueError("indefinite lengths not supported")
        if major == 0:
            return n, p
        if major == 1:
            return -1 - n, p
        if major == 2:
            return data[p : p + n], p + n
        if major == 3:
            return data[p : p + n].decode("utf-8"), p + n
        if major == 4:
            out = []
            for _ in range(n):
                v, p = item(p)
                out.append(v)
            return out, p
        if major == 5:
            out = {}
            for _ in range(n):
                k, p = item(p)
                v, p = item(p)
                out[k] = v
            return out, p
        if major == 6:
            v, p = item(p)
            return CborTag(n, v), p
        raise AssertionError

    return item(pos)


# ---------------------------------------------------------------------------
# .zt file model: parse and build
# ---------------------------------------------------------------------------

MAGIC = b"ZTEN1000"
LEGACY_MAGIC = b"ZTEN0001"


def parse_zt(data: bytes):
    """Return (manifest: dict, manifest_start: int) of a v1 file, strictly."""
    data = bytes(data)
    assert data[:8] == MAGIC, data[:8]
    assert data[-8:] == MAGIC, data[-8:]
    (size,) = struct.unpack("<Q", data[-16:-8])
    start = len(data) - 16 - size
    assert start >= 8
    manifest, end = cbor_decode(data, start)
    assert end == len(data) - 16, "manifest CBOR does not fill its region"
    return manifest, start


def parse_zt_file(path):
    with open(path, "rb") as f:
        return parse_zt(f.read())


def component_bytes(data: bytes, comp: dict) -> bytes:
    return bytes(data)[comp["offset"] : comp["offset"] + comp["length"]]


def zstd_raw_frame(
    payload: bytes, *, fcs: int | None = None, window_log: int = 17, last_block: bool = True
) -> bytes:
    """A valid zstd frame storing `payload` in raw (uncompressed) blocks.

    fcs: value written in an 8-byte Frame_Content_Size field (None: no field).
    last_block=False makes a frame whose final block is missing (truncated).
    """
    payload = bytes(payload)
    fhd = 0xC0 if fcs is not None else 0x00  # FCS flag 3 (8 bytes), not single segment
    out = bytearray(b"\x28\xb5\x2f\xfd") + bytes([fhd, (window_log - 10) << 3])
    if fcs is not None:
        out += struct.pack("<Q", fcs)
    max_block = min(1 << window_log, 128 * 1024)
    chunks = [payload[i : i + max_block] for i in range(0, len(payload), max_block)] or [b""]
    for i, ch in enumerate(chunks):
        last = int(last_block and i == len(chunks) - 1)
        out += struct.pack("<I", (len(ch) << 3) | (0 << 1) | last)[:3] + ch
    return bytes(out)


def zstd_rle_frame(byte: int, total: int, *, fcs: int | None = None) -> bytes:
    """zstd frame of RLE blocks expanding to `total` copies of `byte` (4 bytes per 128 KiB)."""
    fhd = 0xC0 if fcs is not None else 0x00
    out = bytearray(b"\x28\xb5\x2f\xfd") + bytes([fhd, (17 - 10) << 3])
    if fcs is not None:
        out += struct.pack("<Q", fcs)
    block = 128 * 1024
    remaining = total
    while True:
        n = min(block, remaining)
        remaining -= n
        last = int(remaining == 0)
        out += struct.pack("<I", (n << 3) | (1 << 1) | last)[:3] + bytes([byte])
        if last:
            break
    return bytes(out)


class ZtBuilder:
    """Builds .zt v1 files independently of the package under test.

    ``add_dense`` appends a blob and records a manifest object which tests may
    then edit (``b.objects[name]...``) before ``build()``.
    """

    def __init__(self, alignment: int = 64):
        self.alignment = alignment
        self.buf = bytearray(MAGIC)
        self.objects: dict = {}
        self.root_extra: dict = {}

    def blob(self, data: bytes) -> int:
        pad = (-len(self.buf)) % self.alignment
        self.buf += b"\x00" * pad
        off = len(self.buf)
        self.buf += bytes(data)
        return off

    def add_dense(
        self,
        name,
        arr=None,
        *,
        encoding="raw",
        checksum=None,
        dtype=None,
        ltype=None,
        shape=None,
        stored=None,
    ):
        """Add a dense tensor. `stored` overrides the stored blob bytes."""
        arr = np.asarray(arr) if arr is not None else None
        if dtype is None:
            dtype = DTYPE_INFO[arr.dtype.name][2]
        if shape is None:
            shape = list(arr.shape)
        raw = le_bytes(arr) if arr is not None else b""
        if stored is None:
            stored = raw if encoding == "raw" else zstd_raw_frame(raw)
        comp = {"dtype": dtype}
        if ltype is not None:
            comp["type"] = ltype
        comp["offset"] = self.blob(stored)
        comp["length"] = len(stored)
        if encoding != "raw":
            comp["uncompressed_length"] = len(raw)
            comp["encoding"] = encoding
        if checksum:
            comp["digest"] = digest_string(checksum, stored)
        self.objects[name] = {"shape": shape, "format": "dense", "components": {"data": comp}}
        return comp

    def manifest(self) -> dict:
        m = {"version": "1.2.0"}
        m.update(self.root_extra)
        m["objects"] = {k: self.objects[k] for k in sorted(self.objects, key=lambda s: s.encode())}
        return m

    def build(self, manifest_bytes: bytes | None = None) -> bytes:
        mb = cbor_encode(self.manifest()) if manifest_bytes is None else bytes(manifest_bytes)
        return bytes(self.buf) + mb + struct.pack("<Q", len(mb)) + MAGIC

    def write(self, path, manifest_bytes=None) -> Path:
        Path(path).write_bytes(self.build(manifest_bytes))
        return Path(path)


def build_legacy_zt(tensors: dict, extra_entries=()) -> bytes:
    """A legacy ZTEN0001 file: blobs, CBOR array manifest, u64 size footer."""
    buf = bytearray(LEGACY_MAGIC)
    entries = []
    for name, arr in tensors.items():
        buf += b"\x00" * ((-len(buf)) % 64)
        off = len(buf)
        raw = le_bytes(arr)
        buf += raw
        entries.append(
            {
                "name": name,
                "offset": off,
                "size": len(raw),
                "dtype": arr.dtype.name,
                "shape": list(arr.shape),
                "encoding": "raw",
                "layout": "dense",
            }
        )
    entries.extend(extra_entries)
    mb = cbor_encode(entries)
    return bytes(buf) + mb + struct.pack("<Q", len(mb))


# ---------------------------------------------------------------------------
# subprocess runners: reference implementation and package under test
# ---------------------------------------------------------------------------

# Shared (de)serialisation of array dicts between processes: npz + json sidecar,
# ml_dtypes arrays travel as same-width unsigned views plus their dtype name.
_PACK_SRC = r"""
import json as _json, numpy as _np, ml_dtypes as _mld
_ML = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
def pack_arrays(arrays, path):
    store, meta = {}, []
    for i, (name, a) in enumerate(arrays.items()):
        a = _np.asarray(a)
        dn = a.dtype.name if a.dtype.name in _ML else None
        store["a%d" % i] = a.view("u%d" % a.dtype.itemsize) if dn else a
        meta.append([name, dn])
    _np.savez(path + ".npz", **store)
    with open(path + ".json", "w") as f:
        _json.dump(meta, f)
def unpack_arrays(path):
    with open(path + ".json") as f:
        meta = _json.load(f)
    out = {}
    with _np.load(path + ".npz", allow_pickle=False) as z:
        for i, (name, dn) in enumerate(meta):
            a = z["a%d" % i]
            out[name] = a.view(_np.dtype(getattr(_mld, dn))) if dn else a
    return out
"""
_pack_ns: dict = {}
exec(_PACK_SRC, _pack_ns)
pack_arrays = _pack_ns["pack_arrays"]
unpack_arrays = _pack_ns["unpack_arrays"]


def _script(preamble: str, code: str) -> str:
    return (
        "import os, sys, json\n"
        + preamble
        + _PACK_SRC
        + "WORKDIR = os.environ['ZT_WORKDIR']\n"
        + "INPUTS = unpack_arrays(os.path.join(WORKDIR, 'inputs')) "
        "if os.path.exists(os.path.join(WORKDIR, 'inputs.json')) else {}\n"
        + "OUT = {}\nRESULT = None\n"
        + "# ---- test snippet ----\n"
        + textwrap.dedent(code)
        + "\n# ---- epilogue ----\n"
        + "pack_arrays(OUT, os.path.join(WORKDIR, 'outputs'))\n"
        + "with open(os.path.join(WORKDIR, 'result.json'), 'w') as f:\n"
        + "    json.dump(RESULT, f)\n"
    )


class SnippetRunner:
    """Runs a Python snippet in a fresh interpreter.

    The snippet sees ``INPUTS`` (dict of arrays), ``WORKDIR``, ``np``,
    ``ztensor``; it may fill ``OUT`` (dict of arrays) and set ``RESULT``
    (JSON-able). Calling the runner returns ``(OUT, RESULT)``; a non-zero exit
    fails the test with the interpreter's stderr.
    """

    def __init__(self, env: dict, preamble: str, workroot: Path, label: str):
        self.env, self.preamble, self.workroot, self.label = env, preamble, workroot, label
        self.count = 0

    def run_raw(self, code: str, inputs=None, timeout: float = 300, env_extra=None):
        self.count += 1
        wd = self.workroot / f"{self.label}{self.count}"
        wd.mkdir(parents=True, exist_ok=True)
        if inputs:
            pack_arrays(inputs, str(wd / "inputs"))
        script = wd / "snippet.py"
        script.write_text(_script(self.preamble, code))
        env = dict(self.env)
        env["ZT_WORKDIR"] = str(wd)
        if env_extra:
            env.update(env_extra)
        proc = subprocess.run(
            [PYTHON, str(script)], cwd=str(wd), env=env, capture_output=True, text=True, timeout=timeout
        )
        return proc, wd

    def __call__(self, code: str, inputs=None, timeout: float = 300):
        proc, wd = self.run_raw(code, inputs=inputs, timeout=timeout)
        if proc.returncode != 0:
            pytest.fail(
                f"{self.label} snippet failed (rc={proc.returncode}):\n"
                f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
            )
        outs = unpack_arrays(str(wd / "outputs"))
        with open(wd / "result.json") as f:
            result = json.load(f)
        return outs, result


def _default_ref_dir() -> Path:
    return Path(os.environ.get("ZTENSOR_REF_DIR", os.path.expanduser("~/.cache/ztensor/ref")))


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    """Directory holding the reference ztensor==1.2.3 (installed on demand, never skipped)."""
    d = _default_ref_dir()
    if not (d / "ztensor" / "__init__.py").exists():
        d.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [PYTHON, "-m", "pip", "install", "--no-deps", "--target", str(d), "ztensor==1.2.3"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not (d / "ztensor" / "__init__.py").exists():
            pytest.fail(f"could not install reference ztensor==1.2.3 into {d}:\n{proc.stdout}\n{proc.stderr}")
    return d.resolve()


@pytest.fixture(scope="session")
def run_ref(ref_dir, tmp_path_factory) -> SnippetRunner:
    """Run a snippet under the reference implementation (see SnippetRunner)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(ref_dir)
    env["ZT_REF_DIR"] = str(ref_dir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    preamble = (
        "sys.modules['torch'] = None  # the reference imports torch eagerly; not needed here\n"
        "import numpy as np, ml_dtypes\n"
        "import ztensor\n"
        "_ref = os.path.realpath(os.environ['ZT_REF_DIR'])\n"
        "assert os.path.realpath(ztensor.__file__).startswith(_ref + os.sep), "
        "('not the reference', ztensor.__file__)\n"
        "import ztensor.numpy\n"
    )
    return SnippetRunner(env, preamble, tmp_path_factory.mktemp("ref_runs"), "ref")


def _ours_env() -> dict:
    import ztensor  # the package under test

    ref = str(_default_ref_dir().resolve())
    pkg_parent = str(Path(ztensor.__file__).resolve().parent.parent)
    paths = [pkg_parent] + [
        p
        for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if p and not os.path.realpath(p).startswith(ref)
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["ZT_REF_DIR"] = ref
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


_OURS_PREAMBLE = (
    "import numpy as np, ml_dtypes\n"
    "import ztensor, ztensor.numpy\n"
    "_ref = os.path.realpath(os.environ['ZT_REF_DIR'])\n"
    "assert not os.path.realpath(ztensor.__file__).startswith(_ref + os.sep), "
    "('imported the reference instead of the package under test', ztensor.__file__)\n"
)


@pytest.fixture(scope="session")
def run_ours(tmp_path_factory) -> SnippetRunner:
    """Run a snippet in a fresh interpreter with the package under test."""
    return SnippetRunner(_ours_env(), _OURS_PREAMBLE, tmp_path_factory.mktemp("ours_runs"), "ours")


@pytest.fixture(scope="session", autouse=True)
def _package_under_test_is_not_reference():
    import ztensor

    ref = os.path.realpath(str(_default_ref_dir()))
    assert not os.path.realpath(ztensor.__file__).startswith(ref + os.sep), (
        "the tests imported the reference ztensor, not the package under test: " + ztensor.__file__
    )


@pytest.fixture
def dtype_samples():
    return all_dtypes()


@pytest.fixture
def zt_path(tmp_path):
    """A fresh (not yet existing) .zt path in a private temporary directory."""
    return tmp_path / "t.zt"


@pytest.fixture(scope="session")
def run_ref_torch(ref_dir, tmp_path_factory) -> SnippetRunner:
    """Like run_ref, but torch is importable: for the reference's ``ztensor.torch``.

    The snippet also sees ``torch`` and the reference's ``ztensor.torch`` (as
    ``zt_torch``).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(ref_dir)
    env["ZT_REF_DIR"] = str(ref_dir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    preamble = (
        "import numpy as np, ml_dtypes\n"
        "import torch\n"
        "import ztensor\n"
        "_ref = os.path.realpath(os.environ['ZT_REF_DIR'])\n"
        "assert os.path.realpath(ztensor.__file__).startswith(_ref + os.sep), "
        "('not the reference', ztensor.__file__)\n"
        "import ztensor.numpy\n"
        "import ztensor.torch as zt_torch\n"
        "assert os.path.realpath(zt_torch.__file__).startswith(_ref + os.sep), zt_torch.__file__\n"
    )
    return SnippetRunner(env, preamble, tmp_path_factory.mktemp("ref_torch_runs"), "reftorch")


_HOSTILE_CHILD = r"""
import json, os, resource, sys
opts = json.loads(sys.argv[3])
if opts["memory_limit"]:
    resource.setrlimit(resource.RLIMIT_AS, (opts["memory_limit"], opts["memory_limit"]))
import numpy as np
from ztensor import Reader, ZTensorError
import ztensor.numpy as ztnp

results = []
for path in json.load(open(sys.argv[1])):
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = {"path": path, "errors": {}}
    try:
        with Reader(path) as r:
            for k in r.keys():
                for copy in (False, True):
                    try:
                        np.asarray(r.read_tensor(k, copy=copy)).sum()
                    except ZTensorError as e:
                        res["errors"][k] = str(e)[:500]
            r.metadata()
        if opts["load_file"]:
            ztnp.load_file(path, copy=True)
        res["ok"] = True
    except BaseException as e:
        res.update(ok=False, type=type(e).__name__, clean=isinstance(e, (ZTensorError, OSError)),
                   msg=str(e)[:500])
    res["rss_growth_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    results.append(res)
json.dump(results, open(sys.argv[2], "w"))
"""


def run_hostile(tmp_path, paths, *, memory_limit: int | None = None, load_file: bool = True) -> dict:
    """Opens every file in a child interpreter (optionally under an RLIMIT_AS
    of `memory_limit` bytes) and reads every tensor zero-copy and copied, then
    (with `load_file`) the whole file with ``ztensor.numpy.load_file``.
    Asserts no crash and only clean exceptions; returns results by file name:
    ``ok``, ``type``/``msg`` of a failure, ``errors`` per tensor, ``rss_growth_kb``."""
    opts = json.dumps({"memory_limit": memory_limit, "load_file": load_file})
    results = run_cases_in_child(tmp_path, _HOSTILE_CHILD, paths, opts)
    return {os.path.basename(r["path"]): r for r in results}


def run_cases_in_child(tmp_path, child_src, paths, *extra_args):
    """Runs ``child_src`` (reads a JSON list of paths from argv[1], writes a
    JSON list of result dicts with ``ok``/``clean`` to argv[2]) in a fresh
    interpreter, so that a crash cannot take pytest down; asserts the child
    was not killed and every failure was a clean exception."""
    cases = tmp_path / "cases.json"
    out = tmp_path / "results.json"
    cases.write_text(json.dumps([str(p) for p in paths]))
    script = tmp_path / "child.py"
    script.write_text(child_src)
    proc = subprocess.run(
        [sys.executable, str(script), str(cases), str(out), *extra_args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode >= 0, f"child killed by signal {-proc.returncode}:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    for r in results:
        assert r["ok"] or r["clean"], r
    return results
