"""Argument checks shared by the readers and writers."""

from __future__ import annotations

import operator
import os

from ._ztensor import ZTensorError


def compression_level(value, argname: str = "compression"):
    """False/None/0/negative -> None (raw); True -> 3; int n -> n clamped to 22."""
    if value is None or value is False:
        return None
    if value is True:
        return 3
    try:
        level = operator.index(value)
    except TypeError:
        raise TypeError(f"{argname} must be bool or int, not {type(value).__name__}") from None
    return None if level <= 0 else min(level, 22)


def fspath(path) -> str:
    """A str path from str, bytes or os.PathLike (TypeError otherwise)."""
    p = os.fspath(path)
    return os.fsdecode(p) if isinstance(p, bytes) else p


def check_metadata(metadata):
    """File metadata must be a dict with str keys (values: JSON-like)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    for k in metadata:
        if not isinstance(k, str):
            raise TypeError(f"metadata keys must be str, not {type(k).__name__}")
    return metadata


_DEQUANTIZE = ("float32", "float16")


def dequantize_dtype(value):
    """The ``dequantize=`` option as ``None``, ``"float32"`` or ``"float16"``.

    Accepts None, those names and anything NumPy reads as those dtypes
    (``np.float32``, ``np.dtype("float16")``, ``"f4"``...).
    """
    if value is None:
        return None
    import numpy as np

    try:
        name = np.dtype(value).name
    except TypeError:
        raise TypeError(
            f"dequantize must be None, 'float32' or 'float16' (or a NumPy float dtype), not {value!r}"
        ) from None
    if name not in _DEQUANTIZE:
        raise ValueError(f"dequantize must be float32 or float16, not {name}")
    return name


_BACKENDS = ("mmap", "pread")


def eager_backend(backend) -> bool:
    """safetensors 0.8's ``backend=``: ``"mmap"`` maps the file (False),
    ``"pread"`` reads with pread into owned memory (True, ``eager=True``)."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, not {type(backend).__name__}")
    if backend not in _BACKENDS:
        raise ZTensorError(f'backend "{backend}" is invalid (expected one of: "mmap", "pread")')
    return backend == "pread"
