"""Interoperability with the reference implementation ztensor==1.2.3.

The reference is imported only in subprocesses (same import name); see
conftest.run_ref. Files travel through a temporary directory, arrays come back
through npz (ml_dtypes arrays as unsigned views plus their dtype name).
"""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest

import ztensor.numpy as ztnp
from conftest import (
    DTYPE_INFO,
    REF_DTYPE_NAMES,
    ZtBuilder,
    all_dtypes,
    assert_bits_equal,
    build_legacy_zt,
    component_bytes,
    digest_string,
    parse_zt,
    parse_zt_file,
)
from ztensor import Reader, Writer

SAMPLES = all_dtypes()
COMPRESS = [False, True, 9]
CHECKSUMS = ["none", "crc32c", "sha256"]
COMBOS = list(itertools.product(COMPRESS, CHECKSUMS))
COMBO_IDS = [f"compress={c}-{k}" for c, k in COMBOS]
LOGICAL = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "complex64", "complex128"]


def interop_inputs() -> dict:
    """The 13 reference dtypes plus awkward shapes and names, in a non-sorted order."""
    d = {}
    d["zeta"] = np.arange(7, dtype=np.float32)
    for k in REF_DTYPE_NAMES:
        d[k] = SAMPLES[k]
    d["é"] = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    d["10"] = np.array([[1, 2], [3, 4]], dtype=np.int16)
    d["9"] = np.zeros((0,), dtype=np.float32)
    d["B"] = np.zeros((0, 3), dtype=np.int64)
    d["one"] = np.array([7], dtype=np.uint8)
    d["big"] = np.random.default_rng(3).standard_normal((1000, 33))
    d["a.b"] = np.ones((3, 1, 2), dtype=ml_dtypes.bfloat16)
    return d


INPUTS = interop_inputs()


def _fname(c, k, who):
    return f"{who}_{c}_{k}.zt"


# ---------------------------------------------------------------------------
# the reference writes, we read
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ref_files(run_ref, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref_written")
    scalars = {"s32": np.array(2.5, dtype=np.float32), "si": np.array(-3, dtype=np.int64)}
    code = f"""
    import itertools
    OUTDIR = {str(out)!r}
    names = [n for n in INPUTS if not n.startswith("s_")]
    for c, k in itertools.product({COMPRESS!r}, {CHECKSUMS!r}):
        w = ztensor.Writer(os.path.join(OUTDIR, "ref_%s_%s.zt" % (c, k)))
        for n in names:
            w.add(n, INPUTS[n], c, k)
        w.finish()
    plain = {{n: INPUTS[n] for n in names}}
    ztensor.numpy.save_file(plain, os.path.join(OUTDIR, "ref_np.zt"))
    ztensor.numpy.save_file(plain, os.path.join(OUTDIR, "ref_np_c.zt"), compression=True)
    ztensor.numpy.save_file({{"s32": INPUTS["s_s32"], "si": INPUTS["s_si"]}},
                            os.path.join(OUTDIR, "ref_scalar.zt"))
    T = ztensor.Tensor
    with ztensor.Writer(os.path.join(OUTDIR, "ref_objects.zt")) as w:
        w.write("f8", T({{"data": np.arange(256, dtype=np.uint8).reshape(16, 16)}}, type="f8_e4m3fn"))
        w.write("f8z", T({{"data": np.arange(256, dtype=np.uint8).reshape(16, 16)}}, type="f8_e5m2"),
                compress=True, checksum="sha256")
        w.write("c64", T({{"data": np.arange(8, dtype=np.float32) - 3.5}}, shape=[2, 2], type="complex64"),
                checksum="crc32c")
        w.write("c128", T({{"data": np.arange(6, dtype=np.float64) * 0.5}}, shape=[3], type="complex128"),
                compress=True)
        w.write("csr", T({{"values": np.array([1., 2., 3.], np.float32),
                           "indices": np.array([0, 2, 1], np.uint64),
                           "indptr": np.array([0, 2, 3], np.uint64)}},
                         shape=[2, 3], format="sparse_csr",
                         attributes={{"k": [1, "x"], "n": None, "f": 1.5}}),
                compress=True, checksum="crc32c")
        w.write("coo", T({{"values": np.array([5, 6], np.int32),
                           "coords": np.array([0, 1, 2, 0], np.uint64)}},
                         shape=[2, 3], format="sparse_coo"))
        w.write("attr", T({{"data": np.arange(3, dtype=np.int8)}},
                          attributes={{"bits": 4, "s": "t", "nested": {{"a": [True, False]}}}}))
    # The reference stores sparse indices in whatever integer type it is given.
    with ztensor.Writer(os.path.join(OUTDIR, "ref_sparse_int.zt")) as w:
        w.write("csr32", T({{"values": np.array([1., 2., 3., 4.], np.float32),
                             "indices": np.array([0, 1, 0, 2], np.int32),
                             "indptr": np.array([0, 1, 2, 4], np.int32)}},
                           shape=[3, 3], format="sparse_csr"))
        w.write("coo64", T({{"values": np.array([5., 6.], np.float64),
                             "coords": np.array([0, 1, 1, 2], np.int64)}},
                           shape=[2, 3], format="sparse_coo"), compress=True)
    """
    inputs = dict(INPUTS)
    inputs.update({"s_" + k: v for k, v in scalars.items()})
    run_ref(code, inputs=inputs)
    return out


@pytest.mark.parametrize("compress,checksum", COMBOS, ids=COMBO_IDS)
def test_we_read_reference_files(ref_files, compress, checksum):
    p = ref_files / _fname(compress, checksum, "ref")
    data = p.read_bytes()
    manifest, _ = parse_zt(data)
    with Reader(str(p)) as r:
        assert r.keys() == sorted(INPUTS, key=lambda s: s.encode())
        assert list(r.load_numpy()) == list(INPUTS), "file order = reference write order"
        for name, arr in INPUTS.items():
            assert_bits_equal(r[name], arr, name)
            assert_bits_equal(r.read_tensor(name, copy=True), arr, name)
            md = r.metadata(name)
            assert md.shape == list(arr.shape)
            assert md.dtype == DTYPE_INFO[arr.dtype.name][0]
            assert md.type is None
            comp = manifest["objects"][name]["components"]["data"]
            c = md.components["data"]
            assert c["offset"] == comp["offset"] and c["length"] == comp["length"]
            assert c["encoding"] == comp.get("encoding", "raw")
            assert c["uncompressed_length"] == comp.get("uncompressed_length")
            assert c["digest"] == comp.get("digest")
            if checksum != "none":
                assert c["digest"] == digest_string(checksum, component_bytes(data, comp))
        assert r.verify() is None
    for copy in (False, True):
        got = ztnp.load_file(str(p), copy=copy)
        assert list(got) == list(INPUTS)
        for name, arr in INPUTS.items():
            assert_bits_equal(got[name], arr, name)


@pytest.mark.parametrize("fname", ["ref_np.zt", "ref_np_c.zt"])
def test_we_read_reference_numpy_save(ref_files, fname):
    data = (ref_files / fname).read_bytes()
    got = ztnp.load(data)
    assert list(got) == list(INPUTS)
    for name, arr in INPUTS.items():
        assert_bits_equal(got[name], arr, name)


def test_we_read_reference_scalars(ref_files):
    # the reference stores numpy 0-d arrays as shape [1]; we read what is stored
    got = ztnp.load_file(str(ref_files / "ref_scalar.zt"))
    assert_bits_equal(got["s32"], np.array([2.5], dtype=np.float32))
    assert_bits_equal(got["si"], np.array([-3], dtype=np.int64))


def test_we_read_reference_objects(ref_files):
    p = ref_files / "ref_objects.zt"
    with Reader(str(p)) as r:
        f8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
        assert_bits_equal(r["f8"], f8.view(ml_dtypes.float8_e4m3fn))
        assert_bits_equal(r["f8z"], f8.view(ml_dtypes.float8_e5m2))
        assert r.metadata("f8").type == "f8_e4m3fn" and r.metadata("f8").dtype == "uint8"
        c64 = (np.arange(8, dtype=np.float32) - 3.5).view(np.complex64).reshape(2, 2)
        assert_bits_equal(r["c64"], c64)
        assert_bits_equal(r.read_tensor("c64", copy=True), c64)
        assert r.metadata("c64").shape == [2, 2] and r.metadata("c64").type == "complex64"
        c128 = (np.arange(6, dtype=np.float64) * 0.5).view(np.complex128)
        assert_bits_equal(r["c128"], c128)

        md = r.metadata("csr")
        assert md.format == "sparse_csr" and md.shape == [2, 3]
        assert md.attributes == {"k": [1, "x"], "n": None, "f": 1.5}
        assert set(md.components) == {"values", "indices", "indptr"}
        assert all(c["encoding"] == "zstd" for c in md.components.values())
        comps = r.read_components("csr")
        assert set(comps) == {"values", "indices", "indptr"}
        assert_bits_equal(comps["values"], np.array([1.0, 2.0, 3.0], np.float32))
        assert_bits_equal(comps["indices"], np.array([0, 2, 1], np.uint64))
        assert_bits_equal(comps["indptr"], np.array([0, 2, 3], np.uint64))

        md = r.metadata("coo")
        assert md.format == "sparse_coo" and md.shape == [2, 3]
        comps = r.read_components("coo", copy=True)
        assert_bits_equal(comps["values"], np.array([5, 6], np.int32))
        assert_bits_equal(comps["coords"], np.array([0, 1, 2, 0], np.uint64))

        md = r.metadata("attr")
        assert md.attributes == {"bits": 4, "s": "t", "nested": {"a": [True, False]}}
        assert_bits_equal(r["attr"], np.arange(3, dtype=np.int8))
        r.verify()


def test_we_read_reference_sparse_with_int32_and_int64_indices(ref_files, tmp_path):
    """ztensor 1.x writes sparse indices as the caller's integer type: torch
    loads them, and rewriting (zt convert) stores them as u64."""
    torch = pytest.importorskip("torch")
    import subprocess
    import sys

    import ztensor.torch as ztt

    p = ref_files / "ref_sparse_int.zt"
    with Reader(p) as r:
        assert r.metadata("csr32").components["indptr"]["dtype"] == "int32"
        assert r.metadata("coo64").components["coords"]["dtype"] == "int64"
    want = {
        "csr32": torch.tensor([[1.0, 0, 0], [0, 2, 0], [3, 0, 4]]),
        "coo64": torch.tensor([[0.0, 5, 0], [0, 0, 6]], dtype=torch.float64),
    }

    def check(path):
        got = ztt.load_file(path)
        assert got["csr32"].layout == torch.sparse_csr and got["coo64"].layout == torch.sparse_coo
        for k, v in want.items():
            assert torch.equal(got[k].to_dense(), v), k

    check(p)
    out = tmp_path / "u64.zt"
    zt = [sys.executable, "-m", "ztensor._cli"]
    done = subprocess.run(zt + ["convert", str(p), str(out), "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with Reader(out) as r:
        for k, c in (("csr32", "indptr"), ("csr32", "indices"), ("coo64", "coords")):
            assert r.metadata(k).components[c]["dtype"] == "uint64", (k, c)
        assert_bits_equal(r.read_components("csr32")["indptr"], np.array([0, 1, 2, 4], np.uint64))
    check(out)


# ---------------------------------------------------------------------------
# we write, the reference reads
# ---------------------------------------------------------------------------

SCALARS = {
    "s32": np.array(2.5, dtype=np.float32),
    "si": np.array(-3, dtype=np.int64),
    "sbf": np.array(1.0, dtype=ml_dtypes.bfloat16),
}
META = {"format": "np", "n": 3, "list": [1, "a", None], "nested": {"x": 1.5}}


@pytest.fixture(scope="module")
def ours_read_by_ref(run_ref, tmp_path_factory):
    d = tmp_path_factory.mktemp("ours_written")
    files = {}
    for c, k in COMBOS:
        p = d / _fname(c, k, "ours")
        with Writer(str(p)) as w:
            for n, a in INPUTS.items():
                w.add(n, a, compress=c, checksum=k)
        files[p.name] = p
    p = d / "ours_logical.zt"
    with Writer(str(p)) as w:
        for n in LOGICAL:
            w.add(n, SAMPLES[n], checksum="crc32c")
            w.add(n + "_z", SAMPLES[n], compress=True, checksum="sha256")
    files[p.name] = p
    p = d / "ours_scalar.zt"
    ztnp.save_file(SCALARS, str(p))
    files[p.name] = p
    p = d / "ours_meta.zt"
    ztnp.save_file({"x": np.arange(4, dtype=np.int32)}, str(p), metadata=META)
    files[p.name] = p
    p = d / "ours_align.zt"
    with Writer(str(p), alignment=4096, metadata={"a": "b"}) as w:
        w.add("x", np.arange(5, dtype=np.float64), checksum="crc32c")
        w.add("y", np.arange(3000, dtype=np.int16), compress=True, checksum="sha256")
        w.add("z", np.ones((2, 2), dtype=bool))
    files[p.name] = p
    p = d / "ours_empty.zt"
    Writer(str(p)).finish()
    files[p.name] = p
    p = d / "ours_np_c.zt"
    ztnp.save_file(INPUTS, str(p), compression=True)
    files[p.name] = p

    code = f"""
    FILES = {[str(p) for p in files.values()]!r}
    RESULT = {{}}
    for path in FILES:
        base = os.path.basename(path)
        r = ztensor.Reader(path)
        info = {{"keys": r.keys(), "meta": {{}}}}
        for k in r.keys():
            md = r.metadata(k)
            info["meta"][k] = {{"dtype": md.dtype, "type": md.type, "shape": md.shape,
                               "format": md.format, "components": md.components}}
            if md.type not in ("complex64", "complex128"):
                OUT[base + "::" + k] = r.read_numpy(k, copy=True)
        if not any(m["type"] in ("complex64", "complex128") for m in info["meta"].values()):
            lf = ztensor.numpy.load_file(path)
            info["load_file_order"] = list(lf)
            for k, v in lf.items():
                OUT[base + "::lf::" + k] = v
        # remove_tensors re-reads every blob through the buffered reader, which
        # (unlike the reference's numpy path) verifies raw digests too
        ztensor.remove_tensors(path, path + ".copy.zt", [])
        info["copy_keys"] = ztensor.Reader(path + ".copy.zt").keys()
        RESULT[base] = info
    """
    outs, res = run_ref(code)
    return files, outs, res


def _ref_view(arr):
    """What the reference returns for our array: fp8 as its uint8 storage."""
    if arr.dtype.name.startswith("float8"):
        return arr.view(np.uint8)
    return arr


@pytest.mark.parametrize("compress,checksum", COMBOS, ids=COMBO_IDS)
def test_reference_reads_our_files(ours_read_by_ref, compress, checksum):
    files, outs, res = ours_read_by_ref
    base = _fname(compress, checksum, "ours")
    info = res[base]
    assert info["keys"] == sorted(INPUTS, key=lambda s: s.encode())
    assert info["copy_keys"] == info["keys"]
    assert info["load_file_order"] == list(INPUTS)
    for n, a in INPUTS.items():
        assert_bits_equal(outs[f"{base}::{n}"], a, n)
        assert_bits_equal(outs[f"{base}::lf::{n}"], a, n)
        m = info["meta"][n]
        assert m["shape"] == list(a.shape) and m["format"] == "dense" and m["type"] is None
        assert m["dtype"] == DTYPE_INFO[a.dtype.name][0]
        assert m["components"]["data"]["encoding"] == ("raw" if compress is False else "zstd")


def test_reference_reads_our_logical_types(ours_read_by_ref):
    files, outs, res = ours_read_by_ref
    base = "ours_logical.zt"
    info = res[base]
    for n in LOGICAL:
        a = SAMPLES[n]
        storage, ltype, _ = DTYPE_INFO[n]
        for name in (n, n + "_z"):
            m = info["meta"][name]
            assert (m["dtype"], m["type"], m["shape"]) == (storage, ltype, list(a.shape)), name
            if not n.startswith("complex"):
                assert_bits_equal(outs[f"{base}::{name}"], _ref_view(a), name)
    assert info["copy_keys"] == info["keys"]


def test_reference_reads_our_scalars(ours_read_by_ref):
    files, outs, res = ours_read_by_ref
    base = "ours_scalar.zt"
    for n, a in SCALARS.items():
        assert res[base]["meta"][n]["shape"] == []
        # the reference returns 0-d tensors as shape (1,)
        assert_bits_equal(outs[f"{base}::{n}"], a.reshape(1), n)


def test_reference_reads_our_metadata_alignment_empty_and_compressed(ours_read_by_ref):
    files, outs, res = ours_read_by_ref
    assert res["ours_meta.zt"]["keys"] == ["x"]
    assert_bits_equal(outs["ours_meta.zt::x"], np.arange(4, dtype=np.int32))
    assert res["ours_align.zt"]["keys"] == ["x", "y", "z"]
    assert_bits_equal(outs["ours_align.zt::x"], np.arange(5, dtype=np.float64))
    assert_bits_equal(outs["ours_align.zt::y"], np.arange(3000, dtype=np.int16))
    assert_bits_equal(outs["ours_align.zt::z"], np.ones((2, 2), dtype=bool))
    assert res["ours_empty.zt"]["keys"] == []
    for n, a in INPUTS.items():
        assert_bits_equal(outs[f"ours_np_c.zt::lf::{n}"], a, n)


# ---------------------------------------------------------------------------
# byte-for-byte identity with the reference
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ref_identity_files(run_ref, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref_identity")
    code = f"""
    OUTDIR = {str(out)!r}
    cks = ["none", "crc32c", "sha256"]
    for mode in cks + ["mixed"]:
        w = ztensor.Writer(os.path.join(OUTDIR, mode + ".zt"))
        for i, (n, a) in enumerate(INPUTS.items()):
            w.add(n, a, checksum=cks[i % 3] if mode == "mixed" else mode)
        RESULT_SIZE = w.finish()
    ztensor.numpy.save_file(INPUTS, os.path.join(OUTDIR, "np.zt"))
    ztensor.Writer(os.path.join(OUTDIR, "empty.zt")).finish()
    with ztensor.Writer(os.path.join(OUTDIR, "zstd.zt")) as w:
        for i, (n, a) in enumerate(INPUTS.items()):
            w.add(n, a, compress=[True, 1, 19][i % 3], checksum=cks[i % 3])
    """
    run_ref(code, inputs=INPUTS)
    return out


@pytest.mark.parametrize("mode", ["none", "crc32c", "sha256", "mixed"])
def test_raw_bytes_identical_to_reference(ref_identity_files, tmp_path, mode):
    cks = ["none", "crc32c", "sha256"]
    p = tmp_path / "ours.zt"
    with Writer(str(p)) as w:
        for i, (n, a) in enumerate(INPUTS.items()):
            w.add(n, a, checksum=cks[i % 3] if mode == "mixed" else mode)
    ours = p.read_bytes()
    ref = (ref_identity_files / f"{mode}.zt").read_bytes()
    if ours != ref:
        first = (
            next(i for i in range(min(len(ours), len(ref))) if ours[i] != ref[i])
            if any(x != y for x, y in zip(ours, ref, strict=False))  # they may differ in length
            else min(len(ours), len(ref))
        )
        pytest.fail(
            f"files differ (ours {len(ours)} bytes, ref {len(ref)} bytes), first difference at "
            f"byte {first}: ours {ours[first : first + 32]!r} ref {ref[first : first + 32]!r}"
        )


def test_numpy_save_file_bytes_identical_to_reference(ref_identity_files, tmp_path):
    p = tmp_path / "np.zt"
    ztnp.save_file(INPUTS, str(p))
    assert p.read_bytes() == (ref_identity_files / "np.zt").read_bytes()
    assert ztnp.save(INPUTS) == (ref_identity_files / "np.zt").read_bytes()


def test_empty_file_identical_to_reference(ref_identity_files, tmp_path):
    p = tmp_path / "e.zt"
    Writer(str(p)).finish()
    assert p.read_bytes() == (ref_identity_files / "empty.zt").read_bytes()


def test_zstd_manifest_skeleton_matches_reference(ref_identity_files, tmp_path):
    """Compressed frames may differ; everything else in the manifest must match."""
    cks = ["none", "crc32c", "sha256"]
    p = tmp_path / "z.zt"
    with Writer(str(p)) as w:
        for i, (n, a) in enumerate(INPUTS.items()):
            w.add(n, a, compress=[True, 1, 19][i % 3], checksum=cks[i % 3])
    ours, _ = parse_zt_file(p)
    ref, _ = parse_zt_file(ref_identity_files / "zstd.zt")
    assert list(ours) == list(ref)
    assert list(ours["objects"]) == list(ref["objects"])
    for n in ref["objects"]:
        o, r = ours["objects"][n], ref["objects"][n]
        assert list(o) == list(r)
        assert o["shape"] == r["shape"] and o["format"] == r["format"]
        oc, rc = o["components"]["data"], r["components"]["data"]
        assert list(oc) == list(rc), n
        for key in ("dtype", "type", "uncompressed_length", "encoding"):
            assert oc.get(key) == rc.get(key), (n, key)
        assert (oc.get("digest") or "")[:7] == (rc.get("digest") or "")[:7]
    data = p.read_bytes()
    for n, o in ours["objects"].items():
        c = o["components"]["data"]
        if "digest" in c:
            kind = c["digest"].split(":")[0]
            assert c["digest"] == digest_string(kind, component_bytes(data, c)), n


def test_independent_builder_matches_reference(ref_identity_files):
    """Validates conftest.ZtBuilder (used by the hostile tests) against the reference."""
    cks = [None, "crc32c", "sha256"]
    b = ZtBuilder()
    for i, (n, a) in enumerate(INPUTS.items()):
        b.add_dense(n, a, checksum=cks[i % 3])
    assert b.build() == (ref_identity_files / "mixed.zt").read_bytes()


# ---------------------------------------------------------------------------
# hand-built files: both implementations agree
# ---------------------------------------------------------------------------

LEGACY_TENSORS = {
    "w": np.arange(6, dtype=np.float32).reshape(2, 3),
    "i": np.array([-1, 2**40], dtype=np.int64),
    "bf": np.array([1.0, -2.5, 3.0], dtype=ml_dtypes.bfloat16),
    "m": np.array([[True, False]]),
    "u": np.array([65535, 1], dtype=np.uint16),
}


def test_legacy_file_read_by_both(run_ref, tmp_path):
    p = tmp_path / "legacy.zt"
    sparse_entry = {
        "name": "sp",
        "offset": 64,
        "size": 4,
        "dtype": "float32",
        "shape": [1],
        "encoding": "raw",
        "layout": "sparse",
    }
    p.write_bytes(build_legacy_zt(LEGACY_TENSORS, extra_entries=[sparse_entry]))
    outs, res = run_ref(f"""
    r = ztensor.Reader({str(p)!r})
    RESULT = r.keys()
    OUT = r.read_numpy(r.keys())
    """)
    expected_keys = sorted(LEGACY_TENSORS)
    assert res == expected_keys
    with Reader(str(p)) as r:
        assert r.keys() == expected_keys
        for n, a in LEGACY_TENSORS.items():
            assert_bits_equal(outs[n], a, n)
            assert_bits_equal(r[n], a, n)
            assert_bits_equal(r.read_tensor(n, copy=True), a, n)
            assert r.metadata(n).shape == list(a.shape)
    got = ztnp.load_file(str(p))
    assert set(got) == set(LEGACY_TENSORS)
    for n, a in LEGACY_TENSORS.items():
        assert_bits_equal(got[n], a, n)


def test_builder_zstd_frames_read_by_both(run_ref, tmp_path):
    """Hand-made raw-block zstd frames (used by the hostile tests) are valid for both."""
    b = ZtBuilder()
    arrs = {
        "a": np.arange(70000, dtype=np.float32),
        "e": np.zeros((0,), np.int8),
        "s": np.array([1, 2, 3], dtype=np.uint64),
    }
    for n, a in arrs.items():
        b.add_dense(n, a, encoding="zstd", checksum="crc32c")
    p = b.write(tmp_path / "z.zt")
    outs, res = run_ref(f"""
    r = ztensor.Reader({str(p)!r})
    OUT = r.read_numpy(r.keys())
    """)
    with Reader(str(p)) as r:
        for n, a in arrs.items():
            assert_bits_equal(outs[n], a, n)
            assert_bits_equal(r[n], a, n)
        r.verify()
