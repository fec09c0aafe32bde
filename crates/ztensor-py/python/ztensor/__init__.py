"""zTensor: fast, safe, zero-copy tensor files.

``import ztensor`` loads NumPy and the native module only; PyTorch is
imported by ``ztensor.torch`` alone.
"""

from ._append import remove_tensors, replace_tensor
from ._metadata import TensorMetadata
from ._reader import Reader
from ._safe_open import safe_open
from ._tensor import Tensor
from ._writer import Writer
from ._ztensor import ZTensorError, __version__

__all__ = [
    "Reader",
    "Writer",
    "Tensor",
    "TensorMetadata",
    "ZTensorError",
    "open",
    "safe_open",
    "remove_tensors",
    "replace_tensor",
    "__version__",
]


def open(path, *, storage_options=None) -> Reader:  # noqa: A001 - the documented name (docs/python-api.md)
    """Opens a tensor file (or a URL of one); the same as ``Reader(path, storage_options=...)``."""
    return Reader(path, storage_options=storage_options)
