# Makes the HDF5 fixtures of tests/hdf5.rs (h5py 3.16, HDF5 2.0).
import h5py
import numpy as np

with h5py.File("h5py_earliest.h5", "w", libver="earliest") as f:
    f["a"] = np.arange(12, dtype="<f4").reshape(3, 4)
    f.create_group("g").create_group("s")["be"] = np.array([1, -2, 3], dtype=">i8")
    f["b"] = np.array([True, False, True])
    f["c"] = np.array([1 + 2j], dtype="<c8")
    f["s"] = "text"
    f.attrs["n"] = 5
    f.attrs["t"] = "hi"
with h5py.File("h5py_latest.h5", "w", libver="latest") as f:
    f["a"] = np.arange(12, dtype="<f4").reshape(3, 4)
    f.create_dataset("z", data=np.arange(100, dtype="<i4"), chunks=(30,), compression="gzip", shuffle=True)
    d = f.create_dataset("fill", shape=(6,), dtype="<u2", chunks=(4,), fillvalue=9)
    d[0] = 1
# A chunked gzip dataset whose chunk lies past the end of a truncated copy.
with h5py.File("h5py_chunked.h5", "w") as f:
    f.create_dataset("z", data=np.arange(6, dtype="<f8") + 0.5, chunks=(3,), compression="gzip")
    f["a"] = np.arange(12, dtype="<f4").reshape(3, 4)
    f.create_dataset("s", data=np.arange(5, dtype="<i2"), chunks=(2,), compression="gzip", shuffle=True)
# Issue 11: a fill value (new and old-style messages) and a nested group (its own local heap).
with h5py.File("h5py_fill.h5", "w") as f:
    u = f.create_dataset("u", shape=(7,), dtype="<i4", chunks=(3,), fillvalue=-1)
    u[:3] = [10, 20, 30]
    f.create_group("g")["be"] = np.array([1, -2, 3], dtype=">i8")
