"""Writes the fuzz seed corpora: small valid files made by the real libraries.

    ~/.cache/ztensor/venv/bin/python fuzz/make_seeds.py [OUT_DIR]

One folder per fuzz target under OUT_DIR (default: fuzz/corpus/). The
corpora are not committed; scripts/fuzz.sh runs this when they are missing.
Every seed is deterministic (fixed values, no randomness) and small: the
fuzzer mutates bytes, so small files keep mutations near the structure.

`.zt` seeds come from the reference ztensor 1.2.3 (when installed under
~/.cache/ztensor/ref), from this package (when its extension is built and
importable), and from the test suite's independent builder (v1 edge cases,
legacy v0.1). The `cbor` corpus is the manifests of the v1 seeds.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REF_DIR = Path(os.environ.get("ZTENSOR_REF_DIR", Path.home() / ".cache/ztensor/ref"))
sys.path.insert(0, str(ROOT / "tests" / "python"))

import conftest  # noqa: E402  (the suite's independent .zt builder)

TARGETS = ("zt", "cbor", "safetensors", "pickle", "npz", "npy", "gguf", "onnx", "hdf5")


def small_arrays() -> dict[str, np.ndarray]:
    """A few tiny arrays of varied dtypes and shapes."""
    return {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "i64": np.array([-1, 0, 7], dtype=np.int64),
        "u8": np.array([[1, 2], [3, 4]], dtype=np.uint8),
        "b": np.array([True, False, True]),
        "f16": np.array([1.5, -2.0], dtype=np.float16),
        "scalar": np.array(3.25, dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.int32),
    }


class Seeds:
    def __init__(self, out: Path):
        self.out = out
        self.count: dict[str, int] = {}

    def add(self, target: str, name: str, data: bytes) -> None:
        d = self.out / target
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
        self.count[target] = self.count.get(target, 0) + 1

    def add_file(self, target: str, name: str, path: Path) -> None:
        self.add(target, name, Path(path).read_bytes())


def zt_manifest(data: bytes) -> bytes | None:
    """The CBOR manifest of a v1 `.zt` image."""
    if not data.startswith(b"ZTEN1000") or len(data) < 24:
        return None
    (size,) = struct.unpack("<Q", data[-16:-8])
    return data[len(data) - 16 - size : len(data) - 16]


def zt_seeds(s: Seeds, tmp: Path) -> None:
    arrays = small_arrays()
    # The reference implementation (a subprocess: it must not meet ours).
    if (REF_DIR / "ztensor").is_dir():
        code = (
            "import sys; sys.modules['torch'] = None\n"
            "import numpy as np, ztensor\n"
            "from ztensor import Writer\n"
            "out = sys.argv[1]\n"
            "a = {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'ids': np.array([5, 6], np.int64),\n"
            "     'flag': np.array([True, False]), 'h': np.array([1.5], np.float16)}\n"
            "for i, (compress, checksum) in enumerate("
            "[(None, 'none'), (3, 'none'), (None, 'crc32c'), (3, 'sha256')]):\n"
            "    with Writer(f'{out}/ref{i}.zt') as w:\n"
            "        for k, v in a.items():\n"
            "            w.add(k, v, compress=compress, checksum=checksum)\n"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONPATH"] = str(REF_DIR)
        r = subprocess.run([sys.executable, "-c", code, str(tmp)], env=env, capture_output=True, text=True)
        if r.returncode == 0:
            for p in sorted(tmp.glob("ref*.zt")):
                s.add_file("zt", p.name, p)
        else:
            print("reference ztensor unavailable:", r.stderr.strip().splitlines()[-1:], file=sys.stderr)
    # This package, when its extension is importable.
    try:
        sys.path.insert(0, str(ROOT / "crates" / "ztensor-py" / "python"))

        from ztensor import Writer  # noqa: PLC0415

        with Writer(tmp / "ours0.zt", metadata={"k": "v", "n": [1, 2.5, None]}) as w:
            for k, v in arrays.items():
                w.add(k, v)
        with Writer(tmp / "ours1.zt") as w:
            w.add("z", arrays["f32"], compress=3, checksum="crc32c")
            w.add("s", arrays["i64"], checksum="sha256")
            w.add("e", arrays["empty"], compress=1)
        for p in sorted(tmp.glob("ours*.zt")):
            s.add_file("zt", p.name, p)
    except Exception as e:  # noqa: BLE001 - optional source of seeds
        print(f"this package's writer unavailable ({type(e).__name__}: {e})", file=sys.stderr)
    finally:
        sys.path.pop(0)
    # The independent builder: edge cases no writer emits.
    b = conftest.ZtBuilder()
    b.add_dense("raw", arrays["f32"], checksum="crc32c")
    b.add_dense("z", arrays["i64"], encoding="zstd", checksum="sha256")
    b.add_dense("c", np.array([1 + 2j], np.complex64), dtype="f32", ltype="complex64")
    b.root_extra["attributes"] = {"k": "v", "nested": {"a": [1, -2, 1.5, b"\x00", None, True]}}
    s.add("zt", "builder_v1.zt", b.build())
    coo = conftest.ZtBuilder()
    vals = coo.add_dense("s", np.array([1.0, 2.0], np.float32))
    idx_off = coo.blob(np.array([[0, 3]], np.uint64).tobytes())
    coo.objects["s"] = {
        "shape": [4],
        "format": "sparse_coo",
        "components": {"values": vals, "coords": {"dtype": "u64", "offset": idx_off, "length": 16}},
    }
    s.add("zt", "builder_coo.zt", coo.build())
    s.add("zt", "legacy.zt", conftest.build_legacy_zt({"a": arrays["f32"], "b": arrays["u8"]}))
    for p in sorted((s.out / "zt").glob("*.zt")):
        m = zt_manifest(p.read_bytes())
        if m is not None:
            s.add("cbor", p.stem + ".cbor", m)


def safetensors_seeds(s: Seeds, tmp: Path) -> None:
    from safetensors.numpy import save  # noqa: PLC0415

    arrays = small_arrays()
    s.add("safetensors", "all.safetensors", save(arrays, metadata={"format": "np"}))
    s.add("safetensors", "one.safetensors", save({"x": np.array([1, 2], np.int16)}))
    s.add("safetensors", "empty.safetensors", save({}))
    try:
        import ml_dtypes  # noqa: PLC0415

        bf = np.array([1.0, -2.0], dtype=ml_dtypes.bfloat16)
        f8 = np.array([0.5, 1.0], dtype=ml_dtypes.float8_e4m3fn)
        s.add("safetensors", "ml.safetensors", save({"bf": bf, "f8": f8}))
    except Exception as e:  # noqa: BLE001
        print("ml_dtypes seeds skipped:", e, file=sys.stderr)


def numpy_seeds(s: Seeds, tmp: Path) -> None:
    arrays = small_arrays()
    odd = {
        "be": np.arange(4, dtype=">f4"),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "c64": np.array([1 + 1j, 2 - 1j], np.complex64),
        "be_i8": np.array([[1, -2], [3, 4]], dtype=">i8"),
    }
    for name, kw in (("plain", arrays), ("odd", odd)):
        for fn, tag in ((np.savez, "savez"), (np.savez_compressed, "compressed")):
            buf = io.BytesIO()
            fn(buf, **kw)
            s.add("npz", f"{tag}_{name}.npz", buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, np.arange(3, dtype=np.uint16))  # positional: arr_0
    s.add("npz", "positional.npz", buf.getvalue())
    for name, a in {**arrays, **odd}.items():
        buf = io.BytesIO()
        np.save(buf, a)
        s.add("npy", f"{name}.npy", buf.getvalue())
    for version in ((2, 0), (3, 0)):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, odd["fortran"], version=version)
        s.add("npy", f"v{version[0]}.npy", buf.getvalue())


def torch_seeds(s: Seeds, tmp: Path) -> None:
    import torch  # noqa: PLC0415

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        "w": base,
        "t": base.t(),  # non-contiguous view of the same storage
        "row": base[1],  # view at an offset
        "step": base[:, ::2],  # strided
        "h": torch.tensor([1.0, 2.0], dtype=torch.float16),
        "bf": torch.tensor([1.0], dtype=torch.bfloat16),
        "i": torch.tensor([1, 2, 3], dtype=torch.int64),
        "flag": torch.tensor([True, False]),
        "c": torch.tensor([1 + 2j], dtype=torch.complex64),
        "s": torch.tensor(5, dtype=torch.int8),
    }
    nested = {"model": {"a": base[:2], "b": [base[2], (torch.zeros(2, dtype=torch.int32),)]}, "epoch": 3}
    for name, obj in (("state", state), ("nested", nested)):
        buf = io.BytesIO()
        torch.save(obj, buf)
        s.add("pickle", f"{name}_zip.pt", buf.getvalue())
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=False)
        s.add("pickle", f"{name}_legacy.pt", buf.getvalue())
    # Plain pickles (no tensors) of every protocol.
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        obj = {"a": [1, 2.5, "x", b"y", None, True], "b": (1, (2,)), "c": {3: 4}}
        s.add("pickle", f"plain_p{proto}.pkl", pickle.dumps(obj, protocol=proto))


def gguf_seeds(s: Seeds, tmp: Path) -> None:
    import gguf  # noqa: PLC0415

    def write(name: str, fill) -> None:
        path = tmp / name
        w = gguf.GGUFWriter(str(path), "llama")
        fill(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        s.add_file("gguf", name, path)

    def plain(w):
        w.add_uint32("llama.block_count", 1)
        w.add_string("general.name", "seed")
        w.add_float32("f", 1.5)
        w.add_bool("b", True)
        w.add_array("arr", [1, 2, 3])
        w.add_array("names", ["a", "bc"])
        w.add_tensor("w", np.arange(6, dtype=np.float32).reshape(2, 3))
        w.add_tensor("h", np.array([1.0, 2.0], dtype=np.float16))
        w.add_tensor("i", np.array([1, -2], dtype=np.int32))

    def quantized(w):
        data = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
        for qt in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0):
            q = gguf.quants.quantize(data, qt)
            w.add_tensor(qt.name.lower(), q, raw_shape=q.shape, raw_dtype=qt)

    def aligned(w):
        w.add_uint32("general.alignment", 64)
        w.add_tensor("x", np.arange(4, dtype=np.float32))

    write("plain.gguf", plain)
    write("quantized.gguf", quantized)
    write("aligned.gguf", aligned)


def onnx_seeds(s: Seeds, tmp: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    raw = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "raw_w")
    typed_f = helper.make_tensor("typed_f", TensorProto.FLOAT, [2], [1.5, -2.0])
    typed_i = helper.make_tensor("typed_i", TensorProto.INT64, [3], [1, -2, 3])
    typed_h = helper.make_tensor(
        "typed_h", TensorProto.FLOAT16, [2], np.array([1, 2], np.float16).view(np.uint16).tolist()
    )
    const = helper.make_node(
        "Constant", [], ["c"], value=helper.make_tensor("c_val", TensorProto.INT32, [2], [7, 8])
    )
    add = helper.make_node("Add", ["x", "raw_w"], ["y"])
    graph = helper.make_graph(
        [const, add],
        "seed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[raw, typed_f, typed_i, typed_h],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    s.add("onnx", "model.onnx", model.SerializeToString())
    g2 = helper.make_graph([], "only_raw", [], [], initializer=[raw])
    s.add("onnx", "raw.onnx", helper.make_model(g2).SerializeToString())


def hdf5_seeds(s: Seeds, tmp: Path) -> None:
    import h5py  # noqa: PLC0415

    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    with h5py.File(tmp / "contiguous.h5", "w") as f:
        f["w"] = data
        f.create_dataset("g/i", data=np.array([1, 2, 3], np.int64))
        f.attrs["note"] = "seed"
    with h5py.File(tmp / "chunked.h5", "w") as f:
        f.create_dataset("c", data=data, chunks=(2, 2), compression="gzip", shuffle=True)
    with h5py.File(tmp / "latest.h5", "w", libver="latest") as f:
        f.create_dataset("c", data=data, chunks=(3, 2), compression="gzip", shuffle=True)
        f["be"] = np.arange(3, dtype=">i4")
    for name in ("contiguous.h5", "chunked.h5", "latest.h5"):
        s.add_file("hdf5", name, tmp / name)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus"
    s = Seeds(out)
    with tempfile.TemporaryDirectory() as t:
        for make in (
            zt_seeds,
            safetensors_seeds,
            numpy_seeds,
            torch_seeds,
            gguf_seeds,
            onnx_seeds,
            hdf5_seeds,
        ):
            tmp = Path(t) / make.__name__
            tmp.mkdir()
            make(s, tmp)
            shutil.rmtree(tmp)
    for target in TARGETS:
        files = sorted((out / target).glob("*")) if (out / target).is_dir() else []
        sizes = [p.stat().st_size for p in files]
        print(f"{target:12} {len(files):3} seeds, largest {max(sizes, default=0)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
