"""HDF5 files opened lazily (``_LazyHdf5Reader``): what a question about one
name answers (looked up alone, ``ztensor_formats::hdf5::parse_one``) is what
the full reader answers, value for value and error for error, on h5py-made
files of every kind of name, link, storage and type, and on damaged ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import ztensor
from ztensor import ZTensorError

h5py = pytest.importorskip("h5py")

DATA = Path(__file__).resolve().parents[2] / "crates" / "ztensor-formats" / "tests" / "data"


def fill(f):
    """The Rust lookup tests' fixture contents (every kind of name, link,
    storage and type), plus a deflated dataset."""
    spec = importlib.util.spec_from_file_location("fixtures", DATA / "make_hdf5_lookup_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    fixtures.fill(f)
    f.create_dataset("gzip", data=np.arange(10, dtype="<f4"), chunks=(4,), compression="gzip")


@pytest.fixture(scope="module", params=["earliest", "latest"])
def h5file(request, tmp_path_factory):
    p = tmp_path_factory.mktemp("lazy") / f"{request.param}.h5"
    with h5py.File(p, "w", libver=request.param) as f:
        fill(f)
    return p


def outcome(r, name):
    """What reading `name` gives: (dtype, shape, bytes, metadata) or the error."""
    try:
        a = r.read_tensor(name)
        m = r.metadata(name)
        return ("ok", a.dtype.str, a.shape, a.tobytes(), m.shape, m.dtype, m.attributes)
    except (ZTensorError, KeyError) as e:
        return (type(e).__name__, str(e))


def eager_names(path):
    with ztensor.Reader(path) as r:
        return r.keys()


def test_every_name_lazily_as_eagerly(h5file):
    names = eager_names(h5file) + ["nope", "a", "g.s", "m", "a.c"]
    for name in names:
        with ztensor.Reader(h5file) as lazy:
            got = outcome(lazy, name)
        with ztensor.Reader(h5file) as full:
            full.keys()  # the full reader answers from here on
            assert full._r._materialized
            want = outcome(full, name)
        assert got == want, name
    with ztensor.Reader(h5file) as r, h5py.File(h5file, "r") as f:
        for name in ("g.s.x", "a.c.d", "m.042", "bool", "scalar", "empty", "chunked", "gzip", "g.s.be"):
            path = name.replace(".", "/", name.count(".") - (name in ("a.c.d", "m.042")))
            ref = f[path][()]
            got = r.read_tensor(name)
            assert (
                got.shape == ref.shape and got.tobytes() == ref.astype(ref.dtype.newbyteorder("=")).tobytes()
            )
        assert not r._r._materialized


def test_duplicate_name_lazily_as_eagerly(h5file):
    with ztensor.Reader(h5file) as r:
        with pytest.raises(ZTensorError, match="more than once"):
            r.read_tensor("a.b")
        assert "a.b" in r
        assert not r._r._materialized


def test_names_length_and_metadata_after_a_lazy_read(h5file):
    with h5py.File(h5file, "r") as f:
        n_attr = int(f.attrs["n"])
    with ztensor.Reader(h5file) as r:
        r.read_tensor("m.007")
        assert r.metadata() == {"n": n_attr}
        assert r._r._materialized
        assert r.keys() == eager_names(h5file)
        assert len(r) == len(r.keys())
        assert r.metadata("attrs").attributes == {"unit": "m"}
        assert list(r._names_in_file_order()) != []
        with pytest.raises(ZTensorError, match="more than once"):
            r.verify()  # from the full reader: every name checked


def test_open_errors_stay_at_open(tmp_path, h5file):
    with pytest.raises(FileNotFoundError):
        ztensor.Reader(tmp_path / "missing.h5")
    data = h5file.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(ZTensorError, match="truncated"):
        ztensor.Reader(cut)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 3)
    with pytest.raises(ZTensorError):
        ztensor.Reader(bad)


def test_closed_and_arrays_outlive_the_reader(h5file):
    r = ztensor.Reader(h5file)
    a = r.read_tensor("m.005")
    r.close()
    assert r._closed
    with pytest.raises(ValueError, match="closed"):
        r.read_tensor("m.005")
    assert a.tolist() == [5, 5, 5]


def test_damaged_member_name_lazily_as_eagerly(tmp_path):
    """A member name out of order in the root group (h5py_chunked.h5 holds z,
    a, s): libhdf5 cannot look them up; every member is refused, lazily too."""
    data = bytearray((DATA / "h5py_chunked.h5").read_bytes())
    at = data.find(b"\0\0z\0\0\0\0\0\0\0a\0") + 10
    data[at] = ord("}")
    p = tmp_path / "damaged.h5"
    p.write_bytes(bytes(data))
    for name in ("a", "s", "z", "}"):
        with ztensor.Reader(p) as lazy:
            got = outcome(lazy, name)
        with ztensor.Reader(p) as full:
            full.keys()
            want = outcome(full, name)
        assert got == want and got[0] != "ok", name


def test_userblock_file_goes_to_the_full_reader(tmp_path):
    p = tmp_path / "ub.h5"
    with h5py.File(p, "w", userblock_size=512) as f:
        f["x"] = np.arange(3, dtype="<f4")
    with ztensor.Reader(p) as r:
        assert r.read_tensor("x").tolist() == [0, 1, 2]
