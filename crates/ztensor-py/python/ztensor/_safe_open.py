"""``safe_open``: lazy, sliceable access to any tensor file, with the names
and behaviour of ``safetensors.safe_open``.

A slice reads what it selects, not the whole tensor: rows of a raw tensor
are a zero-copy view of the file, other selections are gathered straight
from it, zstd tensors decode only the frames holding selected bytes, and
foreign encodings (deflated ``.npz`` members, chunked HDF5, dequantized
GGUF) are decoded whole and then sliced. A checksummed tensor is checked
whole once per open file, before its first slice is returned.
"""

from __future__ import annotations

import operator

import numpy as np

from ._dtypes import as_array
from ._options import eager_backend
from ._ztensor import ZTensorError, _Slice

# (storage dtype, logical type) -> safetensors' dtype string
_SAFETENSORS_DTYPES = {
    ("float64", None): "F64",
    ("float32", None): "F32",
    ("float16", None): "F16",
    ("bfloat16", None): "BF16",
    ("int64", None): "I64",
    ("int32", None): "I32",
    ("int16", None): "I16",
    ("int8", None): "I8",
    ("uint64", None): "U64",
    ("uint32", None): "U32",
    ("uint16", None): "U16",
    ("uint8", None): "U8",
    ("bool", None): "BOOL",
    ("uint8", "f8_e4m3fn"): "F8_E4M3",
    ("uint8", "f8_e5m2"): "F8_E5M2",
    ("uint8", "f8_e4m3fnuz"): "F8_E4M3FNUZ",
    ("uint8", "f8_e5m2fnuz"): "F8_E5M2FNUZ",
    ("uint8", "f8_e8m0fnu"): "F8_E8M0",
    ("uint8", "f4_e2m1fn_x2"): "F4",
    ("float32", "complex64"): "C64",
}
_PACKED_F4 = "f4_e2m1fn_x2"
_I64 = 2**63

_FRAMEWORKS = {"pt": "pt", "torch": "pt", "pytorch": "pt", "np": "np", "numpy": "np"}
# safetensors' other frameworks: valid names that ztensor does not serve.
_UNSUPPORTED = ("tf", "tensorflow", "flax", "jax", "mlx", "paddle")


def _position(value, what: str) -> int:
    """An integer index (int, NumPy integer, 0-d integer array or tensor)."""
    if isinstance(value, (bool, np.bool_)) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool"):
        raise IndexError(f"boolean {what} are not supported; use integers")
    try:
        return operator.index(value)
    except TypeError:
        raise IndexError(
            f"only integers, slices (`:`), ellipsis (`...`) and one list of integers are "
            f"valid indices, not {type(value).__name__}"
        ) from None


def _bound(value):
    """A slice bound or step: None or an int, clamped to 64 bits (every
    dimension is shorter, so clamping changes nothing)."""
    if value is None:
        return None
    v = _position(value, "slice bounds")
    return min(max(v, -_I64), _I64 - 1)


def _positions(value) -> list:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise IndexError(f"a list of positions must be one-dimensional, not {arr.ndim}-dimensional")
    if arr.size == 0:
        return []
    if arr.dtype.kind not in "iu":
        raise IndexError(f"a list of positions must hold integers, not {arr.dtype}")
    if arr.dtype.kind == "u" and arr.max() >= _I64:
        raise IndexError(f"position {int(arr.max())} is out of bounds")
    return arr.astype(np.int64).tolist()


def _index(key) -> list:
    """The elements of an index as the native reader takes them."""
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for p in parts:
        if p is Ellipsis:
            out.append(p)
        elif p is None:
            raise IndexError("None (numpy.newaxis) is not supported in a slice; reshape the result")
        elif isinstance(p, slice):
            out.append(slice(_bound(p.start), _bound(p.stop), _bound(p.step)))
        elif isinstance(p, list) or (hasattr(p, "__array__") and getattr(p, "ndim", 0) > 0):
            out.append(_positions(p))
        else:
            i = _position(p, "indices")
            if not -_I64 <= i < _I64:
                raise IndexError(f"index {i} is out of bounds")
            out.append(i)
    return out


class TensorSlice:
    """One tensor of an open file, read part by part: ``s[index]``.

    Indexes as NumPy does: integers (negative from the end), slices with any
    non-zero step (bounds clamped), ``...``, tuples of these, and one list
    (or 1-D integer array) of positions. Out-of-range integers raise
    IndexError. ``get_shape()`` and ``get_dtype()`` are those of
    ``safetensors``' slice object.
    """

    __slots__ = ("_s", "_framework", "_device")

    def __init__(self, native: _Slice, framework: str = "np", device=None):
        self._s = native
        self._framework = framework
        self._device = device

    def get_shape(self) -> list:
        """The tensor's shape (as safetensors gives it: an ``F4`` tensor's last
        dimension counts 4-bit values, while reads count bytes of two)."""
        shape = list(self._s.shape)
        if self._s.type == _PACKED_F4 and shape:
            shape[-1] *= 2
        return shape

    def get_dtype(self) -> str:
        """safetensors' dtype string (``"F32"``, ``"BF16"``, ``"F8_E4M3"``...);
        for types safetensors lacks, zTensor's name (``"complex128"``, ``"int4"``)."""
        storage, logical = self._s.dtype, self._s.type
        return _SAFETENSORS_DTYPES.get((storage, logical)) or logical or storage

    def __getitem__(self, key):
        buf, shape = self._s.read(_index(key), self._framework == "np")
        if self._framework == "np":
            return as_array(buf, self._s.dtype, self._s.type, shape)
        from ._torch_device import to_device
        from .torch import _as_tensor

        t = _as_tensor(buf, self._s.dtype, self._s.type, shape)
        return t if self._device.type == "cpu" else to_device({0: t}, self._device)[0]

    def __repr__(self) -> str:
        return f"<ztensor slice {self._s.name!r} shape={self.get_shape()} dtype={self.get_dtype()}>"


class safe_open:  # noqa: N801 - safetensors' name
    """Opens a tensor file of any format for lazy, sliced reading; a drop-in
    for ``safetensors.safe_open``.

    ``framework``: ``"pt"`` (also ``"torch"``, ``"pytorch"``) for torch
    tensors, ``"np"`` (``"numpy"``) for NumPy arrays. ``device`` (torch only):
    as in ``ztensor.torch.load_file`` (``"cpu"``, ``"cuda:1"``, an int...).
    ``backend``: ``"mmap"`` (default) or ``"pread"``, as in ``load_file``.
    Use it as a context manager, or call ``close()``; slices taken stay valid
    after the file is closed.
    """

    def __init__(self, filename, framework, device="cpu", *, backend: str = "mmap", storage_options=None):
        fw = _FRAMEWORKS.get(framework) if isinstance(framework, str) else None
        if fw is None:
            if framework in _UNSUPPORTED:
                raise ZTensorError(
                    f"framework {framework} is not supported by ztensor.safe_open (use 'pt' or 'np')"
                )
            raise ZTensorError(f"framework {framework} is invalid")
        if fw == "np":
            if device not in (None, "cpu"):
                raise ZTensorError(f"Device {device} is not supported for framework numpy")
            self._device = None
        else:
            from ._torch_device import parse_device

            self._device = parse_device("cpu" if device is None else device)
        from ._reader import Reader

        self._framework = fw
        self._reader = Reader(filename, eager=eager_backend(backend), storage_options=storage_options)

    def _open(self):
        if self._reader._closed:
            raise ZTensorError("File is closed")
        return self._reader

    def keys(self) -> list:
        """Tensor names, sorted."""
        return self._open().keys()

    def offset_keys(self) -> list:
        """Tensor names in the order their data lies in the file."""
        return self._open()._names_in_file_order()

    def metadata(self):
        """The file-level metadata (a dict), or None when the file has none."""
        return self._open().metadata() or None

    def get_tensor(self, name: str):
        """One whole tensor."""
        if not isinstance(name, str):
            raise TypeError(f"tensor name must be str, not {type(name).__name__}")
        reader = self._open()
        if self._framework == "np":
            return reader.read_tensor(name)
        from .torch import _load

        return _load(reader, self._device, False, [name])[name]

    def get_tensors(self) -> dict:
        """Every tensor, as a dict in file order."""
        reader = self._open()
        if self._framework == "np":
            return reader.load_numpy()
        from .torch import _load

        return _load(reader, self._device, False)

    def get_slice(self, name: str) -> TensorSlice:
        """The tensor ``name`` for reading in parts: ``get_slice(name)[index]``."""
        if not isinstance(name, str):
            raise TypeError(f"tensor name must be str, not {type(name).__name__}")
        return TensorSlice(self._open()._slice(name), self._framework, self._device)

    def close(self) -> None:
        """Releases the file; slices already taken stay usable."""
        self._reader.close()

    def __enter__(self) -> safe_open:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        state = "closed" if self._reader._closed else repr(self._reader._path)
        return f"<ztensor.safe_open {state} framework={self._framework!r}>"
