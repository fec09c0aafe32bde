"""Reader: dict-like, zero-copy access to the tensors of a file."""

from __future__ import annotations

import os
import sys
import warnings

from ._dtypes import as_array, numpy_dtype
from ._metadata import TensorMetadata
from ._options import dequantize_dtype
from ._reader_compat import ReaderCompat
from ._sources import open_native
from ._ztensor import ArrayRead, Buffer, ZTensorError, _Reader, _Slice, wrap_arrays


class Reader(ReaderCompat):
    """An open tensor file.

    ``reader[name]`` returns a NumPy array that views the file's private
    copy-on-write mapping: no copy is made, the array is writable, and writes
    never reach the file. Arrays stay valid after the reader is closed.
    Pass ``copy=True`` to the read methods for arrays that own their memory.
    ``read_numpy``, ``read_torch``, ``read`` and ``read_into`` are the ztensor
    1.2.3 API (see ``ReaderCompat``).

    ``dequantize`` (GGUF only): ``None`` (default) gives each block-quantized
    tensor as its raw ``uint8`` bytes; ``"float32"`` or ``"float16"`` (or
    ``np.float32``/``np.float16``) gives instead a dense array of its original
    shape, decoded when read (never zero-copy), for Q4_0, Q4_1, Q5_0, Q5_1,
    Q8_0, Q2_K-Q6_K, Q8_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4 and NVFP4
    (float16 is the float32 result rounded); its metadata attributes then
    hold ``{"ggml_type": ..., "dequantized": True}``. Other quantized types
    stay raw bytes. Other formats have no quantized tensors and ignore it.

    Pickles (``.pt``, ``.pth``, ``.bin``, ``.pkl``) are read without importing
    or calling anything they name. One naming a global that can run code
    (``os.system``, ``builtins.eval``, ...) raises ``ZTensorError``. Objects of
    other globals the reader does not interpret (``argparse.Namespace``, your
    own classes) are skipped with one ``UserWarning`` naming them;
    ``strict=True`` raises ``ZTensorError`` instead, as
    ``torch.load(weights_only=True)`` does. Other formats ignore ``strict``.

    ``path`` may be a URL (``s3://``, ``gs://``, ``az://``, ``abfs://``,
    ``http://``, ``https://``) of a ``.zt`` or ``.safetensors`` file: opening
    fetches its manifest or header only, each read fetches the tensors' bytes
    (concurrent ranged requests, digests checked). ``storage_options`` (a dict)
    configures the store and the fetches; see docs/python-api.md.
    """

    def __init__(
        self, path, *, eager: bool = False, dequantize=None, strict: bool = False, storage_options=None
    ):
        self._r = open_native(
            path,
            eager=eager,
            dequantize=dequantize_dtype(dequantize),
            strict=bool(strict),
            storage_options=storage_options,
        )
        _warn_skipped(self._r)

    @classmethod
    def _from_bytes(cls, data: bytes, dequantize=None) -> Reader:
        self = cls.__new__(cls)
        self._r = _Reader.from_bytes(bytes(data), dequantize_dtype(dequantize))
        _warn_skipped(self._r)
        return self

    # --- dict protocol -------------------------------------------------
    def keys(self) -> list:
        """Tensor names, sorted."""
        return self._r.names()

    def __len__(self) -> int:
        return len(self._r)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and self._r.contains(name)

    def __iter__(self):
        return iter(self._r.names())

    def __getitem__(self, name: str):
        return self.read_tensor(name)

    # --- metadata -----------------------------------------------------
    @property
    def format(self) -> str:
        """The detected file format: ``"zt"``, ``"safetensors"``, ``"pickle"``,
        ``"npz"``, ``"npy"``, ``"gguf"``, ``"onnx"`` or ``"hdf5"``."""
        return self._r.format

    def metadata(self, name: str | None = None):
        """``metadata(name)``: the tensor's TensorMetadata.
        ``metadata()``: the file-level metadata dict (empty if none)."""
        if name is None:
            return self._r.attributes()
        if isinstance(name, list):
            return [self.metadata(n) for n in name]
        if not isinstance(name, str):
            raise TypeError(f"tensor name must be str, not {type(name).__name__}")
        i = self._r.info(name)
        return TensorMetadata(i.name, i.shape, i.dtype, i.logical_type, i.layout, i.components, i.attributes)

    # --- reading ------------------------------------------------------
    def read_tensor(self, name: str, *, copy: bool = False):
        """One dense tensor as a NumPy array."""
        if not isinstance(name, str):
            raise TypeError(f"tensor name must be str, not {type(name).__name__}")
        return self._read([name], copy)[name]

    def read_tensors(self, names, *, copy: bool = False) -> dict:
        """Several dense tensors, as a dict in the order given."""
        if isinstance(names, str):
            raise TypeError("read_tensors takes a list of names; use read_tensor for one")
        names = list(names)
        for n in names:
            if not isinstance(n, str):
                raise TypeError(f"tensor name must be str, not {type(n).__name__}")
        return self._read(names, copy)

    def load_numpy(self, *, copy: bool = False) -> dict:
        """Every tensor, as a dict in file order."""
        return self._read(None, copy)

    def load_torch(self, *, device="cpu", copy: bool = False) -> dict:
        """Every tensor as torch tensors (sparse layouts as torch sparse tensors)."""
        from .torch import _load

        return _load(self, device, copy)

    def read_components(self, name: str, *, copy: bool = False) -> dict:
        """The raw 1-D component arrays of a tensor of any layout (e.g. sparse)."""
        meta = self.metadata(name)
        return {
            cname: as_array(self._read_component(name, cname, copy), c["dtype"], None, (-1,))
            for cname, c in meta.components.items()
        }

    def get_slice(self, name: str):
        """The dense tensor ``name`` for reading in parts as NumPy arrays:
        ``reader.get_slice(name)[rows, cols]`` reads only what it selects
        (see ``ztensor.safe_open``)."""
        from ._safe_open import TensorSlice

        if not isinstance(name, str):
            raise TypeError(f"tensor name must be str, not {type(name).__name__}")
        return TensorSlice(self._slice(name))

    def _read(self, names, copy: bool) -> dict:
        """Dense tensors by name (None: all, in file order) as arrays."""
        arrays = self._read_arrays(names, copy)
        if arrays and not isinstance(arrays[0], ArrayRead):  # a Python source: a DCP folder
            return {a.name: as_array(a.buffer, a.dtype, a.logical_type, a.shape) for a in arrays}
        return wrap_arrays(arrays, numpy_dtype)

    # --- for the front ends (torch.py, safe_open...): the native reader stays here
    @property
    def _path(self) -> str:
        """The path the file was opened from (for messages)."""
        return self._r.path

    @property
    def _closed(self) -> bool:
        return self._r.closed

    def _names_in_file_order(self) -> list:
        """Tensor names in the order their data lies in the file."""
        return self._r.names_in_file_order()

    def _read_arrays(self, names, copy: bool) -> list[ArrayRead]:
        """Dense tensors by name (None: all, in file order), each as its
        buffer, dtype, logical type and shape, in one native call."""
        return self._r.read_arrays(names, bool(copy))

    def _read_component(self, name: str, component: str, copy: bool) -> Buffer:
        """The bytes of one component of a tensor of any layout."""
        return self._r.read_component(name, component, copy)

    def _slice(self, name: str) -> _Slice:
        """The native part-by-part reader of the dense tensor ``name``."""
        return self._r.slice(name)

    def verify(self) -> None:
        """Checks every digest and compressed stream in the file; raises
        ZTensorError listing every problem found."""
        problems = self._r.verify()
        if problems:
            raise ZTensorError("; ".join(problems))

    # --- lifetime -----------------------------------------------------
    def close(self) -> None:
        """Releases the file. Arrays already returned stay valid."""
        self._r.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        if self._r.closed:
            return "<ztensor.Reader (closed)>"
        return f"<ztensor.Reader {self._r.path!r} [{self._r.format}, {len(self)} tensor(s)]>"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))  # subpackages (ztensor.torch) count too


def _warn_skipped(r) -> None:
    """One UserWarning per opened pickle naming the globals whose objects
    were skipped, attributed to the first caller outside this package."""
    skipped = r.skipped_globals()
    if skipped:
        warn_skipped_globals(r.path, skipped)


def warn_skipped_globals(path: str, skipped: list) -> None:
    """The warning of ``_warn_skipped`` for the pickle at ``path`` (the
    sharded reader calls it as each pickle shard opens)."""
    shown = ", ".join(skipped[:12]) + (f" and {len(skipped) - 12} more" if len(skipped) > 12 else "")
    level, frame = 1, sys._getframe(0)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        level, frame = level + 1, frame.f_back
    warnings.warn(
        f"{path}: skipped the objects of pickled globals zTensor does not interpret (never imported "
        f"or called): {shown}. Its tensors were loaded; pass strict=True to refuse such files "
        "(torch.load(weights_only=True) refuses them).",
        UserWarning,
        stacklevel=level,
    )
