"""Writer: builds a .zt file tensor by tensor, published atomically."""

from __future__ import annotations

import operator

import numpy as np

from ._dtypes import to_storage
from ._options import check_metadata, compression_level, fspath
from ._tensor import is_torch_tensor, tensor_parts
from ._ztensor import _Writer


class Writer:
    """Writes a ``.zt`` file.

    Data goes to a hidden temporary file next to ``path``; ``finish()``
    renames it over ``path`` atomically. If the ``with`` block raises, or
    the writer is dropped unfinished, nothing is published and any existing
    file at ``path`` is left as it was.

    ``mode="a"`` adds to the existing ``.zt`` file ``path`` in place instead
    (see ``_append.py``): new tensors go after its old end, ``remove(name)``
    drops one, ``metadata`` (if given) replaces the file metadata, and
    ``finish()`` commits, crash-safely. The old bytes are never written, so
    arrays already read from the file stay valid.
    """

    def __init__(self, path, *, metadata=None, alignment: int = 64, mode: str = "w"):
        alignment = operator.index(alignment)
        if alignment < 64 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two of at least 64, not {alignment}")
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' (write a new file) or 'a' (append), not {mode!r}")
        if mode == "a" and path is None:
            raise ValueError("mode='a' needs the path of an existing file")
        metadata = check_metadata(metadata)
        self._w = _Writer(None if path is None else fspath(path), alignment, mode == "a")
        if metadata is not None:
            self._w.set_attributes(metadata)

    @classmethod
    def append(cls, path) -> Writer:
        """Opens an existing ``.zt`` file to add tensors to it: ``Writer(path, mode="a")``."""
        return cls(path, mode="a")

    def remove(self, name: str) -> None:
        """Drops a tensor from the manifest to be written (KeyError if absent). In
        append mode its bytes stay in the file until ``zt compact``; adding the
        name again replaces the tensor."""
        if not isinstance(name, str):
            raise TypeError(f"tensor name must be str, not {type(name).__name__}")
        self._w.remove(name)

    @classmethod
    def _in_memory(cls, metadata=None) -> Writer:
        return cls(None, metadata=metadata)

    def add(self, name: str, data, compress=None, checksum: str = "none") -> None:
        """Adds a dense tensor from a NumPy array (any layout; made contiguous)."""
        level = _options(name, compress, checksum)
        arr = data if isinstance(data, np.ndarray) else np.asarray(data)
        self._add_dense([(name, *_prepare(arr))], level, checksum)

    # --- the ztensor 1.2.3 API ----------------------------------------
    def write_numpy(self, name: str, data, *, compress=None, checksum: str = "none") -> None:
        """Adds a dense tensor from a NumPy array or anything ``np.asarray``
        takes (lists, scalars: a 0-d array keeps shape ``()``)."""
        self.add(name, data, compress, checksum)

    def write_torch(self, name: str, data, *, compress=None, checksum: str = "none") -> None:
        """Adds a torch tensor of any supported dtype, on any device, strided
        (any layout, ``requires_grad`` too) or sparse COO/CSR."""
        level = _options(name, compress, checksum)
        if not is_torch_tensor(data):
            raise TypeError(f"tensor {name!r}: write_torch takes a torch.Tensor, not {type(data).__name__}")
        import torch

        from .torch import _dense_item, _sparse_parts

        if data.layout == torch.strided:
            self._add_dense([_dense_item(name, data)], level, checksum)
        else:
            layout, parts = _sparse_parts(name, data)
            self._add_object(name, list(data.shape), layout, parts, level, checksum)

    def write(self, name: str, tensor, *, compress=None, checksum: str = "none") -> None:
        """Adds a ``ztensor.Tensor`` (or an object with ``.format``, ``.shape``,
        ``.type``, ``.components`` and ``.attributes``) of any layout: dense,
        ``sparse_csr``, ``sparse_coo``, ``quantized_group``... Components are
        written in their dict order; the shape and structure are checked."""
        level = _options(name, compress, checksum)
        layout, shape, parts, attributes = tensor_parts(name, tensor)
        self._add_object(name, shape, layout, parts, level, checksum, attributes)

    def _add_many(self, tensors: dict, compress=None, checksum: str = "none") -> None:
        """Adds every (name, ndarray) of a dict in one native call."""
        level = compression_level(compress, "compress")
        items = []
        for name, arr in tensors.items():
            if not isinstance(name, str):
                raise TypeError(f"tensor name must be str, not {type(name).__name__}")
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"tensor {name!r} is a {type(arr).__name__}, expected numpy.ndarray")
            storage, dtype, logical = to_storage(arr)
            items.append((name, storage, dtype, arr.shape, logical))
        self._add_dense(items, level, checksum)

    # --- for the front ends (torch.py, _append.py): the native writer stays here
    def _add_dense(self, items: list, level, checksum: str) -> None:
        """Adds dense tensors, each given as ``(name, storage array, dtype,
        shape, logical type)``, in one native call."""
        self._w.add_many(items, level, checksum)

    def _add_object(
        self, name: str, shape, layout: str, components: list, level, checksum: str, attributes=None
    ) -> None:
        """Adds a tensor of any layout from its components, each given as
        ``(component name, storage array, dtype, logical type)``."""
        self._w.add_object(name, shape, layout, components, level, checksum, attributes)

    def finish(self) -> int:
        """Writes the manifest, publishes the file and returns its size in bytes."""
        return self._w.finish()

    def _finish_bytes(self) -> bytes:
        return self._w.finish()

    def discard(self) -> None:
        """Abandons the file: nothing is published (an append is undone)."""
        self._w.discard()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.discard()
        elif not self._w.finished:
            self.finish()
        return False

    def __repr__(self) -> str:
        return f"<ztensor.Writer ({'finished' if self._w.finished else 'open'})>"


def _options(name, compress, checksum: str):
    """Checks a tensor name and the checksum; returns the compression level."""
    if not isinstance(name, str):
        raise TypeError(f"tensor name must be str, not {type(name).__name__}")
    if not isinstance(checksum, str):
        raise TypeError(f"checksum must be a str, not {type(checksum).__name__}")
    return compression_level(compress, "compress")


def _prepare(arr: np.ndarray):
    """(storage array, dtype, shape, logical type) for the native writer."""
    storage, dtype, logical = to_storage(arr)
    return storage, dtype, list(arr.shape), logical


def write_file(filename, metadata, fill) -> None:
    """Creates a file with ``fill(writer)`` and publishes it atomically;
    nothing is published if ``fill`` raises."""
    w = Writer(filename, metadata=metadata)
    try:
        fill(w)
    except BaseException:
        w.discard()
        raise
    w.finish()


def write_bytes(metadata, fill) -> bytes:
    """The bytes of a file made with ``fill(writer)``."""
    w = Writer._in_memory(metadata=metadata)
    fill(w)
    return w._finish_bytes()
