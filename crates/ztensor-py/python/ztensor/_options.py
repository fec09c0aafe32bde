"""Argument checks shared by the writers."""

from __future__ import annotations

import operator
import os


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
