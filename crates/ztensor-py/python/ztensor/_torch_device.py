"""Moving loaded tensors to a device.

For CUDA, bytes are staged through two fixed-size pinned host buffers and
copied asynchronously on a side stream: host memory stays bounded (2 x the
staging size) whatever the checkpoint size, and the CPU-side copy into one
staging buffer overlaps the DMA out of the other. Other devices use
``Tensor.to``.
"""

from __future__ import annotations

import torch

STAGING_BYTES = 64 << 20


def parse_device(device) -> torch.device:
    """``"cpu"``, ``"cuda:1"``, an int (CUDA index) or a torch.device."""
    if isinstance(device, bool):
        raise TypeError("device must be a str, int or torch.device")
    if isinstance(device, int):
        return torch.device("cuda", device)
    if isinstance(device, (str, torch.device)):
        return torch.device(device)
    raise TypeError(f"device must be a str, int or torch.device, not {type(device).__name__}")


def to_device(tensors: dict, device: torch.device, staging_bytes: int | None = None) -> dict:
    if device.type == "cuda":
        return _stage_cuda(tensors, device, staging_bytes or STAGING_BYTES)
    return {name: t.to(device) for name, t in tensors.items()}


def _bytes(t: torch.Tensor) -> torch.Tensor:
    flat = t.reshape(-1)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    return flat.view(torch.uint8)


def require_cuda(device: torch.device) -> None:
    """Raises a RuntimeError naming ``device`` when it cannot be used: no
    usable CUDA (torch's own reason attached) or an index past the last GPU.
    Without this check, ``torch.cuda.Stream`` fails with an obscure
    "invalid argument to exchangeDevice"."""
    try:
        torch.cuda.init()
    except (RuntimeError, AssertionError) as e:  # AssertionError: torch built without CUDA
        raise RuntimeError(f"cannot load onto device {str(device)!r}: CUDA is not available ({e})") from e
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise RuntimeError(
            f"cannot load onto device {str(device)!r}: this machine has {count} CUDA "
            f"device(s), cuda:0 to cuda:{count - 1}"
        )


def _stage_cuda(tensors: dict, device: torch.device, staging_bytes: int) -> dict:
    require_cuda(device)
    stream = torch.cuda.Stream(device)
    staging = [torch.empty(staging_bytes, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    done = [None, None]  # event marking when each staging buffer may be refilled
    slot, used = 0, 0
    out = {}

    def switch():
        nonlocal slot, used
        event = torch.cuda.Event()
        event.record(stream)
        done[slot] = event
        slot, used = slot ^ 1, 0
        if done[slot] is not None:
            done[slot].synchronize()

    with torch.cuda.stream(stream):
        for name, t in tensors.items():
            if t.layout != torch.strided:
                out[name] = t.to(device, non_blocking=False)
                continue
            dst = torch.empty(t.shape, dtype=t.dtype, device=device)
            src, dst_bytes = _bytes(t), _bytes(dst)
            n, offset = src.numel(), 0
            while offset < n:
                if used == staging_bytes:
                    switch()
                m = min(n - offset, staging_bytes - used)
                buf = staging[slot][used : used + m]
                buf.copy_(src[offset : offset + m])
                dst_bytes[offset : offset + m].copy_(buf, non_blocking=True)
                used += m
                offset += m
            out[name] = dst
    stream.synchronize()
    return out
