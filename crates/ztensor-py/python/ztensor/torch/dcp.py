"""``.zt`` as a storage backend for ``torch.distributed.checkpoint`` (DCP).

``dcp.save(state_dict, storage_writer=ZTensorStorageWriter(path))`` has every
rank write its chunks to its own ``.zt`` file(s) (integrity-checked, optionally
compressed, each a valid ``.zt`` on its own) and the coordinator write the
checkpoint description ``ztensor-dcp.json`` last and atomically: JSON, so
loading never unpickles anything. ``dcp.load(..., storage_reader=
ZTensorStorageReader(path))`` reshards to any world size, reading only the
bytes of each chunk that a rank needs. ``ztensor.torch.load_file(path)``,
``ztensor.open(path)`` and ``ztensor.safe_open(path, "pt")`` read the same
folder as full tensors, and ``consolidate`` writes it as one ``.zt`` file.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    SavePlan,
    SavePlanner,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future

from .._dcp_source import (
    FORMAT,
    METADATA_FILE,
    VERSION,
    consolidate,
    digest,
    plain_file_name,
    read_description,
)
from .._options import compression_level, fspath
from .._reader import Reader
from .._writer import Writer
from .._ztensor import ZTensorError
from . import _TO_STORAGE, _as_tensor, _dense_item

__all__ = ["ZTensorStorageWriter", "ZTensorStorageReader", "consolidate"]

_CHECKSUMS = ("none", "crc32c", "sha256")
_DCP_VERSION = "1.0.0"  # the Metadata.version FileSystemWriter writes


@dataclass(frozen=True)
class ZTensorStorageInfo:
    """Where one saved item lies: a data file of the checkpoint folder and the
    name of the tensor in it."""

    file: str
    name: str


def _flush(path: str) -> None:
    """fsyncs a file, or a folder so the renames in it last (where the platform allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ZTensorStorageWriter(StorageWriter):
    """Writes a DCP checkpoint as ``.zt`` files: ``__<rank>_<n>.zt`` per rank
    and ``ztensor-dcp.json`` (written by the coordinator, last).

    ``checksum``: ``"crc32c"`` (default), ``"sha256"`` or ``"none"``, per
    tensor. ``compression``: ``False``, ``True`` (zstd level 3) or a level.
    ``thread_count``: files each rank writes in parallel. ``sync_files``:
    fsync every file before the description is written, as
    ``FileSystemWriter`` does (a checkpoint that loads survives power loss).
    ``overwrite=False``
    refuses a folder that already holds a checkpoint. Picklable, so
    ``dcp.async_save`` can use it in another process.
    """

    def __init__(
        self,
        path,
        *,
        checksum: str = "crc32c",
        compression=False,
        thread_count: int = 1,
        sync_files: bool = True,
        overwrite: bool = True,
    ):
        super().__init__()
        if checksum not in _CHECKSUMS:
            raise ValueError(f"checksum must be one of {_CHECKSUMS}, not {checksum!r}")
        if int(thread_count) < 1:
            raise ValueError(f"thread_count must be at least 1, not {thread_count}")
        self.path = fspath(path)
        self.checksum = checksum
        self.level = compression_level(compression)
        self.thread_count = int(thread_count)
        self.sync_files = bool(sync_files)
        self.overwrite = bool(overwrite)
        self.save_id = uuid.uuid4().hex
        self.is_coordinator = False

    def reset(self, checkpoint_id=None) -> None:
        if checkpoint_id:
            self.path = fspath(checkpoint_id)
        self.save_id = uuid.uuid4().hex

    def set_up_storage_writer(self, is_coordinator: bool, *args, **kwargs) -> None:
        if not kwargs.get("use_collectives", True):
            raise ValueError("ZTensorStorageWriter needs use_collectives=True (one checkpoint description)")
        self.is_coordinator = is_coordinator

    def storage_meta(self) -> StorageMeta:
        return StorageMeta(checkpoint_id=self.path, save_id=self.save_id)

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        os.makedirs(self.path, exist_ok=True)
        if not self.overwrite and os.path.exists(os.path.join(self.path, METADATA_FILE)):
            raise RuntimeError(f"{self.path}: holds a checkpoint already and overwrite=False")
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        # No rank writes before this returns: dropping the old description
        # first means a save that dies midway leaves a folder that refuses to load.
        old = os.path.join(self.path, METADATA_FILE)
        if os.path.exists(old):
            os.remove(old)
            _flush(self.path)
        # Every rank tags its files with the coordinator's save id, so a
        # reader can tell files of this save from leftovers of another.
        return [dataclasses.replace(p, storage_data=(f"__{i}_", self.save_id)) for i, p in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        prefix, save_id = plan.storage_data
        buckets = [b for b in _split_by_size(plan.items, self.thread_count) if b]
        jobs = [(f"{prefix}{n}.zt", items, save_id) for n, items in enumerate(buckets)]
        if len(jobs) > 1:
            with ThreadPoolExecutor(len(jobs)) as pool:
                parts = list(pool.map(lambda job: self._write_file(*job, planner), jobs))
        else:
            parts = [self._write_file(*job, planner) for job in jobs]
        if self.sync_files and jobs:
            _flush(self.path)  # the data files' names, before the description names them
        fut: Future = Future()
        fut.set_result([r for part in parts for r in part])
        return fut

    def _write_file(self, file: str, items, save_id: str, planner: SavePlanner) -> list[WriteResult]:
        w = Writer(os.path.join(self.path, file), metadata={"dcp": {"format": FORMAT, "save_id": save_id}})
        try:
            results, used = [], set()
            for item in items:
                data = planner.resolve_data(item)
                name = item.index.fqn
                if name in used:
                    offsets = item.index.offset or ()
                    name = f"{name}@{','.join(str(o) for o in offsets)}"
                used.add(name)
                if item.type == WriteItemType.BYTE_IO:
                    raw = np.frombuffer(data.getvalue(), np.uint8)
                    attrs = {"dcp_fqn": item.index.fqn, "dcp_bytes": True}
                    parts, shape, size = [("data", raw, "uint8", None)], [raw.size], raw.size
                else:
                    _, raw, storage, shape, logical = _dense_item(name, data)
                    chunk = item.tensor_data.chunk
                    attrs = {
                        "dcp_fqn": item.index.fqn,
                        "dcp_offsets": [int(o) for o in chunk.offsets],
                        "dcp_global_shape": [int(s) for s in item.tensor_data.size],
                    }
                    parts, size = [("data", raw, storage, logical)], raw.nbytes
                w._add_object(name, shape, "dense", parts, self.level, self.checksum, attrs)
                results.append(WriteResult(item.index, size, ZTensorStorageInfo(file, name)))
            w.finish()
        except BaseException:
            w.discard()
            raise
        if self.sync_files:
            _flush(os.path.join(self.path, file))
        return results

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        doc = _describe(metadata, [r for rs in results for r in rs], self.save_id, self.storage_meta())
        doc["crc32"] = digest(doc)
        final = os.path.join(self.path, METADATA_FILE)
        tmp = f"{final}.{self.save_id}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(_json(doc))
                f.flush()
                if self.sync_files:
                    os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        if self.sync_files:
            _flush(self.path)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        return isinstance(checkpoint_id, (str, os.PathLike)) and "://" not in os.fspath(checkpoint_id)


class ZTensorStorageReader(StorageReader):
    """Reads a checkpoint written by ``ZTensorStorageWriter``: the description
    is JSON (never unpickled), each read item reads only the bytes of its box
    (raw: straight from the file mapping; zstd: the frames it overlaps), and
    each tensor's checksum is checked before its data is used.
    ``thread_count``: data files read in parallel."""

    def __init__(self, path, *, thread_count: int = 1):
        super().__init__()
        self.path = fspath(path)
        self.thread_count = max(1, int(thread_count))
        self.storage_data: dict = {}
        self.load_id = uuid.uuid4().hex

    def reset(self, checkpoint_id=None) -> None:
        self.storage_data = {}
        if checkpoint_id:
            self.path = fspath(checkpoint_id)
        self.load_id = uuid.uuid4().hex

    def read_metadata(self, *args, **kwargs) -> Metadata:
        metadata = _rebuild(read_description(self.path), self.path)
        if metadata.storage_meta is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args, **kwargs) -> None:
        self.storage_data = metadata.storage_data
        self._save_id = (metadata.storage_meta.save_id if metadata.storage_meta else None) or None

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        per_file: dict = {}
        for item in plan.items:
            per_file.setdefault(self.storage_data[item.storage_index].file, []).append(item)
        jobs = list(per_file.items())
        if self.thread_count > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(min(self.thread_count, len(jobs))) as pool:
                list(pool.map(lambda job: self._read_file(*job, planner), jobs))
        else:
            for job in jobs:
                self._read_file(*job, planner)
        fut: Future = Future()
        fut.set_result(None)
        return fut

    def _read_file(self, file: str, items, planner: LoadPlanner) -> None:
        path = os.path.join(self.path, file)
        with Reader(path) as r:
            own = (r.metadata().get("dcp") or {}).get("save_id")
            if self._save_id is not None and own != self._save_id:
                raise ZTensorError(
                    f"{path}: written by another save ({own!r}) than the checkpoint description "
                    f"({self._save_id!r}): the folder mixes two checkpoints"
                )
            for item in items:
                name = self.storage_data[item.storage_index].name
                if item.type == LoadItemType.BYTE_IO:
                    planner.load_bytes(item, io.BytesIO(r.read_tensor(name, copy=True).tobytes()))
                    continue
                s = r._slice(name)
                box = [slice(o, o + n) for o, n in zip(item.storage_offsets, item.lengths, strict=True)]
                buf, shape = s.read(box, False)
                tensor = _as_tensor(buf, s.dtype, s.type, shape)
                target = planner.resolve_tensor(item).detach()
                if target.size() != tensor.size():
                    raise ZTensorError(
                        f"{path}: tensor {name!r}: read {list(tensor.size())} for a target of "
                        f"{list(target.size())}"
                    )
                target.copy_(tensor)
                planner.commit_tensor(item, target)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        if not isinstance(checkpoint_id, (str, os.PathLike)):
            return False
        return os.path.isfile(os.path.join(os.fspath(checkpoint_id), METADATA_FILE))


# --------------------------------------------------------------- description


def _split_by_size(items, bins: int) -> list:
    """Items in ``bins`` groups of about equal bytes (largest first, greedy)."""
    if bins == 1:
        return [list(items)]
    groups: list = [[] for _ in range(bins)]
    sizes = [0] * bins

    def size(item):
        if item.type == WriteItemType.BYTE_IO:
            return 0
        td = item.tensor_data
        return math.prod(td.chunk.sizes) * torch.empty((), dtype=td.properties.dtype).element_size()

    for item in sorted(items, key=size, reverse=True):
        i = sizes.index(min(sizes))
        groups[i].append(item)
        sizes[i] += size(item)
    return groups


def _json(doc) -> str:
    import json

    return json.dumps(doc, separators=(",", ":"))


def _plain(value, what: str):
    """A JSON value of ``planner_data`` (tuples become lists, rebuilt on read)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, what) for k, v in value.items()}
    raise TypeError(f"{what}: {type(value).__name__} cannot be stored in a ztensor DCP description")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _describe(
    metadata: Metadata, results: list[WriteResult], save_id: str, storage_meta: StorageMeta
) -> dict:
    tensors, bytes_items = {}, []
    for fqn, md in metadata.state_dict_metadata.items():
        if isinstance(md, BytesStorageMetadata):
            bytes_items.append(fqn)
            continue
        p = md.properties
        if p.dtype not in _TO_STORAGE:
            raise ZTensorError(f"tensor {fqn!r}: unsupported torch dtype {p.dtype}")
        storage, logical = _TO_STORAGE[p.dtype]
        tensors[fqn] = {
            "dtype": _dtype_name(p.dtype),
            "zt_dtype": storage,
            "zt_type": logical,
            "layout": str(p.layout).removeprefix("torch."),
            "requires_grad": bool(p.requires_grad),
            "memory_format": str(p.memory_format).removeprefix("torch."),
            "pin_memory": bool(p.pin_memory),
            "strides": None if p.strides is None else [int(s) for s in p.strides],
            "size": [int(s) for s in md.size],
            "chunks": [
                {"offsets": [int(o) for o in c.offsets], "sizes": [int(s) for s in c.sizes]}
                for c in md.chunks
            ],
        }
    storage_entries = [
        {
            "fqn": r.index.fqn,
            "offset": None if r.index.offset is None else [int(o) for o in r.index.offset],
            "file": r.storage_data.file,
            "name": r.storage_data.name,
        }
        for r in results
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "dcp_version": _DCP_VERSION,
        "save_id": save_id,
        "files": sorted({r.storage_data.file for r in results}),
        "tensors": tensors,
        "bytes": bytes_items,
        "storage": storage_entries,
        "planner_data": _plain(metadata.planner_data, "planner_data"),
        "storage_meta": {
            "checkpoint_id": None
            if storage_meta.checkpoint_id is None
            else os.fspath(storage_meta.checkpoint_id),
            "save_id": storage_meta.save_id,
            "modules": list(storage_meta.modules),
        },
    }


def _torch_attr(name: str, kind, what: str):
    """``torch.<name>`` when it is an instance of ``kind`` (a dtype, layout or
    memory format named by the description); nothing else is looked up."""
    value = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(value, kind):
        raise ZTensorError(f"{what}: {name!r} is not a torch {kind.__name__}")
    return value


def _rebuild(doc: dict, where: str) -> Metadata:
    """DCP's Metadata from a checked description."""
    where = os.path.join(where, METADATA_FILE)
    try:
        sd: dict = {}
        for fqn, t in doc["tensors"].items():
            what = f"{where}: tensor {fqn!r}"
            props = TensorProperties(
                dtype=_torch_attr(t["dtype"], torch.dtype, what),
                layout=_torch_attr(t["layout"], torch.layout, what),
                requires_grad=bool(t["requires_grad"]),
                memory_format=_torch_attr(t["memory_format"], torch.memory_format, what),
                pin_memory=bool(t["pin_memory"]),
                strides=None if t["strides"] is None else tuple(int(s) for s in t["strides"]),
            )
            chunks = [
                ChunkStorageMetadata(offsets=torch.Size(c["offsets"]), sizes=torch.Size(c["sizes"]))
                for c in t["chunks"]
            ]
            sd[fqn] = TensorStorageMetadata(properties=props, size=torch.Size(t["size"]), chunks=chunks)
        for fqn in doc["bytes"]:
            sd[fqn] = BytesStorageMetadata()
        storage = {
            MetadataIndex(
                s["fqn"], None if s["offset"] is None else torch.Size(s["offset"])
            ): ZTensorStorageInfo(plain_file_name(where, s["file"]), str(s["name"]))
            for s in doc["storage"]
        }
        planner_data = doc["planner_data"]
        if isinstance(planner_data, dict):
            planner_data = {k: tuple(v) if isinstance(v, list) else v for k, v in planner_data.items()}
        sm = doc["storage_meta"]
        storage_meta = StorageMeta(
            checkpoint_id=sm["checkpoint_id"], save_id=sm["save_id"], modules=list(sm["modules"])
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ZTensorError(f"{where}: malformed description ({e!r})") from None
    return Metadata(
        state_dict_metadata=sd,
        planner_data=planner_data,
        storage_data=storage,
        storage_meta=storage_meta,
        version=doc.get("dcp_version"),
    )
