"""ztensor.torch loading onto a CUDA device (skipped without a GPU).

A ~300 MB mixed-dtype checkpoint (plus empty, 0-d and sparse tensors) is
loaded to the GPU in every way the API allows and compared bit-exactly with
the CPU load; small staging buffers force chunking inside and across tensors.
"""

from __future__ import annotations

import hashlib

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

import ztensor._torch_device as ztdev  # noqa: E402
import ztensor.torch as ztorch  # noqa: E402
from torch_common import Tied  # noqa: E402

nn = torch.nn
CUDA0 = torch.device("cuda", 0)


def raw_bytes(t):
    t = t.detach()
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.uint8, device=t.device)
    t = t.contiguous().reshape(-1)
    if t.is_complex():
        t = torch.view_as_real(t).reshape(-1)
    return t.view(torch.uint8)


def assert_same(actual, expected, what=""):
    """Bit-exact equality of a (GPU) tensor with a CPU tensor."""
    assert actual.layout == expected.layout, what
    assert actual.dtype == expected.dtype, what
    assert tuple(actual.shape) == tuple(expected.shape), what
    if actual.layout == torch.sparse_coo:
        a, e = actual.cpu().coalesce(), expected.coalesce()
        assert torch.equal(a.indices(), e.indices()), what
        assert_same(a.values(), e.values(), what + " values")
        return
    if actual.layout == torch.sparse_csr:
        a = actual.cpu()
        assert torch.equal(a.crow_indices(), expected.crow_indices()), what
        assert torch.equal(a.col_indices(), expected.col_indices()), what
        assert_same(a.values(), expected.values(), what + " values")
        return
    a = raw_bytes(actual)
    e = raw_bytes(expected).to(a.device)
    assert torch.equal(a, e), f"{what}: bytes differ"


def assert_on_cuda0(d: dict, order):
    assert list(d) == list(order)
    for k, t in d.items():
        assert t.device == CUDA0, (k, t.device)


def random_bits(shape, dtype, gen):
    """A tensor of `dtype` with uniformly random bit patterns (NaNs included)."""
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen, dtype=torch.uint8).bool()
    n = 1
    for s in shape:
        n *= s
    itemsize = torch.empty(0, dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * itemsize,), generator=gen, dtype=torch.uint8)
    if dtype.is_complex:
        real = {8: torch.float32, 16: torch.float64}[itemsize]
        return torch.view_as_complex(raw.view(real).reshape(*shape, 2))
    return raw.view(dtype).reshape(shape)


def checkpoint() -> dict:
    g = torch.Generator().manual_seed(2024)
    d = {
        "f32": random_bits((4096, 8192), torch.float32, g),  # 128 MiB
        "bf16": random_bits((8192, 4096), torch.bfloat16, g),  # 64 MiB
        "f16": random_bits((4096, 4096), torch.float16, g),  # 32 MiB
        "scalar_f32": torch.tensor(-0.0),
        "i64": random_bits((2_000_003,), torch.int64, g),  # ~16 MiB, odd length
        "empty": torch.zeros(0),
        "u8": random_bits((20_000_017,), torch.uint8, g),  # ~19 MiB
        "f8": random_bits((4001, 4003), torch.float8_e4m3fn, g),  # ~16 MiB
        "f8_e5m2": random_bits((1025, 333), torch.float8_e5m2, g),
        "c64": random_bits((1_000_001,), torch.complex64, g),  # ~8 MiB
        "c128": random_bits((3, 5, 7), torch.complex128, g),
        "bool": random_bits((5_000_011,), torch.bool, g),  # ~5 MiB
        "f64": random_bits((999, 1001), torch.float64, g),  # ~8 MiB
        "i32": random_bits((12345,), torch.int32, g),
        "i16": random_bits((77, 3), torch.int16, g),
        "i8": random_bits((13,), torch.int8, g),
        "u16": random_bits((4097,), torch.uint16, g),
        "u32": random_bits((33,), torch.uint32, g),
        "u64": random_bits((9,), torch.uint64, g),
        "empty_2d": torch.zeros(0, 3, dtype=torch.bfloat16),
        "scalar_i64": torch.tensor(-(2**62)),
        "sparse_coo": torch.sparse_coo_tensor(
            torch.tensor([[0, 5, 9], [1, 2, 3]]),
            torch.tensor([1.0, -2.0, 3.5]),
            (10, 4),
            check_invariants=True,
        ).coalesce(),
        "sparse_csr": torch.tensor([[0.0, 1, 0], [2, 0, 3]], dtype=torch.float64).to_sparse_csr(),
        "last_small": torch.arange(5, dtype=torch.int16),
    }
    return d


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = checkpoint()
    p = tmp_path_factory.mktemp("cuda") / "ckpt.zt"
    ztorch.save_file(d, p)
    size = p.stat().st_size
    assert 280 << 20 < size < 340 << 20, size
    cpu = ztorch.load_file(p)
    for k, t in d.items():
        assert_same(cpu[k], t, k)
    return p, cpu


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("copy", [False, True], ids=["zerocopy", "copy"])
@pytest.mark.parametrize(
    "device", ["cuda:0", 0, torch.device("cuda", 0), "cuda"], ids=["str", "int", "device", "bare"]
)
def test_load_to_cuda_matches_cpu(ckpt, device, copy):
    p, cpu = ckpt
    got = ztorch.load_file(p, device=device, copy=copy)
    assert_on_cuda0(got, cpu)
    # use them on the default stream straight away (the staging stream must be done)
    for k, t in got.items():
        assert_same(t, cpu[k], k)
    del got
    torch.cuda.empty_cache()


def test_reader_load_torch_to_cuda(ckpt):
    from ztensor import Reader

    p, cpu = ckpt
    with Reader(p) as r:
        got = r.load_torch(device="cuda:0")
    assert_on_cuda0(got, cpu)
    for k, t in got.items():
        assert_same(t, cpu[k], k)


def test_small_staging_buffer_via_module_setting(ckpt, monkeypatch):
    """1 MiB staging: most tensors span many chunks and chunks span tensors."""
    p, cpu = ckpt
    seen = []
    real = ztdev._stage_cuda

    def spy(tensors, device, staging_bytes):
        seen.append(staging_bytes)
        return real(tensors, device, staging_bytes)

    monkeypatch.setattr(ztdev, "_stage_cuda", spy)
    monkeypatch.setattr(ztdev, "STAGING_BYTES", 1 << 20)
    for device in ("cuda:0", 0):
        got = ztorch.load_file(p, device=device)
        assert_on_cuda0(got, cpu)
        for k, t in got.items():
            assert_same(t, cpu[k], k)
    assert seen == [1 << 20, 1 << 20], "the STAGING_BYTES setting was not used"


@pytest.mark.parametrize("staging", [1 << 20, 4097, 64 << 10], ids=["1MiB", "4097B", "64KiB"])
def test_small_staging_buffer_direct(ckpt, staging):
    """to_device with small (and odd-sized) staging buffers, called directly."""
    p, cpu = ckpt
    host = {
        k: v for k, v in ztorch.load_file(p).items() if k not in ("f32", "bf16", "u8") or staging >= (1 << 20)
    }  # keep the tiny-buffer runs short
    got = ztdev.to_device(host, CUDA0, staging_bytes=staging)
    assert_on_cuda0(got, host)
    for k, t in got.items():
        assert_same(t, cpu[k], k)


def test_cuda_load_leaves_file_unchanged_and_tensors_independent(ckpt):
    p, cpu = ckpt
    digest = sha(p)
    a = ztorch.load_file(p, device="cuda:0")
    b = ztorch.load_file(p, device="cuda:0")
    a["f32"].view(torch.int32).add_(1)
    a["i64"].zero_()
    assert_same(b["f32"], cpu["f32"], "other load")
    assert_same(b["i64"], cpu["i64"], "other load")
    assert sha(p) == digest
    assert_same(ztorch.load_file(p)["f32"], cpu["f32"], "CPU reload")


def build(seed):
    torch.manual_seed(seed)
    m = Tied()
    with torch.no_grad():
        for prm in m.parameters():
            prm.uniform_(-1, 1)
    return m


@pytest.mark.parametrize("device", ["cuda:0", 0])
def test_load_model_to_cuda(tmp_path, device):
    model = build(0)
    p = tmp_path / "m.zt"
    ztorch.save_model(model, p)

    fresh = build(1).to(CUDA0)
    assert ztorch.load_model(fresh, p, device=device) == (set(), [])
    assert fresh.emb.weight.device == CUDA0
    assert fresh.head.weight.data_ptr() == fresh.emb.weight.data_ptr()
    for k, v in model.state_dict().items():
        assert_same(fresh.state_dict()[k], v, k)

    # a CPU model loaded from the GPU tensors
    cpu_model = build(2)
    assert ztorch.load_model(cpu_model, p, device=device) == (set(), [])
    for k, v in model.state_dict().items():
        assert_same(cpu_model.state_dict()[k], v, k)
