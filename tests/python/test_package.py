"""Packaging promises: light imports, version, typing files, public names."""

import pathlib
import re
import subprocess
import sys
import tomllib

import ztensor

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_import_does_not_import_torch_or_ml_dtypes():
    code = (
        "import sys, ztensor, ztensor.numpy; "
        "print(sorted(m for m in ('torch', 'ml_dtypes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_matches_the_workspace():
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert ztensor.__version__ == cargo["workspace"]["package"]["version"]


def test_typing_files_ship_with_the_package():
    pkg = pathlib.Path(ztensor.__file__).parent
    assert (pkg / "py.typed").exists()
    stub = (pkg / "_ztensor.pyi").read_text()
    for name in ("class _Reader", "class _Writer", "class ZTensorError", "def read_arrays", "def add_many"):
        assert name in stub
    native = ztensor._ztensor
    for cls, methods in (
        (native._Reader, ("read_arrays", "read_component", "verify", "info")),
        (native._Writer, ("add_many", "finish", "discard", "set_attributes")),
    ):
        for m in methods:
            assert hasattr(cls, m), f"stub lists {cls.__name__}.{m} but the module lacks it"


def test_public_names():
    for name in ("Reader", "Writer", "TensorMetadata", "ZTensorError", "open", "__version__"):
        assert hasattr(ztensor, name)
    assert issubclass(ztensor.ZTensorError, Exception)
    import ztensor.numpy as zn

    for name in ("save_file", "load_file", "save", "load"):
        assert callable(getattr(zn, name))


def test_only_reader_and_writer_touch_the_native_objects():
    # The package's layering: the front ends (torch.py, safe_open, the 1.2.3
    # API...) use Reader/Writer methods, never the native objects they wrap.
    pkg = pathlib.Path(ztensor.__file__).parent
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(pkg.rglob("*.py"))
        if path.name not in ("_reader.py", "_writer.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\._[rw]\b", line)
    ]
    assert offenders == []


def test_native_reads_return_named_records(tmp_path):
    import numpy as np

    import ztensor.numpy
    from ztensor import _ztensor

    path = tmp_path / "x.zt"
    arr = np.array([[1 + 2j, 3 - 4j]], np.complex64)
    ztensor.numpy.save_file({"c": arr}, path)
    r = _ztensor._Reader(str(path))
    (a,) = r.read_arrays(None, False)
    assert (a.name, a.dtype, a.logical_type, a.shape) == ("c", "float32", "complex64", [1, 2])
    assert bytes(a.buffer) == arr.tobytes()
    i = r.info("c")
    assert (i.name, i.shape, i.dtype, i.logical_type, i.layout, i.attributes) == (
        "c",
        [1, 2],
        "float32",
        "complex64",
        "dense",
        None,
    )
    assert i.components["data"]["length"] == arr.nbytes
