"""NumPy front end, API-compatible with ``safetensors.numpy``."""

from __future__ import annotations

from ._options import check_metadata, compression_level, eager_backend
from ._reader import Reader
from ._sharded_save import save_sharded
from ._writer import Writer, write_bytes, write_file

__all__ = ["save_file", "load_file", "save", "load"]


def _write(writer: Writer, tensors, compression) -> None:
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of name -> numpy.ndarray, not {type(tensors).__name__}")
    writer._add_many(tensors, compress=compression_level(compression))


def save_file(tensors: dict, filename, metadata=None, compression=False, *, max_shard_size=None) -> None:
    """Saves arrays to a ``.zt`` file (replacing an existing file atomically).

    ``max_shard_size`` (bytes, or ``"5GB"``, ``"512MiB"``...): split into
    shards of at most that many tensor bytes plus ``<filename>.index.json``
    when they do not fit in one (see ``ztensor.torch.save_file``).
    """
    if max_shard_size is None:
        write_file(filename, metadata, lambda w: _write(w, tensors, compression))
        return
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of name -> numpy.ndarray, not {type(tensors).__name__}")
    save_sharded(
        filename,
        list(tensors),
        [getattr(a, "nbytes", 0) for a in tensors.values()],
        lambda w, names: _write(w, {n: tensors[n] for n in names}, compression),
        check_metadata(metadata),
        max_shard_size,
    )


def save(tensors: dict, metadata=None, compression=False) -> bytes:
    """Serialises arrays to the bytes of a ``.zt`` file."""
    return write_bytes(metadata, lambda w: _write(w, tensors, compression))


def load_file(
    filename,
    copy: bool = False,
    *,
    dequantize=None,
    backend: str = "mmap",
    strict: bool = False,
    storage_options=None,
) -> dict:
    """Loads every tensor of a file, in file order.

    ``copy=False`` (default): zero-copy, writable copy-on-write views of the
    file. ``copy=True``: arrays that own their memory.
    ``dequantize=None | "float32" | "float16"`` (or ``np.float32``/``np.float16``):
    GGUF quantized tensors as dense float arrays instead of raw bytes (see
    ``Reader``); ignored by other formats.
    ``backend="mmap"`` (default) maps the file; ``"pread"`` reads it with
    pread into memory the arrays own (``Reader(..., eager=True)``), as in
    safetensors 0.8.
    ``strict=True``: a pickle naming a global the reader does not interpret
    raises ``ZTensorError`` instead of a ``UserWarning`` (see ``Reader``).
    ``filename`` may be a URL of a ``.zt`` or ``.safetensors`` file, read
    remotely and configured by ``storage_options`` (see ``Reader``).
    """
    with Reader(
        filename,
        eager=eager_backend(backend),
        dequantize=dequantize,
        strict=strict,
        storage_options=storage_options,
    ) as r:
        return r.load_numpy(copy=copy)


def load(data: bytes, *, dequantize=None) -> dict:
    """Loads every tensor from the bytes of a tensor file (any format);
    ``dequantize`` as in ``load_file``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    r = Reader._from_bytes(data, dequantize)
    try:
        return r.load_numpy()
    finally:
        r.close()
