"""Files of many small tensors: reading one tensor builds no Python objects
for the others (counted with sys.getallocatedblocks, not timed), and whole
loads give every tensor bit for bit as safetensors and h5py do."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest
import safetensors.numpy as stn

import ztensor
import ztensor.numpy as ztn

N = 20_000
ONE = "layer.12345.weight"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import h5py

    d = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    tensors = {f"layer.{i}.weight": rng.standard_normal((2, 3), dtype=np.float32) for i in range(N)}
    zt, st, h5 = d / "m.zt", d / "m.safetensors", d / "m.h5"
    ztn.save_file(tensors, zt)
    stn.save_file(tensors, st)
    with h5py.File(h5, "w") as f:
        for k, a in tensors.items():
            f.create_dataset(k, data=a)
    return tensors, {"zt": zt, "safetensors": st, "hdf5": h5}


def blocks_held(fn) -> tuple[int, object]:
    """Python memory blocks allocated by ``fn()`` and still held with its result."""
    fn()  # caches, imports, dtype tables: not what is counted
    gc.collect()
    before = sys.getallocatedblocks()
    out = fn()
    gc.collect()
    return sys.getallocatedblocks() - before, out


def blocks_peak(fn) -> int:
    """Python memory blocks allocated at the peak of ``fn()`` (tracemalloc)."""
    import tracemalloc

    fn()
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("fmt", ["zt", "safetensors", "hdf5"])
def test_reading_one_tensor_builds_nothing_for_the_others(files, fmt):
    tensors, paths = files
    path = paths[fmt]

    def one_reader():
        with ztensor.Reader(path) as r:
            return r.read_tensor(ONE)

    def one_safe_open():
        with ztensor.safe_open(path, "np") as f:
            return f.get_tensor(ONE)

    for fn in (one_reader, one_safe_open):
        held, got = blocks_held(fn)
        np.testing.assert_array_equal(got, tensors[ONE])
        # A few objects for the one array and its buffer; one per tensor
        # would be tens of thousands.
        assert held < 200, (fn.__name__, held)
        # Python memory at the peak, not only what is kept: far below one
        # small object (~50 bytes) per tensor.
        assert blocks_peak(fn) < 50 * N // 10, fn.__name__

    # The counters see per-tensor objects when they are built.
    held_all, everything = blocks_held(lambda: ztn.load_file(path))
    assert held_all > N
    assert len(everything) == N


@pytest.mark.parametrize("copy", [False, True])
def test_whole_loads_match_the_peers(files, copy):
    import h5py
    import safetensors.torch as stt
    import torch

    import ztensor.torch as ztt

    tensors, paths = files
    ref_st = stn.load_file(paths["safetensors"])
    with h5py.File(paths["hdf5"], "r") as f:
        ref_h5 = {k: f[k][()] for k in f}
    for fmt, ref in (("zt", tensors), ("safetensors", ref_st), ("hdf5", ref_h5)):
        got = ztn.load_file(paths[fmt], copy=copy)
        assert list(got) == list(ref) or sorted(got) == sorted(ref), fmt
        for k, a in ref.items():
            assert got[k].dtype == a.dtype and got[k].tobytes() == a.tobytes(), (fmt, k)
    ref_t = stt.load_file(paths["safetensors"])
    got_t = ztt.load_file(paths["zt"], copy=copy)
    assert list(got_t) == list(tensors)
    for k, t in ref_t.items():
        assert got_t[k].dtype == t.dtype and torch.equal(got_t[k], t), k
    # Writable, and isolated from another load of the same file.
    k = next(iter(got_t))
    again = ztt.load_file(paths["zt"], copy=copy)
    got_t[k] += 1
    assert torch.equal(again[k], ref_t[k])


def test_hdf5_one_tensor_does_not_walk_the_file(files):
    """An ``.h5`` file is opened lazily (as h5py opens it): reading, describing
    or slicing one dataset looks that name up alone; the full reader, which
    lists every dataset, is built only when every name is asked for."""
    import h5py

    _, paths = files
    with h5py.File(paths["hdf5"], "r") as f:
        ref = f[ONE][()]
        names = sorted(f)
    with ztensor.Reader(paths["hdf5"]) as r:
        got = r.read_tensor(ONE)
        assert got.dtype == ref.dtype and got.shape == ref.shape and got.tobytes() == ref.tobytes()
        assert ONE in r and "nope" not in r
        assert r.metadata(ONE).shape == [2, 3]
        assert r.get_slice(ONE)[1:].tobytes() == ref[1:].tobytes()
        assert r.read_tensor(ONE, copy=True).tobytes() == ref.tobytes()
        with pytest.raises(KeyError):
            r.read_tensor("nope")
        assert not r._r._materialized  # nothing listed every dataset
        assert r.format == "hdf5"
        # Every name: the full reader, then everything from it.
        assert len(r) == N
        assert r._r._materialized
        assert r.keys() == names
        assert r.read_tensor(ONE).tobytes() == ref.tobytes()
    with ztensor.safe_open(paths["hdf5"], "np") as f:
        assert f.get_tensor(ONE).tobytes() == ref.tobytes()
        assert not f._reader._r._materialized
