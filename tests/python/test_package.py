"""Packaging promises: light imports, version, typing files, public names."""

import pathlib
import subprocess
import sys
import tomllib

import ztensor

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_import_does_not_import_torch_or_ml_dtypes():
    code = "import sys, ztensor, ztensor.numpy; print(sorted(m for m in ('torch', 'ml_dtypes') if m in sys.modules))"
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
    for cls, methods in ((native._Reader, ("read_arrays", "read_component", "verify", "info")),
                         (native._Writer, ("add_many", "finish", "discard", "set_attributes"))):
        for m in methods:
            assert hasattr(cls, m), f"stub lists {cls.__name__}.{m} but the module lacks it"


def test_public_names():
    for name in ("Reader", "Writer", "TensorMetadata", "ZTensorError", "open", "__version__"):
        assert hasattr(ztensor, name)
    assert issubclass(ztensor.ZTensorError, Exception)
    import ztensor.numpy as zn
    for name in ("save_file", "load_file", "save", "load"):
        assert callable(getattr(zn, name))
