"""A torch.distributed.checkpoint (DCP) folder written by ``ztensor.torch.dcp``,
read as plain full tensors.

The folder holds one or more ``.zt`` data files per rank, each tensor in them
one chunk (a box) of a global tensor, and ``ztensor-dcp.json``, written last,
which describes the checkpoint: the global tensors (shape, dtype, chunks) and
where each chunk lies (file, tensor name). ``DcpSource`` presents the global
tensors with the methods the front ends (``Reader``, ``safe_open``,
``ztensor.torch``) call on a native reader, stitching each tensor from its
chunks when it is read; a selection reads only the chunk bytes it covers.
No torch is imported here: ``ztensor.open(dcp_dir)`` works with NumPy alone.
"""

from __future__ import annotations

import json
import math
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._options import compression_level, fspath
from ._ztensor import ZTensorError

METADATA_FILE = "ztensor-dcp.json"
FORMAT = "ztensor-dcp"
VERSION = 1

_ITEMSIZE = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint64": 8,
    "uint32": 4,
    "uint16": 2,
    "uint8": 1,
    "bool": 1,
}
# Stitching moves elements as opaque units of their size: no dtype library needed.
_RAW = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}


def is_dcp_dir(path) -> bool:
    """True for a folder holding a ``ztensor.torch.dcp`` checkpoint description."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, METADATA_FILE))


def plain_file_name(where: str, name) -> str:
    """A data file named by a description: a plain name inside the folder
    (a damaged or hostile description must not reach other files)."""
    if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
        raise ZTensorError(f"{where}: data file name {name!r} is not a plain file name in the folder")
    return name


def digest(body: dict) -> int:
    """The CRC-32 the description carries over its own canonical JSON."""
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def read_description(directory: str) -> dict:
    """The checked checkpoint description of ``directory`` (ZTensorError if
    it is missing, damaged or of another format)."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, "No such checkpoint folder", directory)
    path = os.path.join(directory, METADATA_FILE)
    if not os.path.isfile(path):
        raise ZTensorError(
            f"{directory}: no {METADATA_FILE}, so this is not a complete ztensor DCP checkpoint "
            "(the coordinator writes it last: a save that did not finish leaves none)"
        )
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        crc = doc.pop("crc32")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ZTensorError(f"{path}: not a ztensor DCP description ({e})") from None
    if doc.get("format") != FORMAT:
        raise ZTensorError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    if crc != digest(doc):
        raise ZTensorError(f"{path}: checksum mismatch: the checkpoint description is damaged")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise ZTensorError(f"{path}: version {doc.get('version')!r} is newer than this ztensor reads")
    return doc


def _raw_dtype(storage: str, logical: str | None) -> np.dtype:
    size = _ITEMSIZE.get(storage)
    if size is None:
        raise ZTensorError(f"unsupported storage dtype {storage!r}")
    if logical in ("complex64", "complex128"):
        size *= 2
    return _RAW.get(size) or np.dtype(f"V{size}")


class _Global:
    """One global tensor: its dtype, shape and chunks ``(offsets, sizes, file, name)``."""

    __slots__ = ("name", "shape", "dtype", "type", "chunks", "raw")

    def __init__(self, where: str, name: str, entry: dict, storage: dict):
        self.name = name
        try:
            self.shape = [int(d) for d in entry["size"]]
            self.dtype, self.type = entry["zt_dtype"], entry["zt_type"]
            self.chunks = []
            for c in entry["chunks"]:
                offsets, sizes = [int(o) for o in c["offsets"]], [int(s) for s in c["sizes"]]
                file, tname = storage[(name, tuple(offsets))]
                self.chunks.append((offsets, sizes, file, tname))
        except (KeyError, TypeError, ValueError) as e:
            raise ZTensorError(f"{where}: tensor {name!r}: malformed entry ({e!r})") from None
        self.raw = _raw_dtype(self.dtype, self.type)
        covered = 0
        for offsets, sizes, _, _ in self.chunks:
            if (
                len(offsets) != len(self.shape)
                or len(sizes) != len(self.shape)
                or any(
                    o < 0 or s < 0 or o + s > d for o, s, d in zip(offsets, sizes, self.shape, strict=True)
                )
            ):
                raise ZTensorError(
                    f"{where}: tensor {name!r}: chunk at {offsets} of size {sizes} lies outside "
                    f"its shape {self.shape}"
                )
            covered += math.prod(sizes)
        if covered != math.prod(self.shape):
            raise ZTensorError(
                f"{where}: tensor {name!r}: its chunks hold {covered} elements, its shape "
                f"{self.shape} has {math.prod(self.shape)}"
            )


class _Array:
    """One stitched tensor, as ``_Reader.read_arrays`` gives them."""

    __slots__ = ("name", "buffer", "dtype", "logical_type", "shape")

    def __init__(self, g: _Global, data: np.ndarray):
        self.name, self.dtype, self.logical_type, self.shape = g.name, g.dtype, g.type, list(data.shape)
        self.buffer = data.reshape(-1).view(np.uint8)


class _Info:
    """What ``_Reader.info`` gives for a stitched tensor."""

    __slots__ = ("name", "shape", "dtype", "logical_type", "layout", "components", "attributes")

    def __init__(self, g: _Global):
        self.name, self.shape, self.dtype, self.logical_type = g.name, list(g.shape), g.dtype, g.type
        self.layout = "dense"
        self.components = {"data": {"dtype": g.dtype, "type": g.type, "encoding": "dcp-chunks"}}
        self.attributes = {"dcp_chunks": len(g.chunks)}


class DcpSource:
    """A DCP checkpoint folder as a source of full (stitched) tensors, with
    the methods of the native reader that the front ends call."""

    format = "dcp"
    version = "1"

    def __init__(self, directory: str, eager: bool = False):
        self.path = directory
        self._eager = eager
        doc = read_description(directory)
        where = os.path.join(directory, METADATA_FILE)
        self._save_id = doc.get("save_id")
        try:
            storage = {
                (s["fqn"], tuple(s["offset"] or ())): (s["file"], s["name"])
                for s in doc["storage"]
                if s["offset"] is not None
            }
            self._globals = {
                name: _Global(where, name, entry, storage) for name, entry in doc["tensors"].items()
            }
            self._files = list(doc["files"])
        except (KeyError, TypeError, AttributeError) as e:
            raise ZTensorError(f"{where}: malformed description ({e!r})") from None
        self._readers: dict = {}
        self._lock = threading.Lock()
        self._closed = False

    # --- the native reader's protocol -----------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            for r in self._readers.values():
                r.close()
            self._readers.clear()
            self._closed = True

    def skipped_globals(self) -> list:
        return []

    def names(self) -> list:
        return sorted(self._globals)

    def names_in_file_order(self) -> list:
        return list(self._globals)

    def __len__(self) -> int:
        return len(self._globals)

    def contains(self, name: str) -> bool:
        return name in self._globals

    def attributes(self) -> dict:
        return {}

    def info(self, name: str) -> _Info:
        return _Info(self._global(name))

    def read_arrays(self, names, copy: bool) -> list:
        names = self.names_in_file_order() if names is None else names
        return [_Array(self._global(n), self.stitch(n, copy)) for n in names]

    def read_component(self, name: str, component: str, copy: bool):
        if component != "data":
            raise ZTensorError(f"{self.path}: tensor {name!r} has no component {component!r}")
        return self.stitch(name, copy).reshape(-1).view(np.uint8)

    def slice(self, name: str) -> StitchedSlice:
        """The part-by-part reader of ``name`` (what ``_Slice`` is for a file)."""
        return StitchedSlice(self, self._global(name))

    def verify(self) -> list:
        problems = []
        for file in self._files:
            try:
                self._reader(file).verify()
            except (OSError, ZTensorError) as e:
                problems.append(str(e))
        return problems

    # --- stitching ----------------------------------------------------------
    def _global(self, name: str) -> _Global:
        if self._closed:
            raise ZTensorError(f"{self.path}: the checkpoint is closed")
        g = self._globals.get(name)
        if g is None:
            raise KeyError(name)
        return g

    def _reader(self, file: str):
        from ._reader import Reader

        with self._lock:
            if self._closed:
                raise ZTensorError(f"{self.path}: the checkpoint is closed")
            r = self._readers.get(file)
            if r is None:
                path = os.path.join(self.path, plain_file_name(self.path, file))
                r = Reader(path, eager=self._eager)
                own = (r.metadata().get("dcp") or {}).get("save_id")
                if own != self._save_id:
                    r.close()
                    raise ZTensorError(
                        f"{path}: written by another save ({own!r}) than the checkpoint description "
                        f"({self._save_id!r}): the folder mixes two checkpoints"
                    )
                self._readers[file] = r
            return r

    def _chunk(self, g: _Global, file: str, tname: str, box) -> np.ndarray:
        """``box`` (a list of ``slice``) of one chunk, as raw elements."""
        r = self._reader(file)
        s = r._slice(tname)
        if (s.dtype, s.type) != (g.dtype, g.type):
            raise ZTensorError(
                f"{r._path}: tensor {tname!r} holds {s.dtype}/{s.type}, the checkpoint says "
                f"{g.dtype}/{g.type} for {g.name!r}"
            )
        buf, shape = s.read(box, True)
        return np.frombuffer(buf, g.raw).reshape(shape)

    def stitch(self, name: str, copy: bool = True) -> np.ndarray:
        """The whole global tensor ``name`` as raw elements: owned memory,
        or with ``copy=False`` a view of the file when one chunk holds it all."""
        g = self._global(name)
        if not copy and len(g.chunks) == 1 and g.chunks[0][1] == g.shape:
            _, sizes, file, tname = g.chunks[0]
            self._check_shape(g, file, tname, sizes)
            return self._chunk(g, file, tname, [slice(0, s) for s in sizes])
        out = np.empty(g.shape, g.raw)
        for offsets, sizes, file, tname in g.chunks:
            if math.prod(sizes) == 0:
                continue
            whole = [slice(0, s) for s in sizes]
            self._check_shape(g, file, tname, sizes)
            out[tuple(slice(o, o + s) for o, s in zip(offsets, sizes, strict=True))] = self._chunk(
                g, file, tname, whole
            )
        return out

    def _check_shape(self, g: _Global, file: str, tname: str, sizes) -> None:
        shape = self._reader(file)._slice(tname).shape
        if list(shape) != list(sizes):
            raise ZTensorError(
                f"{os.path.join(self.path, file)}: tensor {tname!r} has shape {list(shape)}, the "
                f"checkpoint says {list(sizes)} for its chunk of {g.name!r}"
            )


class StitchedSlice:
    """A global tensor read part by part: each chunk the selection touches is
    read over the selection's bounding box within it, no more."""

    __slots__ = ("_src", "_g")

    def __init__(self, src: DcpSource, g: _Global):
        self._src, self._g = src, g

    name = property(lambda self: self._g.name)
    shape = property(lambda self: list(self._g.shape))
    dtype = property(lambda self: self._g.dtype)
    type = property(lambda self: self._g.type)

    def read(self, index: list, numpy: bool):
        positions, keep = _positions(index, self._g.shape)
        out = np.empty([len(p) for p in positions], self._g.raw)
        for offsets, sizes, file, tname in self._g.chunks:
            masks = [(p >= o) & (p < o + s) for p, o, s in zip(positions, offsets, sizes, strict=True)]
            if not all(m.any() for m in masks) or out.size == 0:
                continue
            self._src._check_shape(self._g, file, tname, sizes)
            local = [p[m] - o for p, m, o in zip(positions, masks, offsets, strict=True)]
            lows = [int(x.min()) for x in local]
            box = [slice(lo, int(x.max()) + 1) for lo, x in zip(lows, local, strict=True)]
            part = self._src._chunk(self._g, file, tname, box)
            picked = part[np.ix_(*(x - lo for x, lo in zip(local, lows, strict=True)))]
            out[np.ix_(*(np.nonzero(m)[0] for m in masks))] = picked
        shape = [len(p) for p, k in zip(positions, keep, strict=True) if k]
        return out.reshape(shape).reshape(-1).view(np.uint8), shape


def _positions(index: list, shape: list):
    """Per dimension, the selected positions (int64 arrays) and whether the
    dimension is kept (an integer index drops it), as NumPy indexes."""
    explicit = sum(1 for p in index if p is not Ellipsis)
    if sum(1 for p in index if p is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if explicit > len(shape):
        raise IndexError(f"too many indices: the tensor has {len(shape)} dimension(s), {explicit} given")
    parts = []
    for p in index:
        parts += [slice(None)] * (len(shape) - explicit) if p is Ellipsis else [p]
    parts += [slice(None)] * (len(shape) - len(parts))
    positions, keep = [], []
    for dim, (p, n) in enumerate(zip(parts, shape, strict=True)):
        if isinstance(p, slice):
            positions.append(np.arange(*p.indices(n), dtype=np.int64))
            keep.append(True)
        elif isinstance(p, list):
            arr = np.asarray(p, dtype=np.int64).reshape(-1)
            if arr.size and (arr.min() < -n or arr.max() >= n):
                bad = int(arr[(arr < -n) | (arr >= n)][0])
                raise IndexError(f"index {bad} is out of bounds for dimension {dim} with size {n}")
            positions.append(np.where(arr < 0, arr + n, arr))
            keep.append(True)
        else:
            i = int(p)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {n}")
            positions.append(np.array([i % n], dtype=np.int64))
            keep.append(False)
    return positions, keep


def consolidate(dcp_dir, out, max_shard_size=None, *, compression=False, checksum: str = "crc32c") -> None:
    """Writes the checkpoint ``dcp_dir`` as one ``.zt`` file ``out`` of full
    tensors (names as in the state dict, flattened with ``.``), or with
    ``max_shard_size`` (bytes, or ``"5GB"``...) as shards beside ``out`` and
    ``<out>.index.json``, as ``ztensor.torch.save_file`` shards.

    Each writer stitches one tensor while it writes the previous one, so
    memory holds at most two global tensors per shard written in parallel.
    """
    from ._sharded_save import save_sharded
    from ._writer import write_file

    level = compression_level(compression)
    src = DcpSource(fspath(dcp_dir))
    try:
        names = src.names_in_file_order()

        def fill(w, group) -> None:
            _write_stitched(src, w, group, level, checksum)

        if max_shard_size is None:
            write_file(out, None, lambda w: fill(w, names))
        else:
            sizes = [src._global(n).raw.itemsize * math.prod(src._global(n).shape) for n in names]
            save_sharded(out, names, sizes, fill, None, max_shard_size)
    finally:
        src.close()


def _write_stitched(src: DcpSource, w, names: list, level, checksum: str) -> None:
    """Adds the global tensors ``names`` to a writer, stitching the next one
    on another thread while the native writer (GIL released) writes one."""
    if not names:
        return
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(src.stitch, names[0], False)
        for i, name in enumerate(names):
            data = ahead.result()
            if i + 1 < len(names):
                ahead = pool.submit(src.stitch, names[i + 1], False)
            g = src._global(name)
            w._add_dense([(name, data.reshape(-1).view(np.uint8), g.dtype, g.shape, g.type)], level, checksum)
            del data
