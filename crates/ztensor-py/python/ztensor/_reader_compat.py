"""Reader methods of the ztensor 1.2.3 API, kept for code migrating from it:
``read_numpy``, ``read_torch``, ``read`` and ``read_into``.

Each takes one name (returns one result) or a list of names (returns a dict
in file order, as 1.2.3 did). 0-d tensors keep shape ``()``, every dtype
works in ``read_torch`` and checksums are verified, unlike 1.2.3.
"""

from __future__ import annotations

import numpy as np

from ._dtypes import as_array, numpy_dtype
from ._tensor import Tensor, is_torch_tensor
from ._ztensor import ZTensorError


class ReaderCompat:
    """Mixed into ``Reader``; uses its ``_r``, ``metadata`` and read methods."""

    def read_numpy(self, name, *, copy: bool = False):
        """A dense tensor as a NumPy array, or a dict of them for a list of names."""
        names = self._names_arg(name)
        if names is None:
            return self.read_tensor(name, copy=copy)
        return self._read(names, bool(copy))

    def read_torch(self, name, *, copy: bool = False, device="cpu"):
        """A tensor as a torch tensor on ``device`` (sparse layouts as torch
        sparse tensors), or a dict of them for a list of names."""
        from .torch import _load

        names = self._names_arg(name)
        tensors = _load(self, device, copy, [name] if names is None else names)
        return tensors[name] if names is None else tensors

    def read(self, name, *, copy: bool = False):
        """A tensor of any layout as a ``ztensor.Tensor``, or a dict of them for
        a list of names. Dense ``data`` is the array ``reader[name]`` gives
        (its shape and NumPy dtype); other components are 1-D arrays of their
        storage dtype."""
        names = self._names_arg(name)
        if names is None:
            return self._read_object(name, copy)
        return {n: self._read_object(n, copy) for n in names}

    def read_into(self, name, dst=None) -> None:
        """Reads a dense tensor into a preallocated NumPy array or torch tensor
        (any device, pinned memory included): ``read_into(name, dst)`` or
        ``read_into({name: dst, ...})``.

        The file's bytes are copied straight into ``dst`` (no intermediate
        copy of raw tensors). ``dst`` must have the tensor's exact shape
        (ValueError otherwise: no broadcasting) and a dtype the tensor's
        casts to without changing kind (NumPy's ``"same_kind"`` rule, or
        ``torch.can_cast``; TypeError otherwise). Every destination is
        checked before any is written. Tensors that require grad
        (``nn.Parameter``) are filled without recording the copy.
        """
        if isinstance(name, dict):
            if dst is not None:
                raise TypeError("read_into({name: dst, ...}) takes no separate dst")
            targets = name
        else:
            if not isinstance(name, str):
                raise TypeError(
                    f"name must be a str or a dict of name -> destination, not {type(name).__name__}"
                )
            if dst is None:
                raise TypeError("read_into(name, dst): dst is required when name is a str")
            targets = {name: dst}
        names = self._names_arg(list(targets))
        for n in names:
            self._check_destination(n, targets[n])
        for n in names:
            a = self._read_arrays([n], False)[0]
            out = targets[n]
            if isinstance(out, np.ndarray):
                np.copyto(out, as_array(a.buffer, a.dtype, a.logical_type, a.shape))
            else:
                import torch

                from .torch import _as_tensor

                with torch.no_grad():  # a Parameter is filled like load_state_dict does
                    out.copy_(_as_tensor(a.buffer, a.dtype, a.logical_type, a.shape))

    # --- helpers -------------------------------------------------------
    def _names_arg(self, name):
        """None for one name (a str); for a list or tuple, its names without
        repeats, in file order. Unknown names raise KeyError."""
        if isinstance(name, str):
            return None
        if not isinstance(name, (list, tuple)):
            raise TypeError(f"name must be str or list[str], not {type(name).__name__}")
        for n in name:
            if not isinstance(n, str):
                raise TypeError(f"tensor name must be str, not {type(n).__name__}")
            if n not in self:
                self.metadata(n)  # raises the reader's KeyError naming the file
        position = {n: i for i, n in enumerate(self._names_in_file_order())}
        return sorted(set(name), key=position.__getitem__)

    def _read_object(self, name: str, copy: bool) -> Tensor:
        meta = self.metadata(name)
        if meta.format == "dense":
            components = {"data": self.read_tensor(name, copy=copy)}
        else:
            components = self.read_components(name, copy=copy)
        return Tensor(
            components,
            shape=meta.shape,
            dtype=meta.dtype,
            format=meta.format,
            type=meta.type,
            attributes=meta.attributes,
        )

    def _check_destination(self, name: str, dst) -> None:
        meta = self.metadata(name)
        where = f"{self._path}: tensor {name!r}"
        if meta.format != "dense":
            raise ZTensorError(f"{where}: has layout {meta.format}; read_into fills dense tensors only")
        if isinstance(dst, np.ndarray):
            src = numpy_dtype(meta.dtype, meta.type)
            if not dst.flags.writeable:
                raise ValueError(f"{where}: the destination array is read-only")
            castable = np.can_cast(src, dst.dtype, "same_kind")
        elif is_torch_tensor(dst):
            import torch

            from .torch import torch_dtype

            src = torch_dtype(meta.dtype, meta.type)
            castable = torch.can_cast(src, dst.dtype)
        else:
            raise TypeError(
                f"{where}: the destination must be a numpy.ndarray or a torch.Tensor, "
                f"not {type(dst).__name__}"
            )
        if list(dst.shape) != meta.shape:
            raise ValueError(f"{where}: the tensor has shape {meta.shape}, the destination {list(dst.shape)}")
        if not castable:
            raise TypeError(
                f"{where}: cannot cast {src} to the destination's {dst.dtype} "
                "(only casts within a kind, e.g. float32 to float64, are allowed)"
            )
