"""Hostile and damaged files.

Every file is generated at test time, mostly with the independent builder in
conftest.py (validated against the reference in test_reference_interop.py).
Opening and reading hostile files happens in a child interpreter so that a
crash (SIGSEGV, abort, stack overflow) fails the test instead of killing
pytest; the child reports one result per (file, operation).

Expected outcome for content problems: ``ZTensorError`` (an ``Exception``
subclass, never ``PanicException``) whose message names the file and, where one
tensor is at fault, that tensor.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import struct
import zipfile

import numpy as np
import pytest

import ztensor
import ztensor.numpy as ztnp
from conftest import (
    MAGIC,
    CborRaw,
    ZtBuilder,
    build_legacy_zt,
    cbor_encode,
    le_bytes,
    parse_zt,
    run_cases_in_child,
    zstd_raw_frame,
    zstd_rle_frame,
)
from ztensor import Reader, Writer, ZTensorError

VICTIM = np.array([1.5, -2.0, 3.25, 1e30], dtype=np.float32)  # 16 bytes
BYSTANDER = np.arange(6, dtype=np.int16)
MB = 1024  # ru_maxrss is in KiB on Linux
RSS_LIMIT_KB = 200 * MB
TIME_LIMIT_S = 10.0


def _sha(arr) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).tobytes()).hexdigest()


BYSTANDER_SUMMARY = {"dtype": "int16", "shape": [6], "sha": _sha(BYSTANDER)}
VICTIM_SUMMARY = {"dtype": "float32", "shape": [4], "sha": _sha(VICTIM)}

# ---------------------------------------------------------------------------
# child-process runner
# ---------------------------------------------------------------------------

RUNNER = r"""
import hashlib, resource, time
from ztensor import Reader, ZTensorError
import ztensor.numpy as ztnp

def _summ(x):
    if isinstance(x, np.ndarray):
        b = np.ascontiguousarray(x).reshape(-1).view(np.uint8).tobytes()
        return {"dtype": x.dtype.name, "shape": list(x.shape), "sha": hashlib.sha256(b).hexdigest()}
    if isinstance(x, dict):
        return {str(k): _summ(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_summ(v) for v in x]
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return repr(x)

def _op(path, op, name):
    if op == "open":
        r = Reader(path)
        r.close()
        return None
    if op == "load_file":
        return ztnp.load_file(path)
    if op == "load_file_copy":
        return ztnp.load_file(path, copy=True)
    with Reader(path) as r:
        if op == "get":
            return r[name]
        if op == "copy":
            return r.read_tensor(name, copy=True)
        if op == "tensors":
            return r.read_tensors([name])
        if op == "load_numpy":
            return r.load_numpy()
        if op == "verify":
            return r.verify()
        if op == "components":
            return r.read_components(name)
        if op == "metadata":
            md = r.metadata(name)
            return {"shape": md.shape, "dtype": md.dtype, "type": md.type, "format": md.format,
                    "components": md.components, "attributes": md.attributes}
        if op == "root_meta":
            return r.metadata()
        if op == "keys":
            return r.keys()
        if op == "all":
            out = {}
            for k in r.keys():
                out[k] = r[k]
                r.read_tensor(k, copy=True)
                r.read_components(k)
                r.metadata(k)
            r.metadata()
            r.verify()
            return out
    raise AssertionError("unknown op " + op)

def run_all(cases_path):
    with open(cases_path) as f:
        cases = json.load(f)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = []
    for i, case in enumerate(cases):
        res = {}
        for op, name in case["ops"]:
            print("case", i, case["path"], op, name, flush=True)
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            try:
                v = _summ(_op(case["path"], op, name))
                r = {"ok": True, "value": v}
            except BaseException as e:
                r = {"ok": False, "type": type(e).__name__,
                     "mro": [c.__name__ for c in type(e).__mro__],
                     "is_exception": isinstance(e, Exception),
                     "is_zt": isinstance(e, ZTensorError), "msg": str(e)[:3000]}
            v = None
            r["secs"] = time.perf_counter() - t0
            r["rss_growth_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
            res["%s:%s" % (op, name)] = r
        results.append(res)
    return {"base_rss_kb": base_rss,
            "final_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "results": results}
"""


class CaseSet:
    """Collects hostile files and the operations to try on each."""

    def __init__(self, directory):
        self.dir = directory
        self.cases = []  # (key, path, ops)
        self.results = None
        self.rss = None

    def add(self, key: str, data: bytes, ops):
        path = self.dir / f"{key}.zt"
        path.write_bytes(bytes(data))
        self.cases.append((key, str(path), [list(o) for o in ops]))
        return key

    def run(self, run_ours, timeout=600):
        cases_path = self.dir / "_cases.json"
        cases_path.write_text(json.dumps([{"path": p, "ops": ops} for _, p, ops in self.cases]))
        proc, _wd = run_ours.run_raw(RUNNER + f"\nRESULT = run_all({str(cases_path)!r})\n", timeout=timeout)
        if proc.returncode != 0:
            last = [line for line in proc.stdout.splitlines() if line.startswith("case ")][-1:]
            pytest.fail(
                f"child process died (returncode {proc.returncode}"
                f"{f', signal {-proc.returncode}' if proc.returncode < 0 else ''}) "
                f"while running: {last}\n--- stderr ---\n{proc.stderr[-5000:]}"
            )
        with open(_wd / "result.json") as f:
            out = json.load(f)
        self.rss = (out["base_rss_kb"], out["final_rss_kb"])
        self.results = {
            key: (path, res) for (key, path, _), res in zip(self.cases, out["results"], strict=True)
        }
        return self

    def __getitem__(self, key):
        return self.results[key]


def zt_error_problem(res, path, *, tensor=None):
    """None if `res` is a proper ZTensorError, else a description of what is wrong."""
    if res["ok"]:
        return f"expected ZTensorError, but it succeeded: {str(res.get('value'))[:300]}"
    if not res["is_exception"]:
        return (
            f"raised {res['type']} which is not an Exception subclass (mro {res['mro']}): {res['msg'][:300]}"
        )
    if not res["is_zt"]:
        return f"expected ZTensorError, got {res['type']}: {res['msg'][:300]}"
    if os.path.basename(path) not in res["msg"]:
        return f"ZTensorError message does not name the file {os.path.basename(path)!r}: {res['msg'][:300]}"
    if tensor is not None and tensor not in res["msg"]:
        return f"ZTensorError message does not name the tensor {tensor!r}: {res['msg'][:300]}"
    return None


def assert_zt_error(res, path, *, tensor=None, what=""):
    __tracebackhide__ = True
    problem = zt_error_problem(res, path, tensor=tensor)
    if problem:
        pytest.fail(f"{what or os.path.basename(path)}: {problem}")


def assert_ok(res, expected=None, what=""):
    __tracebackhide__ = True
    if not res["ok"]:
        pytest.fail(f"{what}: expected success, got {res['type']}: {res['msg'][:500]}")
    if expected is not None:
        assert res["value"] == expected, what


# ---------------------------------------------------------------------------
# builders for the hostile files
# ---------------------------------------------------------------------------


def base(encoding="raw", checksum="crc32c", victim=VICTIM) -> ZtBuilder:
    b = ZtBuilder()
    b.add_dense("bystander", BYSTANDER)
    b.add_dense("victim", victim, encoding=encoding, checksum=checksum)
    return b


def vcomp(b: ZtBuilder) -> dict:
    return b.objects["victim"]["components"]["data"]


def with_manifest_size(data: bytes, size: int) -> bytes:
    return data[:-16] + struct.pack("<Q", size) + data[-8:]


def manifest_bytes(root) -> bytes:
    return cbor_encode(root)


VICTIM_OPS = [("get", "victim"), ("copy", "victim"), ("load_file", None)]
VICTIM_OPS_V = VICTIM_OPS + [("verify", None)]
PER_TENSOR_OPS = [
    ("open", None),
    ("get", "bystander"),
    ("get", "victim"),
    ("copy", "victim"),
    ("load_file", None),
]
ALL_OPS = [("all", None)]


# ---------------------------------------------------------------------------
# truncation
# ---------------------------------------------------------------------------


def test_every_truncation_is_an_error(run_ours, tmp_path):
    b = base(checksum="crc32c")
    b.add_dense("zz", np.arange(40, dtype=np.float64), encoding="zstd", checksum="sha256")
    full = b.build()
    cs = CaseSet(tmp_path)
    cs.add("full", full, ALL_OPS + [("load_file", None)])
    for n in range(len(full)):
        cs.add(f"trunc_{n:05d}", full[:n], ALL_OPS)
    cs.run(run_ours)
    path, res = cs["full"]
    assert_ok(res["all:None"], what="untruncated control")
    assert res["all:None"]["value"]["victim"] == VICTIM_SUMMARY
    problems = []
    for n in range(len(full)):
        path, res = cs[f"trunc_{n:05d}"]
        p = zt_error_problem(res["all:None"], path)
        if p:
            problems.append(f"length {n}: {p}")
    assert not problems, f"{len(problems)} of {len(full)} truncations mishandled:\n" + "\n".join(
        problems[:25]
    )


# ---------------------------------------------------------------------------
# single bit flips in checksummed data
# ---------------------------------------------------------------------------

FLIP_OPS = [
    ("get", "victim"),
    ("copy", "victim"),
    ("tensors", "victim"),
    ("components", "victim"),
    ("load_numpy", None),
    ("load_file", None),
    ("load_file_copy", None),
    ("verify", None),
    ("get", "bystander"),
]


def _ours_file(tmp_path, encoding, checksum) -> bytes:
    p = tmp_path / "ours_src.zt"
    victim = np.tile(VICTIM, 8) if encoding == "zstd" else VICTIM  # tiled: really compresses
    with Writer(str(p)) as w:
        w.add("bystander", BYSTANDER)
        w.add("victim", victim, compress=(encoding == "zstd"), checksum=checksum)
    data = p.read_bytes()
    p.unlink()
    return data


@pytest.mark.parametrize(
    "source,encoding,checksum",
    [
        ("builder", "raw", "crc32c"),
        ("builder", "raw", "sha256"),
        ("builder", "zstd", "crc32c"),
        ("builder", "zstd", "sha256"),
        ("package", "raw", "sha256"),
        ("package", "zstd", "crc32c"),
        ("package", "zstd", "sha256"),
    ],
)
def test_single_bit_flips_detected(run_ours, tmp_path, source, encoding, checksum):
    if source == "builder":
        data = base(encoding=encoding, checksum=checksum).build()
    else:
        data = _ours_file(tmp_path, encoding, checksum)
    manifest, _ = parse_zt(data)
    comp = manifest["objects"]["victim"]["components"]["data"]
    assert comp.get("encoding", "raw") == encoding and comp["digest"].startswith(checksum)
    lo, hi = comp["offset"], comp["offset"] + comp["length"]
    cs = CaseSet(tmp_path)
    cs.add("control", data, FLIP_OPS)
    keys = []
    for pos in range(lo, hi):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[pos] ^= 1 << bit
            keys.append(cs.add(f"flip_{pos:05d}_{bit}", mutated, FLIP_OPS))
    cs.run(run_ours)
    _, res = cs["control"]
    for op, res_ in res.items():
        assert_ok(res_, what=f"control {op}")
    problems = []
    for key in keys:
        path, res = cs[key]
        for op, r in res.items():
            if op == "get:bystander":
                if not r["ok"] or r["value"] != BYSTANDER_SUMMARY:
                    problems.append(f"{key} {op}: bystander not readable: {r.get('msg', r.get('value'))}")
                continue
            p = zt_error_problem(r, path, tensor="victim")
            if p:
                problems.append(f"{key} {op}: {p}")
    assert not problems, f"{len(problems)} undetected/mishandled flips:\n" + "\n".join(problems[:30])


# ---------------------------------------------------------------------------
# targeted structural damage (one child process for all of them)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def targeted(run_ours, tmp_path_factory):
    cs = CaseSet(tmp_path_factory.mktemp("targeted"))
    good = base().build()
    manifest_start = len(base().buf)

    # --- controls ---
    cs.add("control_raw", good, PER_TENSOR_OPS + [("all", None)])
    cs.add("control_zstd", base(encoding="zstd").build(), PER_TENSOR_OPS + [("all", None)])

    # --- magic / footer ---
    cs.add("empty", b"", ALL_OPS)
    cs.add("only_magic", MAGIC, ALL_OPS)
    cs.add("two_magics", MAGIC + MAGIC, ALL_OPS)
    cs.add("manifest_size_zero", MAGIC + struct.pack("<Q", 0) + MAGIC, ALL_OPS)
    cs.add("header_magic_bad", b"XTEN1000" + good[8:], ALL_OPS)
    cs.add("header_magic_version", b"ZTEN1001" + good[8:], ALL_OPS)
    cs.add("header_magic_legacy_on_v1", b"ZTEN0001" + good[8:], ALL_OPS)
    cs.add("footer_magic_bad", good[:-8] + b"ZTEN100\x00", ALL_OPS)
    cs.add("footer_magic_missing", good[:-8], ALL_OPS)
    cs.add("random_garbage", random.Random(7).randbytes(1000), ALL_OPS)
    cs.add("random_with_magics", MAGIC + random.Random(8).randbytes(500) + MAGIC, ALL_OPS)

    # --- manifest size field ---
    n = len(good)
    for key, size in [
        ("msize_past_file", n - 15),
        ("msize_whole_file", n - 16),
        ("msize_2_63", 2**63),
        ("msize_u64_max", 2**64 - 1),
        ("msize_zero", 0),
        ("msize_1gib_plus", 2**30 + 1),
        ("msize_one_short", n - 16 - manifest_start - 1),
    ]:
        cs.add(key, with_manifest_size(good, size), ALL_OPS)

    # --- offsets / lengths ---
    def off_case(key, *, encoding="raw", shape=None, dtype=None, ops=VICTIM_OPS_V, **fields):
        b = base(encoding=encoding)
        c = vcomp(b)
        c.update(fields)
        if shape is not None:
            b.objects["victim"]["shape"] = shape
        if dtype is not None:
            c["dtype"] = dtype
        cs.add(key, b.build(), ops)

    off_case("off_overflow_u64", offset=2**64 - 64)
    off_case("off_overflow_len128", offset=2**64 - 64, length=128, shape=[32])
    off_case("off_u64_max", offset=2**64 - 1)
    off_case("len_u64_max", length=2**64 - 1)
    off_case("off_plus_len_wraps", length=2**64 - 64)
    off_case("off_past_eof", offset=1 << 20)
    off_case("off_in_header", offset=0)
    off_case("off_in_manifest", offset=manifest_start)
    b = base()
    c = vcomp(b)
    span = manifest_start - c["offset"] + 24  # runs through the manifest into the footer
    c.update(dtype="u8", length=span)
    b.objects["victim"]["shape"] = [span]
    cs.add("len_into_footer", b.build(), VICTIM_OPS_V)
    off_case("zstd_len_u64_max", encoding="zstd", length=2**64 - 1)
    off_case("zstd_off_overflow", encoding="zstd", offset=2**64 - 8)
    off_case("zstd_off_past_eof", encoding="zstd", offset=1 << 30)
    off_case("zstd_ulen_u64_max", encoding="zstd", uncompressed_length=2**64 - 1)
    off_case("shape_product_overflow", shape=[2**32, 2**32, 2**8], ops=VICTIM_OPS)
    off_case("shape_u64_max", shape=[2**64 - 1], ops=VICTIM_OPS)
    off_case("shape_wraps_to_zero_u8", shape=[2**62, 4], dtype="u8", length=0)
    off_case("shape_wraps_to_zero_f32", shape=[2**63, 2], length=0)
    off_case("shape_wraps_to_length", shape=[2**62 + 4], ops=VICTIM_OPS)  # 4*(2**62+4) mod 2**64 == 16
    off_case("too_many_dims", shape=[1] * 65, length=4, dtype="f32")

    # --- overlaps ---
    def two(key, mutate, ops):
        b = ZtBuilder()
        b.add_dense("a", VICTIM, checksum="crc32c")
        b.add_dense("b", VICTIM[::-1].copy())
        mutate(b.objects["a"]["components"]["data"], b.objects["b"])
        cs.add(key, b.build(), ops)

    def partial(ca, ob):
        ob["components"]["data"]["offset"] = ca["offset"] + 8

    def contained(ca, ob):
        ob["components"]["data"].update(offset=ca["offset"], length=8)
        ob["shape"] = [2]

    def straddle(ca, ob):
        ob["components"]["data"].update(offset=ca["offset"] + 4, length=16)

    def alias(ca, ob):
        ob["components"]["data"]["offset"] = ca["offset"]

    overlap_ops = [("get", "a"), ("get", "b"), ("copy", "b"), ("load_file", None)]
    two("overlap_partial", partial, overlap_ops)
    two("overlap_contained", contained, overlap_ops)
    two("overlap_straddle", straddle, overlap_ops)
    two("alias_exact", alias, overlap_ops + [("verify", None)])

    # --- schema violations ---
    def schema(key, edit, ops=(("open", None), ("get", "victim"), ("load_file", None))):
        b = base()
        root = b.manifest()
        edit(root, root["objects"]["victim"], root["objects"]["victim"]["components"]["data"])
        cs.add(key, b.build(manifest_bytes(root)), ops)

    schema("root_int_key_only", lambda r, o, c: (r.clear(), r.update({0: [1, 2, 3]})))
    b = base()
    cs.add("manifest_array_root", b.build(cbor_encode([1, 2, 3])), ALL_OPS)
    cs.add("manifest_random", b.build(random.Random(3).randbytes(200)), ALL_OPS)
    cs.add("manifest_leading_garbage", b.build(b"\xff" + cbor_encode(b.manifest())), ALL_OPS)
    schema("missing_version", lambda r, o, c: r.pop("version"))
    schema("missing_objects", lambda r, o, c: r.pop("objects"))
    schema("version_int", lambda r, o, c: r.update(version=5))
    schema("objects_list", lambda r, o, c: r.update(objects=[]))
    schema("shape_negative", lambda r, o, c: o.update(shape=[-1]))
    schema("shape_float", lambda r, o, c: o.update(shape=[4.0]))
    schema("shape_string", lambda r, o, c: o.update(shape="4"))
    schema("shape_missing", lambda r, o, c: o.pop("shape"))
    schema("offset_float", lambda r, o, c: c.update(offset=float(c["offset"])))
    schema("offset_negative", lambda r, o, c: c.update(offset=-64))
    schema("offset_string", lambda r, o, c: c.update(offset="128"))
    schema("length_missing", lambda r, o, c: c.pop("length"))
    schema("dtype_int", lambda r, o, c: c.update(dtype=5))
    schema("dtype_missing", lambda r, o, c: c.pop("dtype"))
    schema("components_missing", lambda r, o, c: o.pop("components"))
    schema("components_empty", lambda r, o, c: o.update(components={}))
    schema("components_not_map", lambda r, o, c: o.update(components=[1]))
    schema("format_int", lambda r, o, c: o.update(format=3))

    def bad_name(key, raw_key):
        b = base()
        root = b.manifest()
        objs = root["objects"]
        root["objects"] = {CborRaw(raw_key): objs["victim"], "bystander": objs["bystander"]}
        cs.add(key, b.build(manifest_bytes(root)), ALL_OPS)

    bad_name("name_invalid_utf8", b"\x62\xff\xfe")
    bad_name("name_int_key", b"\x05")

    # --- per-tensor unknowns: only the victim is unreadable ---
    def unknown(key, edit):
        b = base()
        edit(b.objects["victim"], vcomp(b))
        cs.add(key, b.build(), PER_TENSOR_OPS)

    unknown("unknown_dtype_f128", lambda o, c: c.update(dtype="f128"))
    unknown("unknown_dtype_uppercase", lambda o, c: c.update(dtype="F32"))
    unknown("unknown_dtype_numpy_name", lambda o, c: c.update(dtype="float32"))
    unknown("unknown_dtype_empty", lambda o, c: c.update(dtype=""))
    unknown("unknown_encoding_lz4", lambda o, c: c.update(encoding="lz4"))
    unknown("unknown_encoding_uppercase", lambda o, c: c.update(encoding="ZSTD"))
    unknown("unknown_format", lambda o, c: o.update(format="sparse_weird"))
    unknown("dense_without_data", lambda o, c: o.update(components={"values": c}))

    # --- length / size mismatches ---
    def stored_case(key, stored, *, encoding="raw", shape=None, ltype=None, **fields):
        b = ZtBuilder()
        b.add_dense("bystander", BYSTANDER)
        b.add_dense("victim", VICTIM, encoding=encoding, stored=stored, ltype=ltype)
        vcomp(b).update(fields)
        if shape is not None:
            b.objects["victim"]["shape"] = shape
        cs.add(key, b.build(), PER_TENSOR_OPS)

    raw = le_bytes(VICTIM)
    stored_case("raw_len_short", raw[:12])
    stored_case("raw_len_long", raw + b"\x00" * 4)
    stored_case("raw_len_zero", b"")
    stored_case("raw_len_not_multiple", raw[:15])
    stored_case("zstd_short_output", zstd_raw_frame(raw[:12]), encoding="zstd")
    stored_case(
        "zstd_short_output_ulen_matches_frame",
        zstd_raw_frame(raw[:12]),
        encoding="zstd",
        uncompressed_length=12,
    )
    stored_case("zstd_long_output", zstd_raw_frame(raw + b"\x01" * 4), encoding="zstd")
    stored_case("zstd_ulen_mismatch", zstd_raw_frame(raw), encoding="zstd", uncompressed_length=999)
    stored_case("zstd_truncated_frame", zstd_raw_frame(raw, last_block=False), encoding="zstd")
    stored_case("zstd_frame_cut", zstd_raw_frame(raw)[:-3], encoding="zstd")
    stored_case("zstd_garbage", b"\x28\xb5\x2f\xfd" + random.Random(1).randbytes(40), encoding="zstd")
    stored_case("zstd_not_zstd", random.Random(2).randbytes(40), encoding="zstd")
    stored_case("zstd_empty_blob", b"", encoding="zstd")
    stored_case("zstd_fcs_lies", zstd_raw_frame(raw, fcs=17), encoding="zstd")
    stored_case("complex_len_mismatch", raw[:12], ltype="complex64", shape=[2])

    # positive: uncompressed_length is optional
    b = base(encoding="zstd")
    vcomp(b).pop("uncompressed_length")
    cs.add("zstd_ulen_absent_ok", b.build(), PER_TENSOR_OPS)

    # --- digests ---
    def digest_case(key, digest, encoding="raw", ops=VICTIM_OPS_V):
        b = base(encoding=encoding)
        vcomp(b)["digest"] = digest
        cs.add(key, b.build(), ops)

    digest_case("digest_wrong_crc", "crc32c:0x12345678")
    digest_case("digest_wrong_crc_zstd", "crc32c:0x12345678", encoding="zstd")
    digest_case("digest_wrong_sha", "sha256:" + "ab" * 32)
    digest_case("digest_wrong_sha_zstd", "sha256:" + "00" * 32, encoding="zstd")
    digest_case("digest_nonhex", "crc32c:0xZZZZZZZZ")
    digest_case("digest_sha_short", "sha256:abcd")
    digest_case("digest_unknown_algo", "md5:0123456789abcdef", ops=[("metadata", "victim")])

    # --- deep nesting ---
    deep_arrays = CborRaw(b"\x81" * 100000 + b"\x80")
    deep_maps = CborRaw(b"\xa1\x61k" * 100000 + b"\xa0")
    b = base()
    b.root_extra = {"attributes": {"deep": deep_arrays}}
    cs.add("deep_root_attr_arrays", b.build(), ALL_OPS)
    b = base()
    b.root_extra = {"attributes": {"deep": deep_maps}}
    cs.add("deep_root_attr_maps", b.build(), ALL_OPS)
    b = base()
    b.objects["victim"]["attributes"] = {"deep": deep_arrays}
    cs.add("deep_object_attr", b.build(), ALL_OPS)
    b = base()
    b.objects["victim"]["shape"] = deep_arrays
    cs.add("deep_shape", b.build(), ALL_OPS)
    b = base()
    root = b.manifest()
    cs.add("deep_unknown_key", b.build(cbor_encode({**root, "future": deep_arrays})), ALL_OPS)

    # --- legacy ZTEN0001 ---
    legacy = build_legacy_zt({"bystander": BYSTANDER, "victim": VICTIM})
    cs.add("legacy_control", legacy, PER_TENSOR_OPS)
    entry = {
        "name": "victim",
        "offset": 64,
        "size": 12,
        "dtype": "int16",
        "shape": [6],
        "encoding": "raw",
        "layout": "dense",
        "checksum": "crc32c:0x00000000",
    }
    cs.add("legacy_bad_checksum", build_legacy_zt({"bystander": BYSTANDER}, [entry]), PER_TENSOR_OPS)
    entry2 = dict(entry, checksum=None, offset=2**64 - 64)
    entry2.pop("checksum")
    cs.add(
        "legacy_offset_overflow",
        build_legacy_zt({"bystander": BYSTANDER}, [entry2]),
        [("get", "victim"), ("load_file", None)],
    )
    entry3 = dict(entry2, offset=64, size=2**64 - 1)
    cs.add(
        "legacy_size_overflow",
        build_legacy_zt({"bystander": BYSTANDER}, [entry3]),
        [("get", "victim"), ("load_file", None)],
    )
    cs.add("legacy_truncated", legacy[:-1], ALL_OPS)
    cs.add("legacy_size_past_file", legacy[:-8] + struct.pack("<Q", len(legacy)), ALL_OPS)
    cs.add("legacy_size_huge", legacy[:-8] + struct.pack("<Q", 2**64 - 1), ALL_OPS)
    cs.add("legacy_only_magic", b"ZTEN0001", ALL_OPS)

    return cs.run(run_ours)


def test_controls_read(targeted):
    for key in ("control_raw", "control_zstd"):
        path, res = targeted[key]
        for op, r in res.items():
            assert_ok(r, what=f"{key} {op}")
        assert res["get:victim"]["value"] == VICTIM_SUMMARY
        assert res["get:bystander"]["value"] == BYSTANDER_SUMMARY


@pytest.mark.parametrize(
    "key",
    [
        "empty",
        "only_magic",
        "two_magics",
        "manifest_size_zero",
        "header_magic_bad",
        "header_magic_version",
        "header_magic_legacy_on_v1",
        "footer_magic_bad",
        "footer_magic_missing",
        "random_garbage",
        "random_with_magics",
    ],
)
def test_bad_magic_and_tiny_files(targeted, key):
    path, res = targeted[key]
    assert_zt_error(res["all:None"], path, what=key)


@pytest.mark.parametrize(
    "key",
    [
        "msize_past_file",
        "msize_whole_file",
        "msize_2_63",
        "msize_u64_max",
        "msize_zero",
        "msize_1gib_plus",
        "msize_one_short",
    ],
)
def test_bad_manifest_size(targeted, key):
    path, res = targeted[key]
    assert_zt_error(res["all:None"], path, what=key)


@pytest.mark.parametrize(
    "key",
    [
        "off_overflow_u64",
        "off_overflow_len128",
        "off_u64_max",
        "len_u64_max",
        "off_plus_len_wraps",
        "off_past_eof",
        "off_in_header",
        "off_in_manifest",
        "len_into_footer",
        "zstd_len_u64_max",
        "zstd_off_overflow",
        "zstd_off_past_eof",
        "zstd_ulen_u64_max",
        "shape_product_overflow",
        "shape_u64_max",
        "shape_wraps_to_zero_u8",
        "shape_wraps_to_zero_f32",
        "shape_wraps_to_length",
        "too_many_dims",
    ],
)
def test_bad_offsets_lengths_shapes(targeted, key):
    path, res = targeted[key]
    for op, r in res.items():
        # may be rejected when the file is opened (no tensor name then) or when read
        assert_zt_error(r, path, what=f"{key} {op}")


@pytest.mark.parametrize("key", ["overlap_partial", "overlap_contained", "overlap_straddle"])
def test_partial_overlap_rejected(targeted, key):
    path, res = targeted[key]
    for op, r in res.items():
        assert_zt_error(r, path, what=f"{key} {op}")


def test_exact_alias_allowed(targeted):
    path, res = targeted["alias_exact"]
    for op, r in res.items():
        assert_ok(r, what=f"alias_exact {op}")
    assert res["get:a"]["value"] == VICTIM_SUMMARY
    assert res["get:b"]["value"] == VICTIM_SUMMARY  # same bytes as a


@pytest.mark.parametrize(
    "key",
    [
        "root_int_key_only",
        "manifest_array_root",
        "manifest_random",
        "manifest_leading_garbage",
        "missing_version",
        "missing_objects",
        "version_int",
        "objects_list",
        "shape_negative",
        "shape_float",
        "shape_string",
        "shape_missing",
        "offset_float",
        "offset_negative",
        "offset_string",
        "length_missing",
        "dtype_int",
        "dtype_missing",
        "components_missing",
        "components_not_map",
        "format_int",
        "name_invalid_utf8",
        "name_int_key",
    ],
)
def test_schema_violations(targeted, key):
    path, res = targeted[key]
    failed = [r for r in res.values() if not r["ok"]]
    assert failed, f"{key}: every operation succeeded"
    for op, r in res.items():
        if op == "open:None" and r["ok"]:
            continue  # a per-tensor problem may surface only when that tensor is read
        assert_zt_error(r, path, what=f"{key} {op}")


@pytest.mark.parametrize(
    "key",
    [
        "unknown_dtype_f128",
        "unknown_dtype_uppercase",
        "unknown_dtype_numpy_name",
        "unknown_dtype_empty",
        "unknown_encoding_lz4",
        "unknown_encoding_uppercase",
        "unknown_format",
        "dense_without_data",
        "components_empty",
    ],
)
def test_unknown_values_break_only_that_tensor(targeted, key):
    path, res = targeted[key]
    if key == "components_empty":  # schema helper ops: open, get victim, load_file
        assert_zt_error(res["get:victim"], path, tensor="victim", what=key)
        assert_zt_error(res["load_file:None"], path, what=key)
        return
    assert_ok(res["open:None"], what=f"{key}: the rest of the file must still open")
    assert_ok(res["get:bystander"], BYSTANDER_SUMMARY, what=f"{key}: other tensors stay readable")
    assert_zt_error(res["get:victim"], path, tensor="victim", what=key)
    assert_zt_error(res["copy:victim"], path, tensor="victim", what=key)
    assert_zt_error(res["load_file:None"], path, tensor="victim", what=key)


@pytest.mark.parametrize(
    "key",
    [
        "raw_len_short",
        "raw_len_long",
        "raw_len_zero",
        "raw_len_not_multiple",
        "zstd_short_output",
        "zstd_short_output_ulen_matches_frame",
        "zstd_long_output",
        "zstd_ulen_mismatch",
        "zstd_truncated_frame",
        "zstd_frame_cut",
        "zstd_garbage",
        "zstd_not_zstd",
        "zstd_empty_blob",
        "zstd_fcs_lies",
        "complex_len_mismatch",
    ],
)
def test_size_mismatch_names_tensor(targeted, key):
    path, res = targeted[key]
    for op in ("get:victim", "copy:victim", "load_file:None"):
        assert_zt_error(res[op], path, tensor="victim", what=f"{key} {op}")
    # the broken tensor does not take the others down
    assert_ok(res["get:bystander"], BYSTANDER_SUMMARY, what=f"{key} bystander")


def test_uncompressed_length_optional(targeted):
    path, res = targeted["zstd_ulen_absent_ok"]
    for op, r in res.items():
        assert_ok(r, what=f"zstd_ulen_absent_ok {op}")
    assert res["get:victim"]["value"] == VICTIM_SUMMARY


@pytest.mark.parametrize(
    "key",
    [
        "digest_wrong_crc",
        "digest_wrong_crc_zstd",
        "digest_wrong_sha",
        "digest_wrong_sha_zstd",
        "digest_nonhex",
        "digest_sha_short",
    ],
)
def test_bad_digest(targeted, key):
    path, res = targeted[key]
    for op, r in res.items():
        assert_zt_error(r, path, tensor="victim", what=f"{key} {op}")


def test_unknown_digest_algorithm_is_reported(targeted):
    path, res = targeted["digest_unknown_algo"]
    assert_ok(res["metadata:victim"], what="metadata of a tensor with an unknown digest")
    assert res["metadata:victim"]["value"]["components"]["data"]["digest"] == "md5:0123456789abcdef"


@pytest.mark.parametrize(
    "key", ["deep_root_attr_arrays", "deep_root_attr_maps", "deep_object_attr", "deep_shape"]
)
def test_deep_nesting(targeted, key):
    path, res = targeted[key]
    assert_zt_error(res["all:None"], path, what=key)


def test_deep_nesting_under_unknown_key(targeted):
    """Unknown keys are ignored, but skipping a 100000-deep value must not crash either."""
    path, res = targeted["deep_unknown_key"]
    r = res["all:None"]
    if r["ok"]:
        assert r["value"]["victim"] == VICTIM_SUMMARY
    else:
        assert_zt_error(r, path, what="deep_unknown_key")


def test_legacy_files(targeted):
    path, res = targeted["legacy_control"]
    for op, r in res.items():
        assert_ok(r, what=f"legacy_control {op}")
    assert res["get:victim"]["value"] == VICTIM_SUMMARY
    path, res = targeted["legacy_bad_checksum"]
    assert_ok(res["get:bystander"], BYSTANDER_SUMMARY, what="legacy_bad_checksum bystander")
    assert_zt_error(res["get:victim"], path, tensor="victim", what="legacy_bad_checksum")
    assert_zt_error(res["load_file:None"], path, what="legacy_bad_checksum load_file")
    for key in (
        "legacy_offset_overflow",
        "legacy_size_overflow",
        "legacy_truncated",
        "legacy_size_past_file",
        "legacy_size_huge",
        "legacy_only_magic",
    ):
        path, res = targeted[key]
        for op, r in res.items():
            assert_zt_error(r, path, what=f"{key} {op}")


def test_targeted_cases_fast(targeted):
    slow = [
        (k, op, round(r["secs"], 2))
        for k, (_, res) in targeted.results.items()
        for op, r in res.items()
        if r["secs"] > TIME_LIMIT_S
    ]
    assert not slow, f"operations slower than {TIME_LIMIT_S}s: {slow}"


# ---------------------------------------------------------------------------
# component sizes that are no whole number of elements (found by test_damage_sweep.py)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding,declared", [("raw", True), ("zstd", True), ("zstd", False)])
def test_component_of_a_partial_element_is_an_error(run_ours, tmp_path, encoding, declared):
    """A sparse component of 34 bytes of u64 (e.g. a length damaged by a bit flip): a
    ZTensorError naming the tensor, not NumPy's ValueError from the Python layer."""
    b = ZtBuilder()
    b.add_dense("bystander", BYSTANDER)
    values = np.array([1.5, -2.0], dtype=np.float32)
    raw = np.array([0, 1, 1, 0], dtype=np.uint64).tobytes()[:-2]  # 30 bytes
    stored = raw if encoding == "raw" else zstd_raw_frame(raw)
    coords = {"dtype": "u64", "offset": b.blob(stored), "length": len(stored)}
    if encoding == "zstd":
        if declared:
            coords["uncompressed_length"] = len(raw)
        coords["encoding"] = "zstd"
    vals = {"dtype": "f32", "offset": b.blob(values.tobytes()), "length": 8}
    b.objects["sp"] = {
        "shape": [2, 2],
        "format": "sparse_coo",
        "components": {"coords": coords, "values": vals},
    }
    cs = CaseSet(tmp_path)
    cs.add("partial", b.build(), [("components", "sp"), ("get", "bystander"), ("open", None)])
    cs.run(run_ours)
    path, res = cs["partial"]
    assert_zt_error(res["components:sp"], path, tensor="sp")
    assert "30 bytes" in res["components:sp"]["msg"], res["components:sp"]["msg"]
    assert_ok(res["get:bystander"], BYSTANDER_SUMMARY)
    assert_ok(res["open:None"])


# ---------------------------------------------------------------------------
# damaged foreign files that read with wrong values before (found by test_damage_sweep.py)
# ---------------------------------------------------------------------------

_READ_ALL_CHILD = r"""
import hashlib, json, sys
import numpy as np
from ztensor import Reader, ZTensorError

results = []
for path in json.load(open(sys.argv[1])):
    res = {"path": path, "ok": True, "tensors": {}}
    try:
        with Reader(path) as r:
            for k in r.keys():
                for copy in (False, True):
                    try:
                        a = np.ascontiguousarray(r.read_tensor(k, copy=copy))
                        res["tensors"].setdefault(k, []).append(
                            [a.dtype.name, list(a.shape), a.reshape(-1).view(np.uint8).tobytes().hex()])
                    except ZTensorError as e:
                        res["tensors"].setdefault(k, []).append({"err": str(e)})
    except BaseException as e:
        res.update(ok=False, clean=isinstance(e, ZTensorError), type=type(e).__name__, msg=str(e))
    results.append(res)
json.dump(results, open(sys.argv[2], "w"))
"""


def _read_all(tmp_path, files: dict) -> dict:
    """Writes `files` (name -> bytes), reads every tensor of each zero-copy and copied in a child;
    returns per file either {"ok": False, "msg"} or {"ok": True, "tensors": {name: [view, copy]}},
    each read an error {"err"} or [dtype, shape, hex bytes]."""
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    results = run_cases_in_child(tmp_path, _READ_ALL_CHILD, paths)
    return {os.path.basename(r["path"]): r for r in results}


def _summary(arr) -> list:
    a = np.ascontiguousarray(arr)
    return [a.dtype.name, list(a.shape), a.reshape(-1).view(np.uint8).tobytes().hex()]


def _flip(data: bytes, pos: int, mask: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


def test_npz_stored_member_with_a_bad_crc_is_refused(tmp_path):
    """np.load checks a stored member's CRC-32; we hand its bytes out zero-copy and checked
    none, so a flipped data bit read as a wrong value."""
    arrays = {"a": np.arange(12, dtype=np.float32), "b": np.arange(3, dtype=np.int16)}
    np.savez(tmp_path / "src.npz", **arrays)
    data = (tmp_path / "src.npz").read_bytes()
    pos = data.index(arrays["a"].tobytes()) + 5
    bad = _flip(data, pos, 0x10)
    (tmp_path / "lib.npz").write_bytes(bad)
    with np.load(tmp_path / "lib.npz") as z, pytest.raises(zipfile.BadZipFile, match="CRC"):
        z["a"]
    res = _read_all(tmp_path, {"good.npz": data, "bad.npz": bad})
    assert res["good.npz"]["tensors"]["a"] == [_summary(arrays["a"])] * 2
    r = res["bad.npz"]
    assert r["ok"], r
    for read in r["tensors"]["a"]:
        assert "err" in read and "bad.npz" in read["err"] and "'a'" in read["err"], read
        assert "checksum" in read["err"], read
    assert r["tensors"]["b"] == [_summary(arrays["b"])] * 2


def test_zip_member_named_differently_in_its_local_header_is_refused(tmp_path):
    """A zip stores a member's name twice. With the central directory's copy damaged, an .npz
    member read under a name nothing wrote (np.load refuses: "File name in directory ... and
    header ... differ"), and a torch storage was read from the start of another, larger record
    that took its name (torch refuses: the record size does not match)."""
    import torch

    np.savez_compressed(tmp_path / "src.npz", a=np.arange(4.0), b=np.arange(3))
    data = (tmp_path / "src.npz").read_bytes()
    cd = data.rindex(b"a.npy")  # the central directory copy comes last
    npz = data[:cd] + b"A" + data[cd + 1 :]
    (tmp_path / "lib.npz").write_bytes(npz)
    with pytest.raises(zipfile.BadZipFile, match="differ"):
        np.load(tmp_path / "lib.npz")["A"]

    torch.save(
        {"y": torch.tensor([1.0, -3.0, 0.5]), "x": torch.arange(4, dtype=torch.int64)}, tmp_path / "src.pt"
    )
    pt = (tmp_path / "src.pt").read_bytes()
    cd = pt.rindex(b"/data/1")  # x's 32-byte record, renamed to y's 12-byte one
    pt = pt[:cd] + b"/data/0" + pt[cd + 7 :]
    (tmp_path / "lib.pt").write_bytes(pt)
    with pytest.raises(RuntimeError, match="record size"):
        torch.load(tmp_path / "lib.pt", weights_only=True)

    res = _read_all(tmp_path, {"bad.npz": npz, "bad.pt": pt})
    r = res["bad.npz"]
    assert r["ok"], r
    assert r["tensors"]["b"] == [_summary(np.arange(3))] * 2
    for read in r["tensors"]["A"]:
        assert "err" in read and "local header" in read["err"], read
    r = res["bad.pt"]
    assert r["ok"], r
    for name in ("x", "y"):  # x's storage is missing now, y's is x's record
        for read in r["tensors"][name]:
            assert "err" in read and "bad.pt" in read["err"], (name, read)


def test_pickled_name_that_is_not_utf8_is_refused(tmp_path):
    """torch.load decodes pickled strings as UTF-8 (surrogates allowed) and fails on anything
    else; we replaced the bad bytes and read the tensor under a name nothing wrote."""
    import torch

    torch.save({"wx": torch.arange(3.0)}, tmp_path / "src.bin", _use_new_zipfile_serialization=False)
    data = (tmp_path / "src.bin").read_bytes()
    at = data.index(b"\x8c\x02wx") if b"\x8c\x02wx" in data else data.index(b"X\x02\x00\x00\x00wx")
    end = at + data[at:].index(b"wx")
    bad = data[:end] + b"w\xff" + data[end + 2 :]
    (tmp_path / "lib.bin").write_bytes(bad)
    with pytest.raises(UnicodeDecodeError):
        torch.load(tmp_path / "lib.bin", weights_only=True)
    res = _read_all(tmp_path, {"good.bin": data, "bad.bin": bad})
    assert res["good.bin"]["tensors"]["wx"] == [_summary(np.arange(3.0, dtype=np.float32))] * 2
    r = res["bad.bin"]
    assert not r["ok"] and r["clean"] and "bad.bin" in r["msg"] and "UTF-8" in r["msg"], r


def test_legacy_storage_size_header_that_disagrees_is_refused(tmp_path):
    """A legacy checkpoint stores each storage as an element count and its bytes, one after
    another. A damaged count moved every later storage, which then read other bytes (torch.load
    refuses: "storage has wrong byte size"). Three one-element float64 storages of bits 2:
    with the first count made 2, the second storage was read from the third's count (bits 1)."""
    import torch

    value = np.array([2], dtype=np.uint64).view(np.float64)  # 1e-323
    tensors = {k: torch.from_numpy(value.copy()) for k in "abc"}
    torch.save(tensors, tmp_path / "src.pt", _use_new_zipfile_serialization=False)
    data = (tmp_path / "src.pt").read_bytes()
    records = (struct.pack("<q", 1) + value.tobytes()) * 3
    assert data.count(records) == 1
    at = data.index(records)
    bad = data[:at] + struct.pack("<q", 2) + data[at + 8 :]
    (tmp_path / "lib.pt").write_bytes(bad)
    with pytest.raises(RuntimeError, match="wrong byte size"):
        torch.load(tmp_path / "lib.pt", weights_only=True)
    res = _read_all(tmp_path, {"good.pt": data, "bad.pt": bad})
    assert res["good.pt"]["tensors"] == {k: [_summary(value)] * 2 for k in "abc"}
    r = res["bad.pt"]
    assert r["ok"], r
    for name, reads in r["tensors"].items():
        for read in reads:
            assert "err" in read or read == _summary(value), (name, read)
    assert any("err" in read for reads in r["tensors"].values() for read in reads)


def test_torch_storage_key_naming_another_storage_is_refused(tmp_path):
    """A damaged storage key in data.pkl that names another tensor's storage: torch.load
    refuses (the record's size is not the bool storage's); we read the bool tensor as float32
    from the other storage, taking the type first seen for that key."""
    import torch

    w, m = torch.arange(12, dtype=torch.float32), torch.tensor([True, False, True])
    torch.save({"w": w, "m": m}, tmp_path / "src.pt")
    data = (tmp_path / "src.pt").read_bytes()
    (hit,) = re.finditer(rb"BoolStorage\nq.X\x01\x00\x00\x001", data, re.S)
    bad = data[: hit.end() - 1] + b"0" + data[hit.end() :]
    (tmp_path / "lib.pt").write_bytes(bad)
    with pytest.raises(RuntimeError, match="record size"):
        torch.load(tmp_path / "lib.pt", weights_only=True)
    res = _read_all(tmp_path, {"bad.pt": bad})["bad.pt"]
    assert res["ok"], res
    assert res["tensors"]["w"] == [_summary(w.numpy())] * 2
    for read in res["tensors"]["m"]:
        assert "err" in read and "another type or size" in read["err"], read


def test_bytes_after_the_manifest_item_are_refused(run_ours, tmp_path):
    """The manifest is one CBOR item filling its region; a damaged count or length inside it
    leaves bytes over (a bit flip turned a component's 2-byte offset into a 1-byte one, and the
    bytes left over pushed its digest out of its map, so its damaged data read unchecked)."""
    b = base(checksum="crc32c")
    mb = cbor_encode(b.manifest())
    cs = CaseSet(tmp_path)
    cs.add("control", b.build(mb), [("open", None)])
    for extra in (b"\x00", b"\x67digest\x60"):
        cs.add(f"trailing_{len(extra)}", b.build(mb + extra), [("open", None), ("load_file", None)])
    cs.run(run_ours)
    assert_ok(cs["control"][1]["open:None"], what="control")
    for n in (1, 8):
        path, res = cs[f"trailing_{n}"]
        for op, r in res.items():
            assert_zt_error(r, path, what=f"trailing_{n} {op}")
            assert "follow" in r["msg"], r["msg"]


def test_gguf_tensor_table_misread_after_a_damaged_name_length_is_refused(tmp_path):
    """The last tensor info's name length made 33, or its dimension count 3: its fields, and the
    data section's start, were read off by 32 bytes, so every other tensor read the wrong bytes
    (gguf-py refuses: the misread type is no GGMLQuantizationType, or the data lies outside)."""
    import gguf

    q8 = gguf.GGMLQuantizationType.Q8_0
    f = np.arange(8, dtype=np.float32).reshape(2, 4) - 3.5
    w = gguf.GGUFWriter(str(tmp_path / "src.gguf"), "llama")
    w.add_string("general.name", "sweep")
    w.add_tensor("f", f)
    w.add_tensor("h", np.array([0.5, -1, 2, 4], dtype=np.float16))
    w.add_tensor("i", np.array([5, -6, 7], dtype=np.int32))
    q = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), q8)
    w.add_tensor("q", q, raw_dtype=q8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = (tmp_path / "src.gguf").read_bytes()
    at = data.index(struct.pack("<Q", 1) + b"q")
    bad = {  # q's name length made 33 (its type reads 49248); its dimension count made 3
        "name.gguf": data[:at] + bytes([33]) + data[at + 1 :],
        "dims.gguf": data[: at + 9] + bytes([3]) + data[at + 10 :],
    }
    for name, damaged in bad.items():
        (tmp_path / f"lib_{name}").write_bytes(damaged)
        with pytest.raises((ValueError, OSError)):
            gguf.GGUFReader(tmp_path / f"lib_{name}")
    res = _read_all(tmp_path, {"good.gguf": data, **bad})
    assert res["good.gguf"]["tensors"]["f"] == [_summary(f)] * 2
    for name in bad:
        r = res[name]
        assert not r["ok"] and r["clean"] and name in r["msg"] and "damaged" in r["msg"], r


def test_empty_tensor_whose_other_dimensions_no_array_can_take_is_refused(run_ours, tmp_path):
    """Shape [0, 2**40, 2**40] holds no element, but NumPy cannot make an array of it ("array is
    too big"): a ZTensorError naming the tensor, not NumPy's ValueError (an ONNX dims field damaged
    into 37 dimensions did this)."""
    b = ZtBuilder()
    b.add_dense("bystander", BYSTANDER)
    b.add_dense("victim", np.zeros(0, dtype=np.float32))
    b.objects["victim"]["shape"] = [0, 2**40, 2**40]
    cs = CaseSet(tmp_path)
    cs.add("huge_empty", b.build(), [("get", "victim"), ("copy", "victim"), ("get", "bystander")])
    cs.run(run_ours)
    path, res = cs["huge_empty"]
    assert_zt_error(res["get:victim"], path, tensor="victim")
    assert_zt_error(res["copy:victim"], path, tensor="victim")
    assert_ok(res["get:bystander"], BYSTANDER_SUMMARY)


# ---------------------------------------------------------------------------
# decompression bombs and huge declared sizes: bounded time and memory
# ---------------------------------------------------------------------------

BOMB_OPS = [
    ("get", "victim"),
    ("copy", "victim"),
    ("components", "victim"),
    ("load_file", None),
    ("verify", None),
]


@pytest.fixture(scope="module")
def bombs(run_ours, tmp_path_factory):
    cs = CaseSet(tmp_path_factory.mktemp("bombs"))

    def bomb(key, stored, *, shape, dtype="u8", encoding="zstd", ulen="auto", ops=BOMB_OPS):
        b = ZtBuilder()
        b.add_dense("bystander", BYSTANDER)
        b.add_dense("victim", np.zeros(0, np.uint8), encoding=encoding, stored=stored)
        c = vcomp(b)
        c["dtype"] = dtype
        if encoding == "zstd":
            if ulen is None:
                c.pop("uncompressed_length")
            else:
                c["uncompressed_length"] = int(
                    np.prod(shape, dtype=object) * {"u8": 1, "f32": 4}[dtype] if ulen == "auto" else ulen
                )
        b.objects["victim"]["shape"] = shape
        cs.add(key, b.build(), ops)

    tiny = zstd_raw_frame(b"\x01" * 7)
    assert len(tiny) == 16
    bomb("frame16_claims_1tib", tiny, shape=[2**40])
    bomb("frame16_claims_1tib_no_ulen", tiny, shape=[2**40], ulen=None)
    bomb("frame_fcs_claims_1tib", zstd_raw_frame(b"\x01" * 7, fcs=2**40), shape=[2**40])
    bomb("rle_fcs_claims_1tib", zstd_rle_frame(0, 2**20, fcs=2**40), shape=[2**40])
    bomb("frame16_claims_8gib_f32", tiny, shape=[2**31 + 1], dtype="f32")
    bomb("rle_1gib_into_16_bytes", zstd_rle_frame(0, 2**30), shape=[16])
    bomb("rle_1gib_into_16_bytes_ulen_1gib", zstd_rle_frame(0, 2**30), shape=[16], ulen=2**30)
    bomb("rle_1gib_into_1mib", zstd_rle_frame(7, 2**30), shape=[2**20])
    bomb("raw_shape_1tib", b"\x00" * 16, shape=[2**40], encoding="raw", ops=BOMB_OPS[:-1])

    # CBOR items that declare huge sizes but end right away
    def cbor_bomb(key, raw):
        b = base()
        root = b.manifest()
        root["objects"]["victim"]["shape"] = CborRaw(raw)
        cs.add(key, b.build(manifest_bytes(root)), [("all", None), ("get", "victim")])

    cbor_bomb("cbor_array_2_60", b"\x9b" + (2**60).to_bytes(8, "big"))
    cbor_bomb("cbor_array_2_31", b"\x9a" + (2**31).to_bytes(4, "big") + b"\x01\x02")
    cbor_bomb("cbor_text_2_62", b"\x7b" + (2**62).to_bytes(8, "big") + b"abc")
    cbor_bomb("cbor_bytes_2_40", b"\x5b" + (2**40).to_bytes(8, "big") + b"abc")
    cbor_bomb("cbor_map_2_32", b"\xba" + (2**32 - 1).to_bytes(4, "big") + b"\x61a\x01")
    b = base()
    cs.add(
        "cbor_objects_map_2_60",
        b.build(cbor_encode({"version": "1.2.0", "objects": CborRaw(b"\xbb" + (2**60).to_bytes(8, "big"))})),
        [("all", None)],
    )
    return cs.run(run_ours, timeout=600)


BOMB_KEYS = [
    "frame16_claims_1tib",
    "frame16_claims_1tib_no_ulen",
    "frame_fcs_claims_1tib",
    "rle_fcs_claims_1tib",
    "frame16_claims_8gib_f32",
    "rle_1gib_into_16_bytes",
    "rle_1gib_into_16_bytes_ulen_1gib",
    "rle_1gib_into_1mib",
    "raw_shape_1tib",
    "cbor_array_2_60",
    "cbor_array_2_31",
    "cbor_text_2_62",
    "cbor_bytes_2_40",
    "cbor_map_2_32",
    "cbor_objects_map_2_60",
]


@pytest.mark.parametrize("key", BOMB_KEYS)
def test_bombs_rejected_quickly_without_big_allocation(bombs, key):
    path, res = bombs[key]
    for op, r in res.items():
        assert_zt_error(r, path, what=f"{key} {op}")
        assert r["secs"] < TIME_LIMIT_S, f"{key} {op} took {r['secs']:.1f}s"
        assert r["rss_growth_kb"] < RSS_LIMIT_KB, (
            f"{key} {op}: peak RSS grew by {r['rss_growth_kb'] // 1024} MiB"
        )


def test_bombs_total_peak_memory(bombs):
    base_kb, final_kb = bombs.rss
    assert final_kb - base_kb < RSS_LIMIT_KB, f"peak RSS grew by {(final_kb - base_kb) // 1024} MiB"


# ---------------------------------------------------------------------------
# random mutations: success or ZTensorError, never anything else
# ---------------------------------------------------------------------------


def test_random_mutations_never_crash(run_ours, tmp_path):
    b = ZtBuilder()
    b.add_dense("bystander", BYSTANDER)
    b.add_dense("victim", VICTIM, checksum="crc32c")
    b.add_dense("zipped", np.arange(50, dtype=np.float64), encoding="zstd", checksum="sha256")
    b.add_dense("plainz", np.arange(9, dtype=np.int8).reshape(3, 3), encoding="zstd")
    b.add_dense("flags", np.array([True, False, True]))
    b.root_extra = {"attributes": {"k": "v", "n": [1, 2.5, None]}}
    good = b.build()
    manifest_start = len(b.buf)
    rng = random.Random(20240601)
    cs = CaseSet(tmp_path)
    cs.add("control", good, ALL_OPS)
    keys = []
    for i in range(1200):
        data = bytearray(good)
        kind = rng.random()
        if kind < 0.6:  # mutate inside the manifest / footer (most interesting)
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(manifest_start, len(data))
                data[pos] = rng.randrange(256)
        elif kind < 0.8:  # anywhere
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.9:  # insert or delete bytes in the manifest, keep footer consistent
            m = bytearray(data[manifest_start:-16])
            pos = rng.randrange(len(m))
            if rng.random() < 0.5:
                del m[pos : pos + rng.randint(1, 3)]
            else:
                m[pos:pos] = rng.randbytes(rng.randint(1, 3))
            data = bytearray(bytes(data[:manifest_start]) + bytes(m) + struct.pack("<Q", len(m)) + MAGIC)
        else:  # interesting integers in the manifest
            m = bytearray(data[manifest_start:-16])
            pos = rng.randrange(len(m))
            repl = rng.choice(
                [
                    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
                    b"\x1b\x80" + b"\x00" * 7,
                    b"\x1a\xff\xff\xff\xff",
                    b"\x3b\x7f" + b"\xff" * 7,
                    b"\x9f",
                    b"\xff",
                    b"\xbf",
                    b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",
                    b"\xc2\x41\x01",
                ]
            )
            m[pos : pos + len(repl)] = repl
            data = bytearray(bytes(data[:manifest_start]) + bytes(m) + struct.pack("<Q", len(m)) + MAGIC)
        keys.append(cs.add(f"mut_{i:04d}", data, ALL_OPS))
    cs.run(run_ours)
    path, res = cs["control"]
    assert_ok(res["all:None"], what="control")
    problems = []
    n_ok = 0
    for key in keys:
        path, res = cs[key]
        r = res["all:None"]
        if r["ok"]:
            n_ok += 1
            continue
        if not r["is_exception"] or not r["is_zt"]:
            problems.append(f"{key}: {r['type']} (mro {r['mro']}): {r['msg'][:200]}")
    assert not problems, f"{len(problems)} mutations raised something other than ZTensorError:\n" + "\n".join(
        problems[:30]
    )
    assert n_ok < len(keys), "no mutation was detected at all: the harness is broken"


# ---------------------------------------------------------------------------
# OS-level errors (in-process: these cannot crash)
# ---------------------------------------------------------------------------


def test_directory_missing_and_permission(tmp_path):
    with pytest.raises(IsADirectoryError):
        Reader(str(tmp_path))
    with pytest.raises(IsADirectoryError):
        ztnp.load_file(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        Reader(str(tmp_path / "missing.zt"))
    with pytest.raises(FileNotFoundError):
        ztensor.open(str(tmp_path / "missing" / "deeper.zt"))


def test_unreadable_file(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: file permissions are not enforced")
    p = tmp_path / "secret.zt"
    ztnp.save_file({"x": np.arange(3)}, str(p))
    os.chmod(p, 0)
    try:
        with pytest.raises(PermissionError):
            Reader(str(p))
    finally:
        os.chmod(p, 0o600)


def test_empty_file_in_process(tmp_path):
    p = tmp_path / "empty.zt"
    p.write_bytes(b"")
    with pytest.raises(ZTensorError) as ei:
        Reader(str(p))
    assert "empty.zt" in str(ei.value)
    assert isinstance(ei.value, Exception)
