# Makes the fixtures of tests/hdf5_lookup.rs (h5py 3.x): names with dots
# that are also group paths, nested groups, hard links (of a dataset, of a
# group), a soft link, many members (several symbol-table nodes), and every
# storage and type the fast lookup must leave to the full parse.
import h5py
import numpy as np


def fill(f):
    f["a.b"] = np.arange(3, dtype="<f4")  # also the name of a/b: listed twice
    f.create_group("a")["b"] = np.arange(4, dtype="<i2")
    f["a"]["c.d"] = np.arange(5, dtype="<u1")
    f.create_group("g").create_group("s")["x"] = np.arange(6, dtype="<f8").reshape(2, 3)
    f["g"]["s"]["be"] = np.array([1, -2, 3], dtype=">i8")
    f["g.s"] = np.array([7], dtype="<i4")  # beside the group g (g.s.x stays unique)
    f["h1"] = np.arange(2, dtype="<i8")
    f["h2"] = f["h1"]  # the same dataset under two names
    grp = f.create_group("grp")
    grp["y"] = np.arange(3, dtype="<u4")
    f["grp_alias"] = grp  # a group linked twice
    f["soft"] = h5py.SoftLink("/h1")
    f["attrs"] = np.arange(3, dtype="<f4")
    f["attrs"].attrs["unit"] = "m"
    f.create_dataset("chunked", data=np.arange(10, dtype="<f4"), chunks=(4,))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    f.create_dataset("compact", data=np.arange(4, dtype="<i4"), dcpl=dcpl)
    f["bool"] = np.array([True, False])
    f["half"] = np.arange(4, dtype="<f2")
    f["scalar"] = np.float64(2.5)
    f["empty"] = np.zeros((0, 3), dtype="<f4")
    f["complex"] = np.array([1 + 2j], dtype="<c16")
    f["text"] = "hi"
    f.create_dataset("unwritten", shape=(4,), dtype="<f4")
    for i in range(100):
        f[f"m.{i:03d}"] = np.full(3, i, dtype="<i4")
    f.attrs["n"] = 5


if __name__ == "__main__":  # tests/python/test_hdf5_lazy.py imports `fill`
    with h5py.File("h5py_lookup_earliest.h5", "w", libver="earliest") as f:
        fill(f)
    with h5py.File("h5py_lookup_latest.h5", "w", libver="latest") as f:
        fill(f)
