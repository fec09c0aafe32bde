"""No panic reaches Python: every native entry point runs inside the same
guard (errors.rs `shield`), which turns a Rust panic into ZTensorError.

`_ztensor._panic_for_tests` panics inside that guard; the source check below
makes sure every #[pyfunction] and #[pymethods] function uses it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ztensor
import ztensor.numpy
from ztensor import ZTensorError, _ztensor

PY_SRC = Path(__file__).resolve().parents[2] / "crates" / "ztensor-py" / "src"


def test_a_panic_becomes_ztensor_error():
    with pytest.raises(ZTensorError, match=r"internal error \(please report\): boom 7"):
        _ztensor._panic_for_tests("boom 7")
    # ZTensorError is an Exception, so `except Exception` handlers catch it
    # (pyo3's own PanicException is a BaseException and would slip through).
    assert issubclass(ZTensorError, Exception)


def test_the_process_survives_many_panics(tmp_path):
    code = (
        "import numpy as np, ztensor, ztensor.numpy\n"
        "from ztensor import _ztensor, ZTensorError\n"
        "for i in range(200):\n"
        "    try:\n"
        "        _ztensor._panic_for_tests(f'panic {i}')\n"
        "    except ZTensorError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit('no error raised')\n"
        f"ztensor.numpy.save_file({{'a': np.arange(3)}}, {str(tmp_path / 'a.zt')!r})\n"
        f"r = ztensor.open({str(tmp_path / 'a.zt')!r})\n"
        "assert r['a'].tolist() == [0, 1, 2]\n"
        "print('alive')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "alive"


def test_the_package_still_works_after_a_panic(tmp_path):
    with pytest.raises(ZTensorError):
        _ztensor._panic_for_tests("before a read")
    path = tmp_path / "x.zt"
    ztensor.numpy.save_file({"x": np.ones(4, np.float32)}, path)
    with ztensor.open(path) as r:
        assert r["x"].tolist() == [1.0] * 4


def entry_points(src: str):
    """(name, body) of every function in a #[pymethods] impl or after #[pyfunction]."""
    found = []
    for m in re.finditer(r"#\[pymethods\]\s*impl\b[^{]*\{", src):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(src[i], 0)
            i += 1
        block = src[m.end() : i - 1]
        found += functions(block)
    for m in re.finditer(r"#\[pyfunction\]", src):
        found += functions(src[m.end() :], first_only=True)
    return found


def functions(block: str, first_only: bool = False):
    out = []
    for m in re.finditer(r"\bfn\s+(\w+)[^{;]*\{", block):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(block[i], 0)
            i += 1
        out.append((m.group(1), block[m.end() : i - 1]))
        if first_only:
            break
    return out


def test_every_entry_point_is_guarded():
    checked = []
    for path in sorted(PY_SRC.glob("*.rs")):
        for name, body in entry_points(path.read_text()):
            # Only direct top-level functions of pymethods blocks count; nested
            # closures are part of their function's body.
            checked.append(f"{path.name}:{name}")
            assert "shield(" in body, f"{path.name}: entry point {name} is not wrapped in shield()"
    # the Reader, Writer, Buffer methods and the module functions were all seen
    for expected in (
        "reader.rs:new",
        "reader.rs:read_arrays",
        "reader.rs:info",
        "writer.rs:add_many",
        "buffer.rs:__getbuffer__",
        "cli.rs:cli_main",
        "errors.rs:panic_for_tests",
    ):
        assert expected in checked, (expected, checked)
    assert len(checked) >= 25


def test_the_source_check_sees_unguarded_functions():
    src = (
        "#[pymethods]\nimpl X {\n    fn a(&self) -> PyResult<u8> { shield(|| Ok(1)) }\n"
        "    fn b(&self) -> u8 { if true { 1 } else { 2 } }\n}\n"
        "#[pyfunction]\npub fn c() -> u8 { 3 }\nfn not_exported() {}\n"
    )
    found = dict(entry_points(src))
    assert set(found) == {"a", "b", "c"}
    assert "shield(" in found["a"] and "shield(" not in found["b"] and "shield(" not in found["c"]
