"""Truncation and bit-flip sweeps over every format: a damaged file never loads with wrong values.

Each format gets one or two small intact files (a few KB), written by the format's own library
(torch.save, safetensors, numpy.savez/savez_compressed/save, gguf.GGUFWriter, onnx, h5py, and our
Writer for ``.zt``). From each we derive damaged variants: truncations (every length, or every
length near both ends and a stride in between for the larger files) and single-bit flips (one
seeded random bit per byte, at every byte or at a stride). Our reader opens every variant in a
child interpreter (a crash fails the test instead of killing pytest) and reads every tensor it
lists, zero-copy and copied (``.zt``: its components too). What it may do with each read:

1. raise ``ZTensorError`` (any other exception fails the test); or
2. return exactly the intact file's tensor of the same name: dtype, shape and every byte, as
   the format's own library reads the intact file; or
3. for a bit flip only, return exactly what the format's own library returns for the same
   damaged bytes. This is the rule for damage no reader can notice: a flipped bit in raw
   safetensors, ``.npy``, GGUF, ONNX or HDF5 contiguous data, or in a tensor's name or shape
   where the format keeps no checksum over it, changes what the file says, and the format's
   library reads the new value (or the tensor under its new name). Where the library refuses
   the damaged file or reads something else (a zip member with a bad CRC-32, a deflate stream
   with a bad Adler-32, an HDF5 chunk address past the end, a ``.zt`` component whose digest
   no longer matches), a value that differs from the intact one is wrong.

A truncation must satisfy 1 or 2: the missing bytes can never be read, so any value that is not
the intact one came from somewhere it should not have.

For ``.zt`` "the format's own library" is an independent decoder of docs/format.md written here
(magic, footer, manifest, blob bounds, the length rule of dense raw data, digests over the stored
bytes). It decodes no zstd itself: a zstd component whose stored bytes are those of an intact
component decodes to that component's intact value, and one whose stored bytes were damaged
without a digest to notice is decoded by the reference ztensor 1.2.3 (libzstd), from a fresh
file holding only that blob.

The library runs in child interpreters too (libhdf5 may crash or hang on damaged files); a
variant it cannot survive counts as refused by it. Every sweep reports how many variants it
tried (run with ``-s``); the test fails on any wrong value or unclean exception, naming the
intact file (kept in pytest's temporary directory) and the variants.

Names follow our readers' conventions, applied to the library's result: our ONNX reader lists an
initializer whose name is empty (a damaged name field) as ``<graph 'G' initializer i>`` and a
Constant node without an output as ``<graph 'G' Constant node 'N'>``, and a
torch checkpoint's tensors are named by the dotted path of dict keys and list or tuple indices
that leads to them (a damaged opcode can turn the top-level dict into a tuple, which torch.load
returns as such). A legacy torch file differs from run to run (its storage keys are object
addresses), so the exact variants of that sweep do too.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    MAGIC,
    MANIFEST_DTYPE_WIDTH,
    ZtBuilder,
    cbor_decode,
    crc32c,
)

# ---------------------------------------------------------------------------
# intact files, written by each format's own library
# ---------------------------------------------------------------------------


def _torch_tensors():
    import torch

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1
    return {
        "w": base,
        "t": base.t(),  # a strided view of w's storage
        "row": base[1],  # a view at an offset into the same storage
        "h": torch.tensor([1.0, -2.5, 65504.0], dtype=torch.float16),
        "bf": torch.tensor([1.0, -3.0, 0.15625], dtype=torch.bfloat16),
        "i": torch.tensor([[1, -2], [3, 1 << 40]], dtype=torch.int64),
        "m": torch.tensor([True, False, True]),
        "s": torch.tensor(7.5, dtype=torch.float64),
    }


def make_pt_zip(path):
    import torch

    torch.save(_torch_tensors(), path)


def make_pt_legacy(path):
    import torch

    torch.save(_torch_tensors(), path, _use_new_zipfile_serialization=False)


def make_safetensors(path):
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in _torch_tensors().items() if k not in ("t", "row")}
    save_file(tensors, path, metadata={"k": "v"})


def _npz_arrays():
    return {
        "a": (np.arange(12, dtype=np.float32) * 0.25).reshape(3, 4),
        "be": np.array([1, -2, 300], dtype=">i2"),
        "f": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3) - 2.5),
        "m": np.array([True, False, True]),
        "u": np.array(7, dtype=np.uint8),
    }


def make_npz(path):
    np.savez(path, **_npz_arrays())


def make_npz_compressed(path):
    np.savez_compressed(path, **_npz_arrays())


def make_npy(path):
    np.save(path, np.asfortranarray(np.arange(12, dtype=">f8").reshape(3, 4) / 3))


def make_gguf(path):
    import gguf
    from gguf import GGMLQuantizationType as Q

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.name", "sweep")
    w.add_tensor("f", np.arange(8, dtype=np.float32).reshape(2, 4) - 3.5)
    w.add_tensor("h", np.array([0.5, -1, 2, 4], dtype=np.float16))
    w.add_tensor("i", np.array([5, -6, 7], dtype=np.int32))
    q = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), Q.Q8_0)
    w.add_tensor("q", q, raw_dtype=Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) - 6, "w"),
        helper.make_tensor("f", TensorProto.FLOAT, [3], [1.5, -2.0, 4.0], raw=False),
        helper.make_tensor("i", TensorProto.INT64, [2, 2], [1, -2, 3, 1 << 40], raw=False),
        numpy_helper.from_array(np.array([0.5, -1, 2], dtype=np.float16), "h"),
        numpy_helper.from_array(np.array([True, False]), "m"),
    ]
    const = helper.make_node(
        "Constant", [], ["c"], value=numpy_helper.from_array(np.array([3, 1, 4], dtype=np.int32))
    )
    graph = helper.make_graph([const], "main", [], [], initializer=inits)
    model = helper.make_model(graph, producer_name="sweep", opset_imports=[helper.make_opsetid("", 21)])
    onnx.save_model(model, str(path))


def make_h5_earliest(path):
    import h5py

    with h5py.File(path, "w", libver="earliest") as f:
        f["c"] = np.arange(12, dtype="<f4").reshape(3, 4)
        f.create_dataset("z", data=np.arange(6, dtype="<f8") + 0.5, chunks=(3,), compression="gzip")
        f.create_dataset(
            "s", data=np.arange(5, dtype="<i2") - 2, chunks=(2,), shuffle=True, compression="gzip"
        )
        u = f.create_dataset("u", shape=(7,), dtype="<i4", chunks=(3,), fillvalue=-1)
        u[:3] = [10, 20, 30]
        f.create_group("g")["be"] = np.array([1, -2, 3], dtype=">i8")
        f.attrs["n"] = 5


def make_h5_latest(path):
    import h5py

    with h5py.File(path, "w", libver="latest") as f:
        f["c"] = np.arange(6, dtype="<u2")
        f.create_dataset("fa", data=np.arange(10, dtype="<f4") / 4, chunks=(4,), compression="gzip")
        ea = f.create_dataset("ea", data=np.arange(9, dtype="<i8"), chunks=(4,), maxshape=(None,))
        ea.attrs["k"] = 1
        f.create_dataset(
            "bt2",
            data=np.arange(12, dtype="<i2").reshape(3, 4),
            chunks=(2, 2),
            maxshape=(None, None),
            shuffle=True,
            compression="gzip",
        )
        f.create_dataset("one", data=np.arange(5, dtype="<f8"), chunks=(5,), fletcher32=True)


def make_zt(path, checked: bool):
    import torch

    from ztensor import Writer

    ck = (lambda c: c) if checked else (lambda c: "none")
    with Writer(str(path)) as w:
        w.add("a", np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5, checksum=ck("crc32c"))
        w.add("z", np.tile(np.arange(4, dtype=np.int16), 16), compress=True, checksum=ck("sha256"))
        w.add("b", np.array([True, False, True]), checksum=ck("sha256"))
        w.add("x", np.arange(5, dtype=np.float64) * 1.5, compress=True, checksum=ck("crc32c"))
        dense = torch.tensor([[0.0, 1.5, 0.0], [-2.0, 0.0, 3.0]])
        w.write_torch("coo", dense.to_sparse(), checksum=ck("crc32c"))
        w.write_torch("csr", dense.to_sparse_csr(), compress=True, checksum=ck("sha256"))


# key -> (file suffix, maker); the library that judges a damaged file is chosen by ORACLE[key]
FORMATS = {
    "zt_plain": (".zt", lambda path: make_zt(path, checked=False)),
    "zt_checked": (".zt", lambda path: make_zt(path, checked=True)),
    "safetensors": (".safetensors", make_safetensors),
    "pt_zip": (".pt", make_pt_zip),
    "bin_legacy": (".bin", make_pt_legacy),
    "npz": (".npz", make_npz),
    "npz_compressed": (".npz", make_npz_compressed),
    "npy": (".npy", make_npy),
    "gguf": (".gguf", make_gguf),
    "onnx": (".onnx", make_onnx),
    "h5_earliest": (".h5", make_h5_earliest),
    "h5_latest": (".h5", make_h5_latest),
}
ORACLE = {
    "zt_plain": "zt",
    "zt_checked": "zt",
    "safetensors": "safetensors",
    "pt_zip": "torch",
    "bin_legacy": "torch",
    "npz": "npz",
    "npz_compressed": "npz",
    "npy": "npy",
    "gguf": "gguf",
    "onnx": "onnx",
    "h5_earliest": "h5",
    "h5_latest": "h5",
}


# ---------------------------------------------------------------------------
# variants
# ---------------------------------------------------------------------------

#: files up to this size get every truncation and a flip at every byte
DENSE_LIMIT = 3000
#: larger files: every cut and flip within this many bytes of either end, ~2500 at a stride between
EDGE = 600


def variants(n: int, seed: int) -> list:
    """Truncation lengths and (position, bit) flips of an `n`-byte file."""
    if n <= DENSE_LIMIT:
        positions = list(range(n))
    else:
        stride = max(2, (n - 2 * EDGE) // 2500)
        positions = sorted(set(range(EDGE)) | set(range(EDGE, n - EDGE, stride)) | set(range(n - EDGE, n)))
    rng = random.Random(seed)
    return [["cut", p] for p in positions] + [["flip", p, rng.randrange(8)] for p in positions]


# ---------------------------------------------------------------------------
# child interpreters: our reader, and each format's own library
# ---------------------------------------------------------------------------

_COMMON = r'''
import hashlib, json, os, sys
import numpy as np

def summ(a):
    a = np.ascontiguousarray(a)
    raw = a.reshape(-1).view(np.uint8).tobytes() if a.size else b""
    return [a.dtype.name, list(a.shape), hashlib.blake2b(raw, digest_size=12).hexdigest()]

def damage(data, v):
    if v[0] == "cut":
        return data[:v[1]]
    out = bytearray(data)
    out[v[1]] ^= 1 << v[2]
    return bytes(out)

def sweep(jobs_path, out_path, judge):
    """For each job, writes each damaged variant to a file, judges it and appends one JSON
    line per variant to out_path (flushed, so a crash shows the variant that caused it)."""
    jobs = json.load(open(jobs_path))
    skip = sum(1 for _ in open(out_path)) if os.path.exists(out_path) else 0
    with open(out_path, "a") as out:
        k = 0
        for job in jobs:
            data = open(job["path"], "rb").read()
            for v in job["variants"]:
                k += 1
                if k <= skip:
                    continue
                p = os.path.join(job["scratch"], "v%d%s" % (k, job["suffix"]))
                with open(p, "wb") as f:
                    f.write(damage(data, v))
                print("start", k, flush=True)
                res = judge(job, p)
                os.unlink(p)
                out.write(json.dumps(res) + "\n")
                out.flush()
'''

_common: dict = {}
exec(_COMMON, _common)
damage = _common["damage"]  # the parent damages .zt images the same way

OURS_CHILD = (
    _COMMON
    + r"""
from ztensor import Reader, ZTensorError

def attempt(fn):
    try:
        return summ(fn())
    except ZTensorError as e:
        return {"err": str(e)[:200]}
    except Exception as e:
        return {"unclean": "%s: %s" % (type(e).__name__, str(e)[:300])}

def judge(job, path):
    try:
        r = Reader(path)
    except ZTensorError as e:
        return {"open": str(e)[:200]}
    except Exception as e:
        return {"unclean": "%s: %s" % (type(e).__name__, str(e)[:300])}
    out = {}
    with r:
        try:
            names = r.keys()  # an HDF5 file is opened lazily: the walk happens here
        except ZTensorError as e:
            return {"open": str(e)[:200]}
        for name in names:
            t = {"view": attempt(lambda: r.read_tensor(name)),
                 "copy": attempt(lambda: r.read_tensor(name, copy=True))}
            if job["components"]:
                try:
                    comps = r.read_components(name, copy=True)
                    for c, arr in comps.items():
                        t["comp:" + c] = summ(arr)
                except ZTensorError as e:
                    t["comp"] = {"err": str(e)[:200]}
                except Exception as e:
                    t["comp"] = {"unclean": "%s: %s" % (type(e).__name__, str(e)[:300])}
            out[name] = t
    return {"tensors": out}

sweep(sys.argv[1], sys.argv[2], judge)
"""
)

LIBRARY_CHILD = (
    _COMMON
    + r"""
def t2n(t):
    import torch, ml_dtypes
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()

def native(a):
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("=")) if a.dtype.byteorder == ">" else a

def lib_safetensors(path):
    from safetensors.torch import load
    return {k: t2n(v) for k, v in load(open(path, "rb").read()).items()}

def lib_torch(path):
    import torch
    out = {}
    def walk(obj, name):  # named as our reader names them: dict keys and indices, dotted
        if isinstance(obj, torch.Tensor):
            out[name] = t2n(obj)
        elif isinstance(obj, (dict, list, tuple)):
            items = obj.items() if isinstance(obj, dict) else enumerate(obj)
            for k, v in items:
                walk(v, "%s.%s" % (name, k) if name else str(k))
    walk(torch.load(path, weights_only=True, map_location="cpu"), "")
    return out

def lib_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: native(z[k]) for k in z.files}

def lib_npy(path):
    return {"arr_0": native(np.load(path, allow_pickle=False))}

def lib_gguf(path):
    import gguf
    from gguf import GGMLQuantizationType as Q
    plain = {Q.F32, Q.F16, Q.F64, Q.I8, Q.I16, Q.I32, Q.I64}
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        d = np.array(t.data)
        if t.tensor_type == Q.BF16:  # gguf-py gives its bytes; we give bfloat16 values
            import ml_dtypes
            shape = tuple(int(n) for n in reversed(t.shape))
            d = d.reshape(-1).view(np.uint8).view(ml_dtypes.bfloat16).reshape(shape)
        out[t.name] = d if t.tensor_type in plain | {Q.BF16} else d.reshape(-1)  # quantized: bytes
    return out

def lib_onnx(path):
    import onnx
    from onnx import numpy_helper
    m = onnx.load(path)
    g = m.graph.name
    # An unnamed initializer (a damaged name field) is listed by our reader under the name below.
    out = {t.name or "<graph '%s' initializer %d>" % (g, i): numpy_helper.to_array(t)
           for i, t in enumerate(m.graph.initializer)}
    for node in m.graph.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value":
                name = node.output[0] if node.output and node.output[0] else None
                out[name or "<graph '%s' Constant node '%s'>" % (g, node.name)] = numpy_helper.to_array(a.t)
    return out

def lib_h5(path):
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf":
                out[name.replace("/", ".")] = native(obj[()])
        f.visititems(visit)
    return out

LIBS = {k[4:]: v for k, v in globals().items() if k.startswith("lib_")}

def judge(job, path):
    try:
        return {"tensors": {k: summ(v) for k, v in LIBS[job["library"]](path).items()}}
    except BaseException as e:
        return {"refused": "%s: %s" % (type(e).__name__, str(e)[:200])}

sweep(sys.argv[1], sys.argv[2], judge)
"""
)


def run_sweep_child(tmp_path: Path, label: str, src: str, jobs: list, *, tolerate_crash: bool) -> list:
    """Runs `src` over `jobs` in child interpreters; returns one result per variant, in order.

    A child that dies is restarted after the variant it died on; with `tolerate_crash` that
    variant counts as refused, else the test fails naming it."""
    work = tmp_path / label
    work.mkdir()
    script = work / "child.py"
    script.write_text(src)
    jobs_path, out_path = work / "jobs.json", work / "results.jsonl"
    for job in jobs:
        job["scratch"] = str(work)
    jobs_path.write_text(json.dumps(jobs))
    total = sum(len(j["variants"]) for j in jobs)
    for _attempt in range(50):
        try:
            proc = subprocess.run(
                [sys.executable, str(script), str(jobs_path), str(out_path)],
                capture_output=True,
                text=True,
                timeout=240,
            )
            rc, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, err = "timeout", (e.stderr or b"")[-2000:]
        done = sum(1 for _ in open(out_path)) if out_path.exists() else 0
        if rc == 0 and done == total:
            break
        crashed = _variant_at(jobs, done)
        if not tolerate_crash:
            pytest.fail(f"{label} child died ({rc}) on {crashed}:\n{str(err)[-3000:]}")
        with open(out_path, "a") as f:
            f.write(json.dumps({"refused": f"library process died ({rc})"}) + "\n")
    else:
        pytest.fail(f"{label}: too many child crashes")
    with open(out_path) as f:
        return [json.loads(line) for line in f]


def _variant_at(jobs, index):
    for job in jobs:
        if index < len(job["variants"]):
            return (job["key"], job["variants"][index])
        index -= len(job["variants"])
    return None


# ---------------------------------------------------------------------------
# .zt: an independent decoder of docs/format.md
# ---------------------------------------------------------------------------

_ZT_NP = {
    "f64": "float64",
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "i64": "int64",
    "i32": "int32",
    "i16": "int16",
    "i8": "int8",
    "u64": "uint64",
    "u32": "uint32",
    "u16": "uint16",
    "u8": "uint8",
    "bool": "bool",
}


class ZtRefused(Exception):
    pass


def zt_decode(data: bytes, intact_blobs: dict) -> dict:
    """Per tensor of a .zt image: {component: (dtype, shape, stored bytes, decoded bytes or
    None when zstd stored bytes must be decoded by libzstd)} or ZtRefused for the tensor.
    Raises ZtRefused when the file as a whole is unreadable. `intact_blobs` maps the
    stored bytes of every intact zstd component to its decoded bytes."""
    try:
        if len(data) < 24 or data[:8] != MAGIC or data[-8:] != MAGIC:
            raise ZtRefused("magic")
        n = int.from_bytes(data[-16:-8], "little")
        start = len(data) - 16 - n
        if start < 8:
            raise ZtRefused("manifest size")
        root, end = cbor_decode(data[: len(data) - 16], start)
        if end != len(data) - 16 or not isinstance(root, dict) or not isinstance(root.get("objects"), dict):
            raise ZtRefused("manifest")
    except ZtRefused:
        raise
    except Exception as e:
        raise ZtRefused(f"manifest: {e}") from None
    ranges = []
    for obj in root["objects"].values():
        for c in (obj.get("components") or {}).values() if isinstance(obj, dict) else ():
            if isinstance(c, dict) and isinstance(c.get("offset"), int) and isinstance(c.get("length"), int):
                ranges.append((c["offset"], c["offset"] + c["length"]))
    out = {}
    for name, obj in root["objects"].items():
        try:
            out[name] = _zt_object(data, start, obj, ranges, intact_blobs)
        except ZtRefused as e:
            out[name] = e
        except Exception as e:
            out[name] = ZtRefused(repr(e))
    return out


def _zt_object(data, start, obj, ranges, intact_blobs):
    shape = obj["shape"]
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ZtRefused("shape")
    numel = int(np.prod(shape, dtype=object)) if shape else 1
    fmt = obj["format"]
    comps = {}
    for cname, c in obj["components"].items():
        dt = c["dtype"]
        if dt not in _ZT_NP or c.get("type") is not None:
            raise ZtRefused("dtype")
        off, length = c["offset"], c["length"]
        if not (8 <= off and off + length <= start):
            raise ZtRefused("bounds")
        if length and any(
            lo < off + length and off < hi and (lo, hi) != (off, off + length) for lo, hi in ranges if hi > lo
        ):
            raise ZtRefused("overlap")
        stored = data[off : off + length]
        digest = c.get("digest")
        if digest is not None:
            if digest.startswith("crc32c:0x"):
                if int(digest[9:], 16) != crc32c(stored):
                    raise ZtRefused("digest")
            elif digest.startswith("sha256:"):
                if digest[7:] != hashlib.sha256(stored).hexdigest():
                    raise ZtRefused("digest")
            else:
                raise ZtRefused("unknown digest")
        width = MANIFEST_DTYPE_WIDTH[dt]
        enc = c.get("encoding", "raw")
        if enc == "raw":
            decoded = stored
        elif enc == "zstd":
            decoded = intact_blobs.get(stored)
        else:
            raise ZtRefused("encoding")
        expect = c.get("uncompressed_length")
        if decoded is not None:
            if expect is not None and expect != len(decoded):
                raise ZtRefused("uncompressed_length")
            if len(decoded) % width:
                raise ZtRefused("length")
        if fmt == "dense":
            if cname != "data" or len(obj["components"]) != 1:
                raise ZtRefused("components")
            if decoded is not None and len(decoded) != numel * width:
                raise ZtRefused("dense length")
            if decoded is None and expect is not None and expect != numel * width:
                raise ZtRefused("dense length")
            cshape = list(shape)
        else:
            cshape = None if decoded is None else [len(decoded) // width]
        size = expect if expect is not None else (numel * width if fmt == "dense" else None)
        if decoded is None and size is None:
            raise ZtRefused("zstd component of unknown size")
        comps[cname] = (_ZT_NP[dt], cshape, stored, decoded, width, size)
    return {"format": fmt, "shape": shape, "components": comps}


def _summ(dtype: str, shape, raw: bytes):
    return [dtype, list(shape), hashlib.blake2b(raw, digest_size=12).hexdigest()]


# ---------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, run_ref):
    tmp = tmp_path_factory.mktemp("damage")
    files = {}
    for seed, (key, (suffix, maker)) in enumerate(FORMATS.items()):
        path = tmp / f"{key}{suffix}"
        maker(str(path))
        files[key] = (path, path.read_bytes(), variants(path.stat().st_size, seed))
    jobs = [
        {
            "key": k,
            "path": str(p),
            "suffix": FORMATS[k][0],
            "components": k.startswith("zt_"),
            "variants": [["cut", len(d)]] + v,
        }
        for k, (p, d, v) in files.items()
    ]  # first: intact
    ours_flat = run_sweep_child(tmp, "ours", OURS_CHILD, jobs, tolerate_crash=False)
    ours, i = {}, 0
    for job in jobs:
        ours[job["key"]] = ours_flat[i : i + len(job["variants"])]
        i += len(job["variants"])

    # The libraries judge the intact files and the damaged variants where ours differs from them.
    intact = {}
    zt_blobs = {}
    lib_jobs = []
    for key, (path, data, _v) in files.items():
        if ORACLE[key] == "zt":
            intact[key] = _zt_intact(data, zt_blobs.setdefault(key, {}))
        else:
            lib_jobs.append(
                {
                    "key": key,
                    "path": str(path),
                    "suffix": FORMATS[key][0],
                    "library": ORACLE[key],
                    "variants": [["cut", len(data)]],
                }
            )
    lib_intact = run_sweep_child(tmp, "lib_intact", LIBRARY_CHILD, lib_jobs, tolerate_crash=False)
    for job, res in zip(lib_jobs, lib_intact, strict=True):
        assert "tensors" in res, (job["key"], res)
        intact[job["key"]] = res["tensors"]

    suspects = {}  # key -> indices of flip variants where ours returned a non-intact value
    report = {}
    for key, (_path, _data, vs) in files.items():
        res = ours[key]
        rep = report[key] = {
            "variants": len(vs),
            "unclean": [],
            "wrong": [],
            "opened": 0,
            "changed_but_agreed": 0,
        }
        for idx, (v, r) in enumerate(zip(vs, res[1:], strict=True)):
            if "unclean" in r:
                rep["unclean"].append((v, r["unclean"]))
                continue
            if "tensors" not in r:
                continue
            rep["opened"] += 1
            for name, t in r["tensors"].items():
                for op, got in t.items():
                    if isinstance(got, dict):
                        if "unclean" in got:
                            rep["unclean"].append((v, name, op, got["unclean"]))
                        continue
                    if _expected(intact[key], name, op) == got:
                        continue
                    if v[0] == "cut":
                        rep["wrong"].append((v, name, op, got, _expected(intact[key], name, op)))
                    else:
                        suspects.setdefault(key, set()).add(idx)

    # Flip variants where ours differs from the intact file: the library reads the damaged bytes.
    lib_jobs = []
    judged = {}
    for key, idxs in suspects.items():
        path, data, vs = files[key]
        idxs = sorted(idxs)
        if ORACLE[key] == "zt":
            images = [damage(data, vs[i]) for i in idxs]
            libs, report[key]["zstd_by_reference"] = _zt_judge_all(images, zt_blobs[key], run_ref, tmp)
            judged.update({(key, idx): lib for idx, lib in zip(idxs, libs, strict=True)})
        else:
            lib_jobs.append(
                {
                    "key": key,
                    "path": str(path),
                    "suffix": FORMATS[key][0],
                    "library": ORACLE[key],
                    "variants": [vs[i] for i in idxs],
                    "idx": idxs,
                }
            )
    if lib_jobs:
        flat = run_sweep_child(tmp, "lib_damaged", LIBRARY_CHILD, lib_jobs, tolerate_crash=True)
        k = 0
        for job in lib_jobs:
            for idx in job["idx"]:
                judged[(job["key"], idx)] = flat[k].get("tensors")
                k += 1
    for (key, idx), lib in judged.items():
        v = files[key][2][idx]
        rep = report[key]
        agreed = True
        for name, t in ours[key][idx + 1]["tensors"].items():
            for op, got in t.items():
                if isinstance(got, dict) or _expected(intact[key], name, op) == got:
                    continue
                if lib is not None and _expected(lib, name, op) == got:
                    continue
                agreed = False
                rep["wrong"].append(
                    (
                        v,
                        name,
                        op,
                        got,
                        "library: " + ("refused" if lib is None else str(_expected(lib, name, op))),
                    )
                )
        rep["changed_but_agreed"] += agreed
    if os.environ.get("ZT_SWEEP_DUMP"):  # for looking into failures
        Path(os.environ["ZT_SWEEP_DUMP"]).write_text(json.dumps(report, indent=1, default=str))
    return {"report": report, "intact": intact, "ours": ours, "files": files}


def _expected(lib: dict, name: str, op: str):
    """What a library result says tensor `name` read by `op` must be (None: no such tensor)."""
    t = lib.get(name)
    if t is None:
        return None
    if isinstance(t, dict):  # .zt: per read operation
        return t.get(op)
    return t if op in ("view", "copy") else None


def _zt_intact(data: bytes, blobs: dict) -> dict:
    """The intact .zt file as the independent decoder reads it. Its zstd blobs decode to the
    values make_zt wrote; `blobs` is filled with them (stored bytes -> decoded bytes)."""
    first = zt_decode(data, {})
    for name, arrays in _zt_written().items():
        for cname, (_dt, _shape, stored, raw, _w, _n) in first[name]["components"].items():
            if raw is None:
                blobs[stored] = np.ascontiguousarray(arrays[cname]).reshape(-1).view(np.uint8).tobytes()
    out = _zt_summaries(zt_decode(data, blobs))
    assert sorted(out) == sorted(first), "a tensor of the intact .zt file did not decode"
    return out


def _zt_summaries(decoded: dict) -> dict:
    """Per tensor and read operation, the summary the decoded file says it must return."""
    out = {}
    for name, obj in decoded.items():
        if isinstance(obj, Exception) or any(c[3] is None for c in obj["components"].values()):
            continue
        t = {}
        for cname, (dt, _shape, _stored, raw, width, _n) in obj["components"].items():
            if len(raw) % width:
                break
            t["comp:" + cname] = _summ(dt, [len(raw) // width], raw)
        else:
            if obj["format"] == "dense":
                dt, _shape, _stored, raw, _w, _n = obj["components"]["data"]
                t["view"] = t["copy"] = _summ(dt, obj["shape"], raw)
            out[name] = t
    return out


def _zt_written() -> dict:
    """The zstd-compressed component arrays make_zt writes, as stored (sparse indices
    widened to u64)."""
    dense = np.array([[0.0, 1.5, 0.0], [-2.0, 0.0, 3.0]], dtype=np.float32)
    rows, cols = np.nonzero(dense)
    return {
        "z": {"data": np.tile(np.arange(4, dtype=np.int16), 16)},
        "x": {"data": np.arange(5, dtype=np.float64) * 1.5},
        "csr": {
            "values": dense[rows, cols],
            "indices": cols.astype(np.uint64),
            "indptr": np.array([0, 1, 3], dtype=np.uint64),
        },
    }


def _zt_judge_all(images: list, blobs: dict, run_ref, tmp: Path) -> tuple:
    """The independent decoder on damaged .zt images (None: the file is refused), and how many
    damaged zstd blobs the reference 1.2.3 decoded for it (all in one child)."""
    need = {}
    for data in images:
        try:
            decoded = zt_decode(data, blobs)
        except ZtRefused:
            continue
        for obj in decoded.values():
            if not isinstance(obj, Exception):
                for c in obj["components"].values():
                    if c[3] is None:
                        need[c[2]] = c[5]
    if need:
        b = ZtBuilder()
        for i, (stored, size) in enumerate(need.items()):
            comp = b.add_dense(f"b{i}", dtype="u8", shape=[size], encoding="zstd", stored=stored)
            comp["uncompressed_length"] = size
        path = tmp / "zstd_blobs.zt"
        b.write(path)
        outs, refused = run_ref(f"""
import ztensor
from ztensor import Reader
RESULT = []
r = Reader({str(path)!r})
for k in r.keys():
    try:
        OUT[k] = np.asarray(r.read_numpy(k, copy=True)).reshape(-1).view(np.uint8)
    except Exception:
        RESULT.append(k)
""")
        for i, stored in enumerate(need):
            if f"b{i}" not in refused:
                blobs[stored] = outs[f"b{i}"].tobytes()
    out = []
    for data in images:
        try:
            out.append(_zt_summaries(zt_decode(data, blobs)))
        except ZtRefused:
            out.append(None)
    return out, len(need)


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(FORMATS))
def test_intact_file_reads_like_its_library(sweep, key):
    """The baseline: every tensor of the intact file reads exactly as the format's library
    (for .zt, the independent decoder) reads it, under the same names."""
    ours = sweep["ours"][key][0]
    assert "tensors" in ours, ours
    intact = sweep["intact"][key]
    assert sorted(ours["tensors"]) == sorted(intact)
    for name, t in ours["tensors"].items():
        for op, got in t.items():
            want = _expected(intact, name, op)
            if want is None:  # e.g. a dense read of a sparse tensor: an error is right
                assert isinstance(got, dict) and "err" in got, (name, op, got)
            else:
                assert got == want, (name, op)


@pytest.mark.parametrize("key", list(FORMATS))
def test_damaged_variants_never_read_wrong_values(sweep, key):
    rep = sweep["report"][key]
    zstd = f" (zstd blobs decoded by 1.2.3: {rep['zstd_by_reference']})" if "zstd_by_reference" in rep else ""
    print(
        f"\n{key}: {rep['variants']} damaged variants ({len(sweep['files'][key][1])}-byte file), "
        f"{rep['opened']} opened, {rep['changed_but_agreed']} read a changed value the library "
        f"also reads{zstd}, {len(rep['wrong'])} wrong values, {len(rep['unclean'])} unclean errors"
    )
    intact = sweep["files"][key][0]  # kept by pytest: the variants can be rebuilt from it
    assert not rep["unclean"], f"{intact}:\n" + "\n".join(map(str, rep["unclean"][:20]))
    assert not rep["wrong"], f"{intact}:\n" + "\n".join(map(str, rep["wrong"][:20]))
