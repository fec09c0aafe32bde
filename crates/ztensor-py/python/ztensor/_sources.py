"""Which native reader opens a path: the one place that decides.

``open_native(path, ...)`` returns the native object a ``Reader`` wraps
(and through it ``safe_open``, ``ztensor.torch`` and ``ztensor.numpy``):

- an HDF5 file (its signature at offset 0): the native ``_LazyHdf5Reader``,
  which answers a question about one name without walking the file (as
  h5py opens lazily) and opens the full ``_Reader`` on the first question
  about every name (``names``, ``__len__``, ``attributes``...);
- a tensor file of any other format: the native ``_Reader``;
- a sharded checkpoint's index (``model.safetensors.index.json``,
  ``pytorch_model.bin.index.json``, ``model.zt.index.json``) or a directory
  holding exactly one such index: the native ``_ShardedReader``, which
  presents the tensors of every shard as one set of names;
- a folder saved by ``ztensor.torch.dcp`` (it holds ``ztensor-dcp.json``):
  ``_dcp_source.DcpSource``, the checkpoint's global tensors stitched from
  their chunks when read (checked before the sharded branch takes folders).

Every object returned has the methods below (the "source protocol"); the
front ends call nothing else on it. A new kind of source (a DCP
folder) adds a branch here returning an object with them. A remote URL is
one: a native ``_Reader`` whose bytes are fetched by ranges (``_remote``).

Attributes and lifetime:
    ``path`` (str, for messages), ``format`` (str: ``"zt"``, ``"safetensors"``,
    ..., ``"sharded"``), ``version`` (str), ``closed`` (bool), ``close()``
    (idempotent; arrays and slices already handed out stay valid).
Names (sharded: from the index, no shard is opened):
    ``names()`` -> list of str, sorted; ``__len__()``; ``contains(name)`` -> bool;
    ``names_in_file_order()`` -> list of str, the order to read everything in.
Metadata:
    ``attributes()`` -> dict, the file-level metadata (empty when none);
    ``info(name)`` -> an object with ``name, shape, dtype, logical_type,
    layout, components, attributes`` (``_ztensor.TensorInfo``); KeyError for
    an unknown name; ``skipped_globals()`` -> list of str (pickles: globals
    whose objects were skipped, for one UserWarning; else empty).
Reading:
    ``read_arrays(names, copy)`` -> list of objects with ``name, buffer,
    dtype, logical_type, shape`` (``_ztensor.ArrayRead``), the dense tensors
    named (``None``: all, in ``names_in_file_order()``), ``buffer`` exposing
    the bytes by the buffer protocol (``copy=True``: memory it owns);
    ``read_component(name, component, copy)`` -> a buffer of one component's
    bytes (any layout); ``slice(name)`` -> an object with ``name, shape,
    dtype, type`` and ``read(index, numpy)`` -> ``(buffer, shape)`` for
    ``safe_open(...).get_slice`` (``_ztensor._Slice``);
    ``verify()`` -> list of str, the problems found (empty: sound).
Errors: ``ZTensorError`` for bad content (naming the file and the tensor),
``OSError`` subclasses (``FileNotFoundError``...) for the file system,
``KeyError`` for an unknown tensor name.
"""

from __future__ import annotations

import os

from ._dcp_source import DcpSource, is_dcp_dir
from ._options import fspath
from ._remote import is_url, no_storage_options, open_remote
from ._ztensor import _LazyHdf5Reader, _Reader, _ShardedReader

#: The 8 bytes an HDF5 superblock starts with (``ztensor_formats::detect``).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def open_native(path, *, eager: bool = False, dequantize=None, strict: bool = False, storage_options=None):
    """The native reader of ``path`` (see the module docstring).

    ``eager``, ``dequantize`` (``None``, ``"float32"`` or ``"float16"``, already
    normalised) and ``strict`` as in ``Reader``; a sharded reader applies them
    to every shard. A URL (``s3://``, ``http(s)://``...) of a ``.zt`` or
    ``.safetensors`` file is read remotely, configured by ``storage_options``
    (see ``_remote``); the other options do not apply to it.
    """
    if is_url(path):
        return open_remote(path, storage_options)
    no_storage_options(path, storage_options)
    path = fspath(path)
    if is_dcp_dir(path):
        return DcpSource(path, eager)
    if _is_sharded(path):
        return _ShardedReader(path, eager, dequantize, strict)
    if _is_hdf5(path):
        return _LazyHdf5Reader(path, eager, dequantize, strict)
    return _Reader(path, eager, dequantize, strict)


def _is_sharded(path: str) -> bool:
    """An index file (``*.index.json``) or a directory (which must hold one)."""
    return path.endswith(".index.json") or os.path.isdir(path)


def _is_hdf5(path: str) -> bool:
    """An HDF5 signature at offset 0, by content whatever the extension (a
    superblock after a userblock is left to ``_Reader``, which finds it)."""
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(8) == _HDF5_SIGNATURE
    except OSError:
        return False  # _Reader raises it with its path
