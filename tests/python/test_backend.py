"""``backend="mmap" | "pread"`` on ``ztensor.numpy.load_file``,
``ztensor.torch.load_file`` and ``ztensor.torch.load_model``, as safetensors
0.8 takes it: keyword-only, default ``"mmap"``.

``"mmap"`` hands out views of a private mapping of the file, so bytes
written into the file afterwards show through (the mapping shares the
page cache until a page is written) and the file is listed in
/proc/self/maps. ``"pread"`` (``Reader(..., eager=True)``) reads into memory
of its own: later writes to the file, even truncating it, leave the loaded
data intact, and no mapping of the file remains.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import safetensors
import safetensors.numpy as st_np
import safetensors.torch as st_torch
import torch

import ztensor
import ztensor.numpy as ztnp
import ztensor.torch as zttorch
from ztensor import ZTensorError

VALUES = np.arange(1 << 14, dtype=np.int32)  # 64 KiB: many pages


def mapped(path) -> bool:
    with open("/proc/self/maps") as f:
        return str(path) in f.read()


def overwrite_values(path, new: np.ndarray, at: int | None = None) -> int:
    """Writes `new` in place over the first bytes of VALUES in the file (at
    byte `at`, found when not given); returns where."""
    if at is None:
        at = path.read_bytes().find(VALUES.tobytes())
        assert at > 0
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(new.tobytes())
    return at


def make(tmp_path, fmt: str):
    if fmt == "zt":
        path = tmp_path / "v.zt"
        ztnp.save_file({"v": VALUES}, path)
    else:
        path = tmp_path / "v.safetensors"
        st_np.save_file({"v": VALUES}, str(path))
    return path


LOADERS = {
    "numpy": lambda path, **kw: ztnp.load_file(path, **kw)["v"],
    "numpy-copy": lambda path, **kw: ztnp.load_file(path, copy=True, **kw)["v"],
    "torch": lambda path, **kw: zttorch.load_file(path, **kw)["v"].numpy(),
}


@pytest.mark.parametrize("fmt", ["zt", "safetensors"])
@pytest.mark.parametrize("loader", ["numpy", "torch"])
def test_mmap_views_the_file(tmp_path, fmt, loader):
    path = make(tmp_path, fmt)
    for kwargs in ({}, {"backend": "mmap"}):
        got = LOADERS[loader](path, **kwargs)
        assert mapped(path)
        assert (got == VALUES).all()
        at = overwrite_values(path, np.full(4, -7, np.int32))
        assert got[:5].tolist() == [-7, -7, -7, -7, 4], kwargs  # the file's new bytes show through
        overwrite_values(path, VALUES[:4], at)
        del got


@pytest.mark.parametrize("fmt", ["zt", "safetensors"])
@pytest.mark.parametrize("loader", ["numpy", "numpy-copy", "torch"])
def test_pread_owns_its_memory(tmp_path, fmt, loader):
    path = make(tmp_path, fmt)
    got = LOADERS[loader](path, backend="pread")
    assert not mapped(path)
    overwrite_values(path, np.full(4, -7, np.int32))
    with open(path, "r+b") as f:
        f.truncate(0)  # would be SIGBUS for a mapping
    assert (got == VALUES).all()
    got[0] = 99  # writable, as with mmap
    assert got[0] == 99


def test_load_model_passes_backend(tmp_path):
    model = torch.nn.Linear(64, 64)
    path = tmp_path / "m.zt"
    zttorch.save_model(model, path)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for backend in ("mmap", "pread"):
        fresh = torch.nn.Linear(64, 64)
        assert zttorch.load_model(fresh, path, backend=backend) == (set(), [])
        for k, v in fresh.state_dict().items():
            assert torch.equal(v, expected[k]), (backend, k)
    with pytest.raises(ZTensorError, match='backend "PREAD" is invalid'):
        zttorch.load_model(torch.nn.Linear(64, 64), path, backend="PREAD")


def test_load_model_pread_reads_eagerly(tmp_path, monkeypatch):
    """load_model's backend reaches the Reader as eager=True/False."""
    seen = []
    real = zttorch.Reader

    class Spy(real):
        def __init__(self, path, *, eager=False, **kw):
            seen.append(eager)
            super().__init__(path, eager=eager, **kw)

    monkeypatch.setattr(zttorch, "Reader", Spy)
    path = tmp_path / "m.zt"
    zttorch.save_model(torch.nn.Linear(4, 4), path)
    for backend in ("pread", "mmap"):
        zttorch.load_model(torch.nn.Linear(4, 4), path, backend=backend)
    zttorch.load_model(torch.nn.Linear(4, 4), path)
    assert seen == [True, False, False]


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (ztnp.load_file, st_np.load_file),
        (zttorch.load_file, st_torch.load_file),
        (zttorch.load_model, st_torch.load_model),
    ],
)
def test_signature_matches_safetensors(ours, theirs):
    p, q = inspect.signature(ours).parameters["backend"], inspect.signature(theirs).parameters["backend"]
    assert (p.kind, p.default) == (q.kind, q.default) == (inspect.Parameter.KEYWORD_ONLY, "mmap")


@pytest.mark.parametrize(
    "bad, error",
    [
        ("bogus", "invalid"),
        ("MMAP", "invalid"),
        ("", "invalid"),
        (None, TypeError),
        (1, TypeError),
        (b"mmap", TypeError),
    ],
)
def test_invalid_backend_is_refused_like_safetensors(tmp_path, bad, error):
    """safetensors raises its own error type (SafetensorError) for an unknown
    name, with this message, and TypeError for a non-str; ours raises its
    own error type (ZTensorError), and TypeError alike."""
    st_path = make(tmp_path, "safetensors")
    if error == "invalid":
        message = f'backend "{bad}" is invalid (expected one of: "mmap", "pread")'
        with pytest.raises(safetensors.SafetensorError) as theirs:
            st_torch.load_file(str(st_path), backend=bad)
        assert str(theirs.value) == message
        for load in (ztnp.load_file, zttorch.load_file):
            with pytest.raises(ZTensorError) as ours:
                load(st_path, backend=bad)
            assert str(ours.value) == message
    else:
        with pytest.raises(TypeError):
            st_torch.load_file(str(st_path), backend=bad)
        for load in (ztnp.load_file, zttorch.load_file):
            with pytest.raises(TypeError, match="backend must be a str"):
                load(st_path, backend=bad)


def test_pread_with_other_options(tmp_path):
    """backend combines with copy= and device= and works on every path."""
    path = make(tmp_path, "zt")
    ztensor.numpy.save_file({"v": VALUES, "c": VALUES[:10].astype(np.float16)}, path, compression=True)
    for backend in ("mmap", "pread"):
        got = ztnp.load_file(path, copy=True, backend=backend)
        assert (got["v"] == VALUES).all() and (got["c"] == VALUES[:10]).all()
        t = zttorch.load_file(path, device="cpu", copy=False, backend=backend)
        assert (t["v"].numpy() == VALUES).all()
