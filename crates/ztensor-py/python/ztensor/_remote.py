"""Remote files: which paths are URLs, and the ``storage_options`` argument.

A URL (``s3://``, ``gs://``, ``az://``, ``abfs://``, ``http://``, ``https://``)
of a ``.zt`` or ``.safetensors`` file is opened by the native remote reader,
which fetches the manifest (or header) on open and each tensor's bytes when
it is read. ``storage_options`` is a dict of str keys: ``request_size``,
``concurrency`` and ``merge_gap`` tune the fetches; every other key is the
store's (``object_store`` names: ``aws_endpoint``, ``aws_region``,
``allow_http``, ``timeout``, ...) and overrides the environment.
"""

from __future__ import annotations

from ._ztensor import _is_url, _open_remote


def is_url(path) -> bool:
    """True when ``path`` is a URL the remote reader opens."""
    return isinstance(path, str) and _is_url(path)


def open_remote(url: str, storage_options):
    """The native reader of the file at ``url``."""
    return _open_remote(url, check_storage_options(storage_options))


def check_storage_options(options) -> dict | None:
    """``storage_options`` as str -> str (bools as ``"true"``/``"false"``)."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise TypeError(f"storage_options must be a dict, not {type(options).__name__}")
    out = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise TypeError(f"storage_options keys must be str, not {type(key).__name__}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        elif not isinstance(value, str):
            raise TypeError(
                f"storage_options[{key!r}] must be str, int, float or bool, not {type(value).__name__}"
            )
        out[key] = value
    return out


def no_storage_options(path, options) -> None:
    """``storage_options`` given with a local path: a ValueError (it would be ignored)."""
    if options is not None:
        raise ValueError(
            f"storage_options apply to URLs (s3://, gs://, az://, http(s)://), not to the local path {path!r}"
        )
