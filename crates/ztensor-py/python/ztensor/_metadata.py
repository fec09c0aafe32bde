"""TensorMetadata: what a Reader knows about one tensor without reading it."""

from __future__ import annotations


class TensorMetadata:
    """Name, shape, dtype, logical type, layout, components and attributes of a tensor.

    ``dtype`` is the storage dtype (e.g. ``"float32"``); ``type`` is the
    logical type (e.g. ``"f8_e4m3fn"``, ``"complex64"``) or None.
    ``components`` maps component names to dicts with ``dtype``, ``type``,
    ``offset``, ``length``, ``encoding``, ``uncompressed_length`` and ``digest``.
    """

    __slots__ = ("name", "shape", "dtype", "type", "format", "components", "attributes")

    def __init__(self, name, shape, dtype, type=None, format="dense", components=None, attributes=None):
        self.name = name
        self.shape = list(shape)
        self.dtype = dtype
        self.type = type
        self.format = format
        self.components = components if components is not None else {}
        self.attributes = attributes

    def __repr__(self) -> str:
        extra = f" type={self.type!r}" if self.type is not None else ""
        fmt = f" format={self.format!r}" if self.format != "dense" else ""
        return f"<TensorMetadata name={self.name!r} shape={self.shape} dtype={self.dtype!r}{extra}{fmt}>"

    def __eq__(self, other) -> bool:
        if not isinstance(other, TensorMetadata):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)
