"""Tensor: one stored tensor of any layout as its named component arrays.

The object of the ztensor 1.2.3 API (``Reader.read``, ``Writer.write``),
kept for code migrating from it.
"""

from __future__ import annotations

import math
import operator
import sys

import numpy as np

from ._dtypes import _classify, to_storage
from ._ztensor import ZTensorError

_SPARSE = ("sparse_csr", "sparse_coo")


def primary_component(layout: str, components) -> str | None:
    """The component that carries the tensor's dtype and logical type, as in
    TensorMetadata: ``data`` (dense), ``values`` (sparse), otherwise the
    first name in sorted order."""
    if layout == "dense":
        return "data"
    if layout in _SPARSE:
        return "values"
    return min(components, default=None)


def is_torch_tensor(value) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor means torch is imported
    return torch is not None and isinstance(value, torch.Tensor)


def _kind(value):
    """(storage dtype, logical type) of an array, array-like or torch tensor,
    or None when the format cannot hold it."""
    if is_torch_tensor(value):
        from .torch import _TO_STORAGE

        return _TO_STORAGE.get(value.dtype)
    dt = value.dtype if isinstance(value, np.ndarray) else np.asarray(value).dtype
    return _classify(dt)


def _storage(tensor: str, cname: str, value):
    """(C-contiguous buffer, storage dtype, logical type) of one component."""
    if is_torch_tensor(value):
        from .torch import _dense_item

        _, buf, storage, _, logical = _dense_item(f"{tensor}/{cname}", value)
        return buf, storage, logical
    try:
        return to_storage(value if isinstance(value, np.ndarray) else np.asarray(value))
    except TypeError as e:
        raise TypeError(f"tensor {tensor!r}: component {cname!r}: {e}") from None


def _dtype_name(dtype) -> str:
    if isinstance(dtype, str):
        return dtype
    if _is_torch_dtype(dtype):
        from .torch import _TO_STORAGE

        if dtype in _TO_STORAGE:
            return _TO_STORAGE[dtype][0]
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def _is_torch_dtype(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.dtype)


def check_shape(shape, what: str) -> list:
    """A shape as a list of non-negative ints (ValueError/TypeError otherwise)."""
    try:
        dims = [operator.index(d) for d in shape]
    except TypeError:
        raise TypeError(f"{what}: shape must be a sequence of ints, not {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"{what}: shape {dims} has a negative dimension")
    return dims


def _typename(value) -> str:
    return type(value).__name__


def _numel(value) -> int:
    if is_torch_tensor(value):
        return value.numel()
    return int(np.size(value))


class Tensor:
    """A tensor of any layout as a dict of component arrays.

    ``Tensor({"data": array})`` is a dense tensor; sparse and quantized
    layouts name theirs (``values``/``indices``/``indptr`` for
    ``"sparse_csr"``, ``values``/``coords`` for ``"sparse_coo"``...) and need
    ``shape``. ``dtype`` and ``type`` default to the storage dtype and logical
    type of the primary component (``data``, ``values``, else the first name
    in sorted order), as in ``TensorMetadata``. A dense tensor's ``data`` must
    hold exactly ``prod(shape)`` elements.
    """

    __slots__ = ("shape", "dtype", "type", "format", "components", "attributes")

    def __init__(self, components, *, shape=None, dtype=None, format="dense", type=None, attributes=None):
        if not isinstance(components, dict):
            raise TypeError(f"components must be a dict, not {_typename(components)}")
        for cname in components:
            if not isinstance(cname, str):
                raise TypeError(f"component names must be str, not {_typename(cname)}")
        if not isinstance(format, str):
            raise TypeError(f"format must be a str, not {_typename(format)}")
        if attributes is not None and not isinstance(attributes, dict):
            raise TypeError(f"attributes must be a dict or None, not {_typename(attributes)}")
        primary = primary_component(format, components)
        main = components.get(primary)
        if shape is None:
            if format != "dense":
                raise ValueError(f"a {format} tensor needs an explicit shape")
            if main is None:
                raise ValueError("a dense tensor needs a 'data' component or an explicit shape")
            shape = np.shape(main) if not is_torch_tensor(main) else tuple(main.shape)
        self.shape = check_shape(shape, "Tensor")
        if format == "dense" and main is not None and _numel(main) != math.prod(self.shape):
            raise ValueError(
                f"Tensor: 'data' holds {_numel(main)} elements, shape {self.shape} "
                f"needs {math.prod(self.shape)}"
            )
        kind = _kind(main) if main is not None else None
        if dtype is not None:
            self.dtype = _dtype_name(dtype)
        elif kind is not None:
            self.dtype = kind[0]
        elif main is not None:
            self.dtype = str(getattr(main, "dtype", None) or np.asarray(main).dtype)
        else:
            self.dtype = "unknown"
        self.type = type if type is not None or kind is None else kind[1]
        self.format = format
        self.components = dict(components)
        self.attributes = dict(attributes) if attributes is not None else None

    def _dense(self, what: str):
        if self.format != "dense":
            raise ZTensorError(f"Tensor.{what}() needs a dense tensor, not {self.format}; use .components")
        if "data" not in self.components:
            raise ZTensorError(f"Tensor.{what}(): the dense tensor has no 'data' component")
        return self.components["data"]

    def numpy(self) -> np.ndarray:
        """The dense tensor's ``data`` as a NumPy array of its shape (no copy
        when ``data`` already is one)."""
        data = self._dense("numpy")
        if is_torch_tensor(data):
            raise ZTensorError("Tensor.numpy(): 'data' is a torch tensor; use Tensor.torch()")
        arr = data if isinstance(data, np.ndarray) else np.asarray(data)
        return arr if list(arr.shape) == self.shape else arr.reshape(self.shape)

    def torch(self, device="cpu"):
        """The dense tensor as a torch tensor sharing ``data``'s memory on CPU
        (every dtype ``ztensor.torch`` supports, bfloat16 and float8 included)."""
        from ._torch_device import parse_device
        from .torch import _as_tensor

        data = self._dense("torch")
        if is_torch_tensor(data):
            t = data.reshape(self.shape)
        else:
            buf, storage, logical = to_storage(self.numpy())
            t = _as_tensor(buf.reshape(-1).view(np.uint8), storage, logical, self.shape)
        device = parse_device(device)
        return t if t.device == device else t.to(device)

    def __repr__(self) -> str:
        return f"<ztensor.Tensor shape={self.shape} dtype={self.dtype!r} format={self.format!r}>"


def tensor_parts(name: str, tensor):
    """(layout, shape, components, attributes) of a Tensor or duck-typed
    object for ``_Writer.add_object``; components as (name, buffer, storage
    dtype, logical type), in the object's order."""
    try:
        layout, shape = tensor.format, tensor.shape
        components, logical, attributes = tensor.components, tensor.type, tensor.attributes
    except AttributeError as e:
        raise TypeError(
            f"tensor {name!r}: write() takes a ztensor.Tensor (or an object with .format, "
            f".shape, .type, .components and .attributes; {e}); "
            "use write_numpy() or write_torch() for arrays"
        ) from None
    if not isinstance(layout, str):
        raise TypeError(f"tensor {name!r}: format must be a str, not {_typename(layout)}")
    if not isinstance(components, dict) or not components:
        raise ValueError(f"tensor {name!r}: components must be a non-empty dict")
    shape = check_shape(shape, f"tensor {name!r}")
    primary = primary_component(layout, components)
    declared = getattr(tensor, "dtype", None)
    parts = []
    for cname, value in components.items():
        if not isinstance(cname, str):
            raise TypeError(f"tensor {name!r}: component names must be str, not {_typename(cname)}")
        buf, storage, own = _storage(name, cname, value)
        if cname == primary:
            # TensorMetadata's storage dtype, or the NumPy name of the array's dtype
            accepted = ("unknown", storage, str(getattr(value, "dtype", storage)))
            if declared is not None and declared not in accepted:
                raise ValueError(
                    f"tensor {name!r}: dtype {declared!r} does not match its {cname!r} "
                    f"component, which holds {storage}"
                )
            if logical is not None and own is not None and logical != own:
                raise ValueError(
                    f"tensor {name!r}: type {logical!r} does not match its {cname!r} "
                    f"component, which holds {own}"
                )
            own = own if logical is None else logical
        parts.append((cname, buf, storage, own))
    return layout, shape, parts, attributes
