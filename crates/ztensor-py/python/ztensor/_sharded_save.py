"""Sharded saves (``max_shard_size=``): Hugging Face's layout, ``.zt`` shards.

The size limit, the plan and the crash-safe commit are the native ones
(``ztensor_formats::sharded``), shared with ``zt convert --max-shard-size``.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

from ._options import fspath
from ._writer import Writer, write_file
from ._ztensor import _parse_shard_size, _plan_shards, _ShardedSave

# Shards are written on threads: the native writer releases the GIL while it
# copies and compresses, so shards overlap; more threads than this only
# contend for the disk.
_MAX_THREADS = 8


def shard_size_limit(max_shard_size) -> int:
    """``max_shard_size`` in bytes: a positive int, or ``"5GB"`` (10^9),
    ``"5GiB"`` (2^30), KB/MB/TB, KiB/MiB/TiB (case-insensitive)."""
    if isinstance(max_shard_size, bool) or not isinstance(max_shard_size, (int, str)):
        raise TypeError(
            f"max_shard_size must be an int (bytes) or a str like '5GB', not {type(max_shard_size).__name__}"
        )
    return _parse_shard_size(max_shard_size)


def save_sharded(filename, names: list, sizes: list, write_shard, metadata, max_shard_size) -> None:
    """Saves tensors ``names`` (of ``sizes`` bytes, in order) to ``filename``,
    split into shards of at most ``max_shard_size`` bytes.

    ``write_shard(writer, shard_names)`` adds the named tensors to a writer.
    One shard: ``filename`` itself, with ``metadata``, as without sharding.
    More: ``<stem>-0000i-of-0000n<ext>`` beside it, written in parallel, then
    ``<filename>.index.json`` (``metadata`` goes there, beside ``total_size``).
    Either way, a checkpoint previously saved at ``filename`` in the other
    form (or with other shards) is removed once the new one is complete.
    """
    limit = shard_size_limit(max_shard_size)
    target = fspath(filename)
    groups = _plan_shards([int(s) for s in sizes], limit)
    total = sum(int(s) for s in sizes)
    if len(groups) == 1:
        write_file(target, metadata, lambda w: write_shard(w, names))
        _ShardedSave(target, 1).commit(None, total)
        return
    metadata_json = _index_metadata(metadata)
    save = _ShardedSave(target, len(groups))

    def write(i: int) -> None:
        w = Writer(save.paths[i])
        try:
            write_shard(w, [names[j] for j in groups[i]])
        except BaseException:
            w.discard()
            raise
        w.finish()

    threads = min(len(groups), os.cpu_count() or 1, _MAX_THREADS)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="ztensor-shard")
    try:
        for done in [pool.submit(write, i) for i in range(len(groups))]:
            done.result()
    except BaseException:
        pool.shutdown(cancel_futures=True)
        save.abort()
        raise
    pool.shutdown()
    shard_names = save.names
    weight_map = {names[j]: shard_names[i] for i, group in enumerate(groups) for j in group}
    save.commit(weight_map, total, metadata_json)


def _index_metadata(metadata) -> str | None:
    """The file metadata as the JSON the index holds, checked before any shard is written."""
    if not metadata:
        return None
    if "total_size" in metadata:
        raise ValueError(
            "the metadata key 'total_size' is reserved in a sharded checkpoint's index"
            " (the byte size of all tensors)"
        )
    try:
        return json.dumps(metadata)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"the metadata of a sharded checkpoint goes in its JSON index and must be JSON-serializable: {e}"
        ) from None
