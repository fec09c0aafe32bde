"""Error messages a user sees: they name the user's own path and say what is
wrong in words, never a hidden temporary file, raw bytes or torch internals."""

from __future__ import annotations

import numpy as np
import pytest

import ztensor
import ztensor.numpy as ztnp
from ztensor import ZTensorError

torch = pytest.importorskip("torch")
import ztensor.torch as ztorch  # noqa: E402


def test_save_into_a_missing_folder_names_the_folder(tmp_path):
    target = tmp_path / "nodir" / "out.zt"
    saves = {
        "numpy": lambda: ztnp.save_file({"a": np.zeros(3)}, target),
        "torch": lambda: ztorch.save_file({"a": torch.zeros(3)}, target),
        "Writer": lambda: ztensor.Writer(target),
    }
    for what, save in saves.items():
        with pytest.raises(FileNotFoundError) as e:
            save()
        assert e.value.filename == str(target), what
        assert e.value.strerror == f"the folder {tmp_path / 'nodir'} does not exist", what
        assert ".out.zt." not in str(e.value), what  # the temporary's name


def test_damaged_footer_is_described_not_dumped(tmp_path):
    p = tmp_path / "m.zt"
    ztnp.save_file({"a": np.arange(4.0)}, p)
    data = bytearray(p.read_bytes())
    data[-8:] = b"m\xff*\x01\x02\x03\x04\x05"
    p.write_bytes(bytes(data))
    with pytest.raises(ZTensorError) as e:
        ztnp.load_file(p)
    assert str(e.value) == (
        f"{p}: the file does not end with the .zt signature ZTEN1000: it is truncated or damaged"
    )


def test_unknown_format_is_not_called_a_bad_zt_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is text\n")
    for load in (ztnp.load_file, ztorch.load_file, ztensor.Reader):
        with pytest.raises(ZTensorError, match="cannot detect the format") as e:
            load(p)
        assert str(e.value).startswith(f"{p}: "), str(e.value)
        assert "(.txt)" in str(e.value) and ".safetensors" in str(e.value)
    with pytest.raises(ZTensorError, match="cannot detect the format"):
        ztensor.Reader._from_bytes(b"hello, this is text\n", None)
    # The same bytes named .zt get the .zt reader's diagnosis.
    z = tmp_path / "notes.zt"
    z.write_text("hello, this is text\n")
    with pytest.raises(ZTensorError, match="not a .zt file: it does not start with the .zt signature"):
        ztnp.load_file(z)


def _torch_reason(device) -> str:
    """What torch itself says when asked for ``device`` here."""
    try:
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError) as e:
        return str(e)
    raise AssertionError(f"{device} works on this machine")


def _loads(path):
    def model_load(device):
        model = torch.nn.Linear(2, 2)
        return ztorch.load_model(model, path, device=device)

    return {
        "load_file": lambda device: ztorch.load_file(path, device=device),
        "load_model": model_load,
        "Reader.load_torch": lambda device: ztensor.Reader(path).load_torch(device=device),
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize(
    "device", ["cuda", "cuda:0", 0, torch.device("cuda")], ids=["cuda", "cuda0", "int0", "torch.device"]
)
def test_missing_cuda_is_named(tmp_path, device):
    p = tmp_path / "m.zt"
    ztorch.save_model(torch.nn.Linear(2, 2), p)
    name = str(ztensor._torch_device.parse_device(device))
    reason = _torch_reason(name)
    for what, load in _loads(p).items():
        with pytest.raises(RuntimeError) as e:
            load(device)
        assert str(e.value) == f"cannot load onto device {name!r}: CUDA is not available ({reason})", what
    # safetensors raises the same type for the same request
    import safetensors.torch as st

    st.save_file({"a": torch.zeros(2)}, tmp_path / "a.safetensors")
    with pytest.raises(RuntimeError):
        st.load_file(tmp_path / "a.safetensors", device=name)


def test_cuda_index_past_the_last_gpu_is_named(tmp_path, monkeypatch):
    if not torch.cuda.is_available():  # pretend one GPU so the index check is reached
        monkeypatch.setattr(torch.cuda, "init", lambda: None)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    count = torch.cuda.device_count()
    p = tmp_path / "m.zt"
    ztorch.save_model(torch.nn.Linear(2, 2), p)
    for what, load in _loads(p).items():
        with pytest.raises(RuntimeError) as e:
            load(f"cuda:{count}")
        assert str(e.value) == (
            f"cannot load onto device 'cuda:{count}': this machine has {count} CUDA "
            f"device(s), cuda:0 to cuda:{count - 1}"
        ), what
