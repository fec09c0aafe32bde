"""Mapping between NumPy dtypes and zTensor storage dtypes / logical types."""

from __future__ import annotations

import functools

import numpy as np

_NATIVE = {
    "float64": np.float64,
    "float32": np.float32,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "uint64": np.uint64,
    "uint32": np.uint32,
    "uint16": np.uint16,
    "uint8": np.uint8,
    "bool": np.bool_,
}

# ml_dtypes name -> (storage dtype, logical type): one element per byte.
# The sub-byte types are unpacked (ml_dtypes keeps one element per byte, and
# so does the ONNX reader); signed integers are sign-extended int8.
_ML_BYTES = {
    "float8_e4m3fn": ("uint8", "f8_e4m3fn"),
    "float8_e5m2": ("uint8", "f8_e5m2"),
    "float8_e4m3fnuz": ("uint8", "f8_e4m3fnuz"),
    "float8_e5m2fnuz": ("uint8", "f8_e5m2fnuz"),
    "float8_e8m0fnu": ("uint8", "f8_e8m0fnu"),
    "float6_e2m3fn": ("uint8", "f6_e2m3fn"),
    "float6_e3m2fn": ("uint8", "f6_e3m2fn"),
    "float4_e2m1fn": ("uint8", "f4_e2m1fn"),
    "int4": ("int8", "int4"),
    "int2": ("int8", "int2"),
    "uint4": ("uint8", "uint4"),
    "uint2": ("uint8", "uint2"),
}
_ML_BYTES_BACK = {v: k for k, v in _ML_BYTES.items()}

_COMPLEX = {"complex64": "float32", "complex128": "float64"}

_U8 = np.dtype(np.uint8)


def _ml_dtypes():
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError(
            "bfloat16 and float8 arrays need the 'ml_dtypes' package: pip install 'ztensor[bfloat16]'"
        ) from None
    return ml_dtypes


@functools.cache
def numpy_dtype(storage: str, logical: str | None) -> np.dtype:
    """The NumPy dtype that presents a tensor of this storage and logical type."""
    if logical in _COMPLEX and _COMPLEX[logical] == storage:
        return np.dtype(logical)
    ml = _ML_BYTES_BACK.get((storage, logical))
    if ml is not None:
        return np.dtype(getattr(_ml_dtypes(), ml))
    if storage == "bfloat16":
        return np.dtype(_ml_dtypes().bfloat16)
    return np.dtype(_NATIVE[storage])


def _classify(dt: np.dtype):
    """(storage dtype, logical type) for a native-order dtype, or None."""
    name = dt.name
    if dt.kind == "b":
        return "bool", None
    if dt.kind in "iuf" and name in _NATIVE:
        return name, None
    if dt.kind == "c" and name in _COMPLEX:
        return _COMPLEX[name], name
    if name == "bfloat16":
        return "bfloat16", None
    if name in _ML_BYTES:
        return _ML_BYTES[name]
    return None


# dtype -> (storage dtype, logical type, how its bytes are handed over), so
# that saving many small arrays classifies each dtype once (dtype.name alone
# costs a Python call per array).
_CLASSES: dict = {}
# NumPy cannot export these (ml_dtypes) dtypes through the buffer protocol.
_NEEDS_BYTE_VIEW = frozenset(_ML_BYTES) | {"bfloat16"}
_AS_IS, _WIDEN, _BYTE_VIEW = range(3)


def _handover(dt: np.dtype, logical: str | None) -> int:
    if logical in ("int4", "int2"):
        return _WIDEN
    return _BYTE_VIEW if dt.name in _NEEDS_BYTE_VIEW else _AS_IS


def to_storage(arr: np.ndarray):
    """Returns (C-contiguous little-endian buffer, storage dtype, logical type).

    The buffer exports the storage bytes through the buffer protocol (ml_dtypes
    arrays are passed as uint8 views, since NumPy cannot export their dtype).
    Raises TypeError for dtypes the format cannot hold.
    """
    dt = arr.dtype
    cls = _CLASSES.get(dt)
    if cls is None:
        if dt.byteorder == ">":
            arr = arr.astype(dt.newbyteorder("<"))
            return to_storage(arr)
        found = _classify(dt)
        if found is None:
            raise TypeError(
                f"unsupported dtype {dt} (supported: float64/32/16, bfloat16, int8-64, "
                "uint8-64, bool, ml_dtypes float8/float6/float4/int4/int2/uint4/uint2, complex64/128)"
            )
        cls = _CLASSES[dt] = (*found, _handover(dt, found[1]))
    storage, logical, how = cls
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    if storage == "bool":
        raw = arr.view(np.uint8)
        if raw.size and raw.max() > 1:  # bools made from views of other bytes
            arr = raw != 0
    if how == _WIDEN:
        # ml_dtypes keeps only the low bits in each byte (-1 is 0x0f); the
        # stored int8 holds the sign-extended value, as the ONNX reader does.
        arr = arr.reshape(-1).astype(np.int8)
    elif how == _BYTE_VIEW:
        arr = arr.reshape(-1).view(np.uint8)
    elif arr.ndim == 0:  # 0-d exports have no shape, which the native side refuses
        arr = arr.reshape(1)
    return arr, storage, logical


def as_array(buf, storage: str, logical: str | None, shape) -> np.ndarray:
    """Wraps a native buffer as an array of the tensor's dtype and shape (no copy)."""
    return np.frombuffer(buf, dtype=numpy_dtype(storage, logical)).reshape(shape)
