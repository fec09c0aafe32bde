"""PyTorch front end: a drop-in replacement for ``safetensors.torch``.

Same names, parameters, defaults and errors, plus compression, zero-copy
copy-on-write loading, sparse tensors, every torch dtype, and staged
loading onto accelerators.
"""

from __future__ import annotations

try:
    import torch
except ImportError:  # pragma: no cover - exercised without torch installed
    raise ImportError("ztensor.torch needs PyTorch: pip install torch (or 'ztensor[torch]')") from None

import functools
from collections import defaultdict

import numpy as np

from .._options import check_metadata, compression_level, eager_backend
from .._reader import Reader
from .._sharded_save import save_sharded
from .._torch_device import parse_device, to_device
from .._writer import Writer, write_bytes, write_file
from .._ztensor import ArrayRead, ZTensorError, wrap_arrays

__all__ = ["save_file", "load_file", "save", "load", "save_model", "load_model"]

# torch dtype <-> (storage dtype, logical type)
_TO_STORAGE = {
    torch.float64: ("float64", None),
    torch.float32: ("float32", None),
    torch.float16: ("float16", None),
    torch.bfloat16: ("bfloat16", None),
    torch.int64: ("int64", None),
    torch.int32: ("int32", None),
    torch.int16: ("int16", None),
    torch.int8: ("int8", None),
    torch.uint8: ("uint8", None),
    torch.bool: ("bool", None),
    torch.complex64: ("float32", "complex64"),
    torch.complex128: ("float64", "complex128"),
}
# One byte per element; float4_e2m1fn_x2 packs two FP4 values in each byte
# (its shape counts bytes, as in torch; safetensors' F4 counts values).
for _name, _logical in (
    ("float8_e4m3fn", "f8_e4m3fn"),
    ("float8_e5m2", "f8_e5m2"),
    ("float8_e4m3fnuz", "f8_e4m3fnuz"),
    ("float8_e5m2fnuz", "f8_e5m2fnuz"),
    ("float8_e8m0fnu", "f8_e8m0fnu"),
    ("float4_e2m1fn_x2", "f4_e2m1fn_x2"),
):
    if hasattr(torch, _name):
        _TO_STORAGE[getattr(torch, _name)] = ("uint8", _logical)
for _name in ("uint16", "uint32", "uint64"):
    if hasattr(torch, _name):
        _TO_STORAGE[getattr(torch, _name)] = (_name, None)
_FROM_STORAGE = {v: k for k, v in _TO_STORAGE.items()}


def torch_dtype(storage: str, logical: str | None) -> torch.dtype:
    """The torch dtype of a stored tensor."""
    dt = _FROM_STORAGE.get((storage, logical)) or _FROM_STORAGE.get((storage, None))
    if dt is None:
        raise ZTensorError(
            f"PyTorch {torch.__version__} has no dtype for {storage}" + (f" ({logical})" if logical else "")
        )
    return dt


# ---------------------------------------------------------------- saving


def _storage_bytes(t: torch.Tensor):
    """A uint8 NumPy view of a CPU tensor's contiguous bytes (no copy when possible)."""
    if t.numel() == 0:
        return np.empty(0, np.uint8)
    flat = t.reshape(-1)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    return flat.view(torch.uint8).numpy()


def _dense_item(name: str, t: torch.Tensor):
    try:
        storage, logical = _TO_STORAGE[t.dtype]
    except KeyError:
        raise ZTensorError(f"tensor {name!r}: unsupported torch dtype {t.dtype}") from None
    t = t.detach().to("cpu").contiguous()
    return (name, _storage_bytes(t), storage, list(t.shape), logical)


def _sparse_parts(name: str, t: torch.Tensor):
    """(layout, components) of a COO or CSR tensor, indices as uint64."""
    t = t.detach().to("cpu")
    if t.dense_dim() or (t.layout == torch.sparse_csr and t.dim() != 2):
        raise ValueError(f"tensor {name!r}: hybrid or batched sparse tensors are not supported")
    storage, logical = _TO_STORAGE.get(t.dtype, (None, None))
    if storage is None:
        raise ZTensorError(f"tensor {name!r}: unsupported torch dtype {t.dtype}")

    def u64(x):
        return (
            x.contiguous().to(torch.int64).view(torch.uint64).numpy()
            if hasattr(torch, "uint64")
            else x.contiguous().to(torch.int64).numpy().view("uint64")
        )

    if t.layout == torch.sparse_coo:
        t = t.coalesce()
        values = t.values().contiguous()
        return "sparse_coo", [
            ("values", _storage_bytes(values), storage, logical),
            ("coords", u64(t.indices().reshape(-1)), "uint64", None),
        ]
    if t.layout == torch.sparse_csr:
        values = t.values().contiguous()
        return "sparse_csr", [
            ("values", _storage_bytes(values), storage, logical),
            ("indices", u64(t.col_indices()), "uint64", None),
            ("indptr", u64(t.crow_indices()), "uint64", None),
        ]
    raise ValueError(f"tensor {name!r}: layout {t.layout} is not supported")


def _storage_key(t: torch.Tensor):
    return (t.device, t.untyped_storage().data_ptr())


def _overlapping_groups(tensors: dict) -> list:
    """Groups of names whose memory overlaps (same storage, intersecting byte
    ranges). Disjoint slices of one storage do not count, as in safetensors."""
    by_storage = defaultdict(list)
    for name, t in tensors.items():
        if t.layout == torch.strided and t.device.type != "meta" and t.numel() > 0:
            start = t.data_ptr()
            span = sum((d - 1) * abs(st) for d, st in zip(t.shape, t.stride(), strict=True)) + 1
            by_storage[_storage_key(t)].append((start, start + span * t.element_size(), name))
    groups = []
    for ranges in by_storage.values():
        ranges.sort()
        current, end = [], -1
        for start, stop, name in ranges:
            if current and start < end:
                current.append(name)
                end = max(end, stop)
            else:
                if len(current) > 1:
                    groups.append(set(current))
                current, end = [name], stop
        if len(current) > 1:
            groups.append(set(current))
    return groups


class SharedTensorsError(ZTensorError, ValueError):
    """Tensors given to ``save_file``/``save`` share memory. A RuntimeError, as
    safetensors raises, and a ValueError, as ztensor 1.2.3 raised."""


def _check_shared(tensors: dict) -> None:
    """Refuses dense tensors whose memory overlaps, exactly like safetensors."""
    shared = _overlapping_groups(tensors)
    if shared:
        raise SharedTensorsError(
            # safetensors' message, byte for byte
            "\n            Some tensors share memory, this will lead to duplicate memory on disk and"
            f" potential differences when loading them again: {shared}.\n"
            "            A potential way to correctly save your model is to use `save_model`.\n"
            "            More information at https://huggingface.co/docs/safetensors/torch_shared_tensors\n"
            "            "
        )


def _check_tensors(tensors: dict) -> None:
    """A dict of str -> torch.Tensor, none sharing memory (safetensors' errors)."""
    if not isinstance(tensors, dict):
        raise ValueError(f"Expected a dict of [str, torch.Tensor] but received {type(tensors)}")
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, not {type(name).__name__}")
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"Key `{name}` is invalid, expected torch.Tensor but received {type(t)}")
    _check_shared(tensors)


def _nbytes(t: torch.Tensor) -> int:
    """The bytes a tensor's data takes: its elements, or a sparse tensor's
    values and (64-bit) indices."""
    if t.layout == torch.strided:
        return t.numel() * t.element_size()
    nnz = t._nnz()
    if t.layout == torch.sparse_csr:
        return nnz * (t.element_size() + 8) + (t.shape[0] + 1) * 8
    return nnz * (t.element_size() + 8 * t.sparse_dim())


def _write(w: Writer, tensors: dict, compression) -> None:
    _check_tensors(tensors)
    level = compression_level(compression)
    dense = []
    for name, t in tensors.items():
        if t.layout == torch.strided:
            dense.append(_dense_item(name, t))
            continue
        if dense:
            w._add_dense(dense, level, "none")
            dense = []
        layout, parts = _sparse_parts(name, t)
        w._add_object(name, list(t.shape), layout, parts, level, "none")
    if dense:
        w._add_dense(dense, level, "none")


def save_file(tensors: dict, filename, metadata=None, compression=False, *, max_shard_size=None) -> None:
    """Saves tensors to a ``.zt`` file, replacing an existing file atomically.

    ``metadata``: a dict (str -> str as in safetensors, or JSON-like values),
    returned by ``Reader(filename).metadata()``. ``compression``: False, True
    (zstd level 3) or a level 1-22.

    ``max_shard_size`` (an int in bytes, or ``"5GB"`` = 5*10^9, ``"5GiB"`` =
    5*2^30, KB/MB/TB, KiB/MiB/TiB): when the tensors' bytes exceed it, they
    are split greedily in key order into ``<stem>-00001-of-0000N<ext>`` files
    beside ``filename`` plus the index ``<filename>.index.json`` (Hugging
    Face's layout; ``metadata`` goes in the index beside ``total_size``). A
    tensor larger than the limit gets a shard of its own. When everything
    fits, ``filename`` is written as without the option.
    """
    metadata = check_metadata(metadata)
    if max_shard_size is None:
        write_file(filename, metadata, lambda w: _write(w, tensors, compression))
        return
    _check_tensors(tensors)
    save_sharded(
        filename,
        list(tensors),
        [_nbytes(t) for t in tensors.values()],
        lambda w, names: _write(w, {n: tensors[n] for n in names}, compression),
        metadata,
        max_shard_size,
    )


def save(tensors: dict, metadata=None, compression=False) -> bytes:
    """Serialises tensors to the bytes of a ``.zt`` file."""
    return write_bytes(check_metadata(metadata), lambda w: _write(w, tensors, compression))


# ---------------------------------------------------------------- loading


def _as_tensor(buf, storage: str, logical: str | None, shape) -> torch.Tensor:
    dtype = torch_dtype(storage, logical)
    if len(buf) == 0:
        return torch.empty(0, dtype=dtype).reshape(shape)
    return torch.frombuffer(buf, dtype=torch.uint8).view(dtype).reshape(shape)


def _sparse_tensor(reader: Reader, name: str, meta, copy: bool) -> torch.Tensor:
    comps = meta.components
    values_c = comps["values"]
    values = _as_tensor(
        reader._read_component(name, "values", copy), values_c["dtype"], values_c["type"], (-1,)
    )

    def index(cname):
        # Our writer stores u64 (read as int64: a value past 2**63 turns
        # negative and fails the check below); other writers, ztensor 1.x
        # included, store whatever integer type the caller had.
        dtype = comps[cname]["dtype"]
        if dtype not in _INDEX_DTYPES:
            raise ZTensorError(
                f"{reader._path}: tensor '{name}': {meta.format} component "
                f"'{cname}' holds {dtype}, not integers"
            )
        raw = reader._read_component(name, cname, copy)
        if dtype in ("uint64", "int64"):
            return _as_tensor(raw, "int64", None, (-1,))
        return _as_tensor(raw, dtype, None, (-1,)).to(torch.int64)

    # A hostile file can hold out-of-range indices: have torch check them,
    # since unchecked sparse tensors can read out of bounds.
    try:
        if meta.format == "sparse_coo":
            coords = index("coords").reshape(len(meta.shape), -1)
            return torch.sparse_coo_tensor(
                coords,
                values,
                meta.shape,
                check_invariants=True,
                is_coalesced=_is_coalesced(coords, meta.shape),
            )
        return torch.sparse_csr_tensor(
            index("indptr"), index("indices"), values, meta.shape, check_invariants=True
        )
    except ZTensorError:
        raise
    except RuntimeError as e:
        raise ZTensorError(f"{reader._path}: tensor '{name}': invalid {meta.format} structure: {e}") from None


_INDEX_DTYPES = ("uint64", "int64", "uint32", "int32", "uint16", "int16", "uint8", "int8")


def _is_coalesced(coords: torch.Tensor, shape) -> bool:
    """True when the coordinates are strictly increasing in row-major order
    (what our writer stores), checked rather than trusted."""
    if coords.shape[1] < 2:
        return True
    if ((coords < 0).any() or (coords >= torch.tensor(shape).reshape(-1, 1)).any()).item():
        return False  # out of range: let torch's invariant check report it
    linear = torch.zeros(coords.shape[1], dtype=torch.int64)
    for d, extent in enumerate(shape):
        linear = linear * extent + coords[d]
    return bool((linear[1:] > linear[:-1]).all())


# torch dtypes torch.from_numpy makes from a NumPy dtype of the same name;
# the others come from a same-sized integer array, reinterpreted.
_FROM_NUMPY = {
    dt: np.dtype(str(dt).removeprefix("torch."))
    for dt in (torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16)
    + (torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128)
}


@functools.cache
def _numpy_for_torch(storage: str, logical: str | None):
    """For ``wrap_arrays``: the NumPy dtype to read a stored tensor as, or
    ``(dtype, torch dtype)`` when the NumPy array must be viewed as another."""
    dt = torch_dtype(storage, logical)
    direct = _FROM_NUMPY.get(dt)
    return direct if direct is not None else (np.dtype(f"i{dt.itemsize}"), dt)


def _wrap(arrays: list) -> dict:
    """``{name: tensor}`` of read records: one native pass over a native
    reader's, one by one for a Python source's (a DCP folder's stitched tensors)."""
    if arrays and not isinstance(arrays[0], ArrayRead):
        return {a.name: _as_tensor(a.buffer, a.dtype, a.logical_type, a.shape) for a in arrays}
    return wrap_arrays(arrays, _numpy_for_torch, torch.from_numpy)


def _load(reader: Reader, device, copy: bool, names=None) -> dict:
    """The tensors named (None: all, in file order) as torch tensors."""
    device = parse_device(device)
    # Host copies are made only when asked for on CPU: a device load streams
    # straight from the mapping through pinned staging buffers.
    host_copy = bool(copy) and device.type == "cpu"
    try:
        # Every tensor dense (the usual case): one native call builds them all.
        out = _wrap(reader._read_arrays(names, host_copy))
    except ZTensorError:
        pass  # a layout other than dense, or a damaged tensor: the general path sorts it out
    else:
        return out if device.type == "cpu" else to_device(out, device)
    order = reader._names_in_file_order() if names is None else names
    metas = {name: reader.metadata(name) for name in order}
    for name, meta in metas.items():
        if meta.format not in ("dense", "sparse_coo", "sparse_csr"):
            raise ZTensorError(
                f"tensor {name!r} has layout {meta.format}, which has no torch equivalent;"
                " use Reader.read_components()"
            )
    dense = [n for n in order if metas[n].format == "dense"]
    arrays = _wrap(reader._read_arrays(dense, host_copy))
    out = {
        name: arrays[name] if name in arrays else _sparse_tensor(reader, name, metas[name], host_copy)
        for name in order
    }
    return out if device.type == "cpu" else to_device(out, device)


_DEQUANTIZE_TORCH = {torch.float32: "float32", torch.float16: "float16"}


def _dequantize_name(value):
    """``dequantize=`` accepting torch dtypes too (others as in ``Reader``)."""
    if isinstance(value, torch.dtype):
        if value not in _DEQUANTIZE_TORCH:
            raise ValueError(f"dequantize must be torch.float32 or torch.float16, not {value}")
        return _DEQUANTIZE_TORCH[value]
    return value


def load_file(
    filename,
    device="cpu",
    copy: bool = False,
    *,
    dequantize=None,
    backend: str = "mmap",
    strict: bool = False,
    storage_options=None,
) -> dict:
    """Loads every tensor of a file as torch tensors, in file order.

    ``copy=False`` (default): zero-copy, writable copy-on-write views of the
    file (in-place ops never touch it). ``copy=True``: independent tensors.
    ``device``: "cpu", "cuda:N", an int (CUDA index) or any torch device.
    ``dequantize=None | torch.float32 | torch.float16`` (or ``"float32"``,
    ``"float16"``): GGUF quantized tensors as dense float tensors instead of
    raw bytes (see ``ztensor.Reader``); ignored by other formats.
    ``backend``: ``"mmap"`` (default) or ``"pread"``, as in ``ztensor.numpy.load_file``.
    ``strict=True``: a pickle naming a global the reader does not interpret
    raises ``ZTensorError`` instead of a ``UserWarning`` (see ``ztensor.Reader``).
    ``filename`` may be a URL of a ``.zt`` or ``.safetensors`` file, read
    remotely and configured by ``storage_options`` (see ``ztensor.Reader``).
    """
    with Reader(
        filename,
        eager=eager_backend(backend),
        dequantize=_dequantize_name(dequantize),
        strict=strict,
        storage_options=storage_options,
    ) as r:
        return _load(r, device, copy)


def load(data: bytes, *, dequantize=None) -> dict:
    """Loads every tensor from the bytes of a tensor file (any format, on
    CPU); ``dequantize`` as in ``load_file``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    r = Reader._from_bytes(data, _dequantize_name(dequantize))
    try:
        return _load(r, "cpu", False)
    finally:
        r.close()


# ---------------------------------------------------------------- models


def _covers_storage(t: torch.Tensor) -> bool:
    return (
        t.data_ptr() == t.untyped_storage().data_ptr()
        and t.nelement() * t.element_size() == t.untyped_storage().nbytes()
    )


def _names_to_remove(state_dict: dict, preferred=()) -> dict:
    """For each group of tensors sharing storage: kept name -> names to drop."""
    preferred = set(preferred)
    result = {}
    for group in _overlapping_groups(state_dict):
        complete = sorted(n for n in group if _covers_storage(state_dict[n]))
        if not complete:
            raise RuntimeError(
                "Error while trying to find names to remove to save state dict, but found no suitable name"
                f" to keep for saving amongst: {sorted(group)}. None is covering the entire storage."
                " Refusing to save/load"
                " the model since you could be storing much more memory than needed. Please refer to"
                " https://huggingface.co/docs/safetensors/torch_shared_tensors for more information."
                " Or open an issue."
            )
        keep = next((n for n in complete if n in preferred), complete[0])
        result[keep] = sorted(n for n in group if n != keep)
    return result


def save_model(
    model: torch.nn.Module, filename, metadata=None, force_contiguous: bool = True, *, max_shard_size=None
) -> None:
    """Saves a model's state dict, storing tied/shared tensors once.

    The names dropped for sharing are recorded in the file metadata as
    ``{dropped_name: kept_name}``, which ``load_model`` and readers can see
    (in the index's metadata when ``max_shard_size`` splits the checkpoint,
    as ``save_file`` does).
    """
    state_dict = model.state_dict()
    to_remove = _names_to_remove(state_dict)
    metadata = dict(check_metadata(metadata) or {})
    for kept, dropped in to_remove.items():
        for name in dropped:
            metadata.setdefault(name, kept)
            del state_dict[name]
    if force_contiguous:
        state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    try:
        save_file(state_dict, filename, metadata=metadata or None, max_shard_size=max_shard_size)
    except ValueError as e:
        raise ValueError(f"{e}. Consider passing `force_contiguous=True` to save_model.") from e


def load_model(
    model: torch.nn.Module,
    filename,
    strict: bool = True,
    device="cpu",
    copy: bool = False,
    *,
    backend: str = "mmap",
):
    """Loads a file into ``model``; returns ``(missing, unexpected)`` like safetensors.

    Tied weights stay tied (the shared parameter is filled once).
    """
    state_dict = load_file(filename, device=device, copy=copy, backend=backend)
    model_state = model.state_dict()
    to_remove = _names_to_remove(model_state, preferred=state_dict.keys())
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = set(missing)
    for dropped in to_remove.values():
        for name in dropped:
            if name not in missing:
                unexpected.append(name)
            else:
                missing.remove(name)
    if strict and (missing or unexpected):
        missing_keys = ", ".join(f'"{k}"' for k in sorted(missing))
        unexpected_keys = ", ".join(f'"{k}"' for k in sorted(unexpected))
        error = f"Error(s) in loading state_dict for {model.__class__.__name__}:"
        if missing:
            error += f"\n    Missing key(s) in state_dict: {missing_keys}"
        if unexpected:
            error += f"\n    Unexpected key(s) in state_dict: {unexpected_keys}"
        raise RuntimeError(error)
    return missing, unexpected
