"""``remove_tensors`` and ``replace_tensor``: the ztensor 1.2.3 names, made safe.

``remove_tensors`` writes a new file (atomically; it may be the input) and
copies every other tensor as stored. ``replace_tensor`` is an append (see
``Writer(path, mode="a")``): the new data goes after the old end of the file
with a new manifest, so the old bytes, which zero-copy arrays may be
viewing, are never overwritten, and a crash leaves the old content.
"""

from __future__ import annotations

import numpy as np

from ._dtypes import numpy_dtype
from ._options import compression_level, fspath
from ._reader import Reader
from ._tensor import is_torch_tensor
from ._writer import Writer, _prepare
from ._ztensor import ZTensorError, _remove_tensors


def remove_tensors(input, output, names) -> None:
    """Writes ``output`` with every tensor of ``input`` except ``names`` (a list).

    Tensors keep their stored bytes, encoding and digest (digests are checked
    while copying); the file metadata is kept. Every name must be in the file
    (``KeyError`` otherwise, before anything is written). ``output`` appears
    atomically and may be ``input``.
    """
    if not isinstance(names, (list, tuple)):
        raise TypeError(f"names must be a list of str, not {type(names).__name__}")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"tensor names must be str, not {type(n).__name__}")
    _remove_tensors(fspath(input), fspath(output), list(names))


def replace_tensor(path, name, data) -> None:
    """Replaces the data of the dense tensor ``name`` of the ``.zt`` file ``path``.

    ``data`` must have the tensor's dtype and shape (lists and scalars are
    converted to its dtype). The tensor keeps its encoding (zstd at level 3
    when it was compressed), digest algorithm and attributes. The new bytes
    are appended with a new manifest; the old ones stay in the file, unused,
    until ``zt compact``.
    """
    if not isinstance(name, str):
        raise TypeError(f"tensor name must be str, not {type(name).__name__}")
    path = fspath(path)
    with Reader(path) as r:
        if name not in r:
            raise KeyError(f"no tensor named {name!r} in {path}")
        meta = r.metadata(name)
    shape, layout = meta.shape, meta.format
    if layout != "dense":
        raise ZTensorError(
            f"{path}: tensor {name!r} is {layout}; replace_tensor replaces dense tensors only "
            "(use Writer(path, mode='a') with remove() and write())"
        )
    want = numpy_dtype(meta.dtype, meta.type)
    if is_torch_tensor(data):
        data = data.detach().to("cpu")
        if str(data.dtype).removeprefix("torch.") != want.name:
            raise TypeError(f"tensor {name!r} is {want.name}; the replacement is {data.dtype}")
        from .torch import _dense_item

        item = _dense_item(name, data)
    else:
        arr = data if isinstance(data, np.ndarray) else np.asarray(data, dtype=want)
        if arr.dtype != want:
            raise TypeError(
                f"tensor {name!r} is {want.name}; the replacement is {arr.dtype.name} "
                "(convert it, or remove and add the tensor to change its dtype)"
            )
        item = (name, *_prepare(arr))
    if list(item[3]) != list(shape):
        raise ValueError(
            f"tensor {name!r} has shape {tuple(shape)}; the replacement has "
            f"{tuple(item[3])} (remove and add the tensor to change its shape)"
        )
    stored = meta.components["data"]
    level = compression_level(True) if stored["encoding"] == "zstd" else None  # the default zstd level
    digest = stored["digest"] or ""
    checksum = next((k for k in ("crc32c", "sha256") if digest.startswith(k + ":")), "none")
    _, storage, sdtype, shape_, slogical = item
    with Writer(path, mode="a") as w:
        w.remove(name)
        w._add_object(
            name, shape_, "dense", [("data", storage, sdtype, slogical)], level, checksum, meta.attributes
        )
