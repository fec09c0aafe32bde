"""The ``zt`` command line, as installed by the wheel (console script).

* The console script runs the same Rust code as the cargo-built ``zt``
  binary: same stdout, stderr and exit status for every command, and
  byte-identical outputs.
* The progress bar appears under a pseudo-terminal and never in a pipe.
* Ctrl-C stops a conversion cleanly (status 130, no output, no temporary).
* Files made by their own libraries (safetensors, NumPy .npz, torch.save)
  convert to ``.zt`` and back bit-identically. These tests are skipped only
  while reading that format says "not supported yet".
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import ztensor
import ztensor.numpy as ztnp
from conftest import assert_bits_equal

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------
# the two implementations
# ---------------------------------------------------------------------------


def script_cmd() -> list[str]:
    """The console script the wheel installs (next to this interpreter)."""
    exe = Path(sys.executable).parent / "zt"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "ztensor._cli"]


@pytest.fixture(scope="session")
def script() -> list[str]:
    return script_cmd()


@pytest.fixture(scope="session")
def cargo_zt() -> list[str]:
    """The `zt` binary built by cargo (built here if needed)."""
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if not os.path.exists(cargo):
        pytest.skip("cargo is not installed: cannot build the zt binary to compare with")
    subprocess.run([cargo, "build", "-q", "-p", "ztensor-cli", "--bin", "zt"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    exe = target / "debug" / "zt"
    assert exe.exists(), exe
    return [str(exe)]


def run(cmd: list[str], *args, cwd=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=300, **kw
    )


def make_zt(path: Path, *, compression=False) -> dict:
    arrays = {
        "model.embed.weight": np.arange(24, dtype=np.float32).reshape(4, 6),
        "model.layers.0.bias": np.array([1, -2, 3], dtype=np.int8),
        "ids": np.array([np.iinfo(np.int64).min, 0, np.iinfo(np.int64).max], dtype=np.int64),
        "mask": np.array([[True, False], [False, True]]),
        "half": np.linspace(-1, 1, 8, dtype=np.float16),
        "bf16": np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16),
        "fp8": np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).reshape(16, 16),
        "c64": (np.arange(4) + 1j * np.arange(4)).astype(np.complex64),
        "scalar": np.array(3.5, dtype=np.float64),
    }
    ztnp.save_file(arrays, path, metadata={"framework": "numpy", "note": "cli test"}, compression=compression)
    return arrays


def test_console_script_is_declared():
    eps = importlib.metadata.entry_points(group="console_scripts", name="zt")
    assert [ep.value for ep in eps] == ["ztensor._cli:main"]
    assert (Path(sys.executable).parent / "zt").exists(), (
        "maturin develop / pip install puts zt next to python"
    )


def test_cli_main_is_the_native_function():
    from ztensor import _ztensor

    assert callable(_ztensor.cli_main)
    # Help goes to the process's stdout; the status comes back.
    assert _ztensor.cli_main(["zt", "--version"]) == 0
    assert _ztensor.cli_main(["zt", "no-such-command"]) == 2


def test_cli_main_releases_the_gil(tmp_path):
    import threading

    from ztensor import _ztensor

    make_big(tmp_path / "big.zt", n=8)
    result = {}
    worker = threading.Thread(
        target=lambda: result.setdefault(
            "code",
            _ztensor.cli_main(
                ["zt", "convert", str(tmp_path / "big.zt"), str(tmp_path / "out.zt"), "--compress=9", "-q"]
            ),
        )
    )
    ticks = 0
    started = time.monotonic()
    worker.start()
    while worker.is_alive():
        ticks += 1
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    assert result["code"] == 0
    # The calling thread kept running Python while zt worked.
    assert ticks > min(50, elapsed * 100), (ticks, elapsed)


def _scenarios(d: Path) -> list[list[str]]:
    a, b = d / "a.zt", d / "b.zt"
    make_zt(a)
    arrays = make_zt(b, compression=True)
    arrays.pop("mask")
    arrays["new"] = np.zeros(3, dtype=np.uint16)
    ztnp.save_file(arrays, d / "c.zt")
    bad = d / "bad.zt"
    data = bytearray(a.read_bytes())
    bad.write_bytes(bytes(data[: len(data) // 2]))
    return [
        ["info", "a.zt"],
        ["info", "a.zt", "--json"],
        ["info", "b.zt", "--json"],
        ["info", "missing.zt"],
        ["verify", "a.zt"],
        ["verify", "b.zt", "-q"],
        ["verify", "bad.zt"],
        ["diff", "a.zt", "b.zt"],
        ["diff", "a.zt", "c.zt"],
        ["diff", "a.zt", "missing.zt"],
        ["convert", "a.zt"],
        ["convert", "a.zt", "x.npz"],
        ["convert", "a.zt", "x.zt", "--compress=99"],
        ["convert", "a.zt", "x.safetensors", "--checksum", "crc32c"],
        ["convert", "c.zt", "y.safetensors", "--include", "nothing*"],
        [],
        ["bogus"],
        ["--help"],
        ["convert", "--help"],
        ["--version"],
    ]


def test_console_script_behaves_like_the_cargo_binary(script, cargo_zt, tmp_path):
    codes = {}
    for args in _scenarios(tmp_path):
        ours = run(script, *args, cwd=tmp_path)
        ref = run(cargo_zt, *args, cwd=tmp_path)
        assert ours.returncode == ref.returncode, (args, ours.stderr, ref.stderr)
        assert ours.stdout == ref.stdout, args
        assert ours.stderr == ref.stderr, args
        codes[tuple(args)] = ours.returncode
    assert codes[("info", "a.zt")] == 0
    assert codes[("verify", "bad.zt")] == 1
    assert codes[("diff", "a.zt", "b.zt")] == 0
    assert codes[("diff", "a.zt", "c.zt")] == 1
    assert codes[("diff", "a.zt", "missing.zt")] == 2
    assert codes[("convert", "a.zt")] == 2
    assert codes[("bogus",)] == 2
    assert codes[("--help",)] == 0
    doc = json.loads(run(script, "info", "a.zt", "--json", cwd=tmp_path).stdout)
    assert doc["tensor_count"] == 9
    assert doc["metadata"] == {"framework": "numpy", "note": "cli test"}


def test_console_script_writes_the_same_files(script, cargo_zt, tmp_path):
    make_zt(tmp_path / "a.zt")
    for out, opts in (
        ("c.zt", ["--compress=5", "--checksum", "sha256", "--alignment", "256"]),
        ("c.safetensors", ["--exclude", "c64"]),
    ):
        for name, cmd in (("script", script), ("cargo", cargo_zt)):
            p = run(cmd, "convert", "a.zt", f"{name}-{out}", *opts, cwd=tmp_path)
            assert p.returncode == 0, p.stderr
            assert p.stdout == "" and p.stderr == "", "quiet in a pipe"
        assert (tmp_path / f"script-{out}").read_bytes() == (tmp_path / f"cargo-{out}").read_bytes()
    loaded = ztnp.load_file(tmp_path / "script-c.zt")
    original = ztnp.load_file(tmp_path / "a.zt")
    assert list(loaded) == list(original)
    for k in original:
        assert_bits_equal(loaded[k], original[k], k)


# ---------------------------------------------------------------------------
# progress bar: terminal only
# ---------------------------------------------------------------------------


def run_in_pty(cmd: list[str], cwd, timeout: float = 120) -> tuple[int, str]:
    """Runs `cmd` with stdin/stdout/stderr on a pseudo-terminal; returns (status, output)."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120")
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every slave end is closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif p.poll() is not None:
                break
        else:
            p.kill()
            pytest.fail(f"{cmd} did not finish in {timeout} s")
    finally:
        p.wait()
        os.close(master)
    return p.returncode, b"".join(chunks).decode("utf-8", "replace")


def make_big(path: Path, n: int = 24, elements: int = 1 << 20) -> None:
    rng = np.random.default_rng(0)
    ztnp.save_file(
        {f"layer.{i}.weight": rng.standard_normal(elements, dtype=np.float32) for i in range(n)}, path
    )


@pytest.mark.parametrize("impl", ["script", "cargo"])
def test_progress_bar_on_a_terminal_and_not_in_a_pipe(impl, script, cargo_zt, tmp_path):
    cmd = script if impl == "script" else cargo_zt
    make_big(tmp_path / "big.zt", n=8)
    status, out = run_in_pty(cmd + ["convert", "big.zt", "tty.zt", "--compress"], cwd=tmp_path)
    assert status == 0, out
    assert "converting" in out, repr(out[-2000:])
    assert "MiB" in out and "layer." in out, repr(out[-2000:])
    assert "zt: wrote tty.zt (zt): 8 tensors" in out, repr(out[-2000:])
    # verify draws one too
    status, out = run_in_pty(cmd + ["verify", "tty.zt"], cwd=tmp_path)
    assert status == 0 and "verifying" in out and ": OK: 8 tensors" in out, repr(out[-2000:])
    # --quiet: nothing at all, even on a terminal
    status, out = run_in_pty(cmd + ["convert", "big.zt", "quiet.zt", "--compress", "--quiet"], cwd=tmp_path)
    assert status == 0 and out == "", repr(out)
    # a pipe: nothing on stderr
    p = run(cmd, "convert", "big.zt", "pipe.zt", "--compress", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stderr
    assert (tmp_path / "tty.zt").read_bytes() == (tmp_path / "pipe.zt").read_bytes()


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["script", "cargo"])
def test_ctrl_c_stops_a_conversion_cleanly(impl, script, cargo_zt, tmp_path):
    cmd = script if impl == "script" else cargo_zt
    make_big(tmp_path / "big.zt", n=24)
    # zstd level 19 on random floats: seconds per tensor, minutes in all.
    p = subprocess.Popen(
        cmd + ["convert", "big.zt", "out.zt", "--compress=19"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not any(f.name.startswith(".out.zt.") for f in tmp_path.iterdir()):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.02)
    time.sleep(0.3)
    started = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    stopped_in = time.monotonic() - started
    assert p.returncode == 130, (p.returncode, err)
    assert "interrupted" in err, err
    assert err.count("interrupted") == 1, err
    assert stopped_in < 20, f"took {stopped_in:.1f} s to stop"
    left = sorted(f.name for f in tmp_path.iterdir())
    assert left == ["big.zt"], left


# ---------------------------------------------------------------------------
# foreign formats made by their own libraries: to .zt and back
# ---------------------------------------------------------------------------


@functools.cache
def unsupported(fmt: str) -> str | None:
    """The "not supported yet" message reading a small `fmt` file gives, or None."""
    d = Path(tempfile.mkdtemp(prefix="zt-probe-"))
    try:
        path = d / {"safetensors": "p.safetensors", "npz": "p.npz", "pt": "p.pt"}[fmt]
        if fmt == "safetensors":
            import safetensors.numpy as st_np

            st_np.save_file({"x": np.zeros(2, np.float32)}, str(path))
        elif fmt == "npz":
            np.savez(path, x=np.zeros(2, np.float32))
        else:
            import torch

            torch.save({"x": torch.zeros(2)}, path)
        try:
            with ztensor.Reader(path):
                pass
        except Exception as e:  # noqa: BLE001 - any failure is inspected below
            if "not supported yet" in str(e):
                return str(e)
        p = run(script_cmd(), "info", path)
        if p.returncode != 0 and "not supported yet" in p.stderr:
            return p.stderr.strip()
        return None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def needs(fmt: str):
    reason = unsupported(fmt)
    return pytest.mark.skipif(reason is not None, reason=f"reading {fmt}: {reason}")


def t_bytes(t) -> bytes:
    t = t.detach().contiguous().reshape(-1)
    import torch

    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def assert_torch_equal(actual, expected, what=""):
    assert actual.dtype == expected.dtype, f"{what}: {actual.dtype} != {expected.dtype}"
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: {actual.shape} != {expected.shape}"
    assert t_bytes(actual) == t_bytes(expected), f"{what}: bytes differ"


def torch_samples() -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    out = {
        "f64": torch.randn(3, 4, dtype=torch.float64, generator=g),
        "f32": torch.randn(5, 7, generator=g),
        "f16": torch.randn(8, dtype=torch.float16, generator=g),
        "bf16": torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).reshape(256, 256),
        "i64": torch.tensor([-(2**63), 0, 2**63 - 1]),
        "i32": torch.tensor([-(2**31), 7], dtype=torch.int32),
        "i16": torch.tensor([-(2**15), 7], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.arange(256, dtype=torch.int32).to(torch.uint8),
        "u16": torch.tensor([0, 65535], dtype=torch.uint16),
        "u32": torch.tensor([0, 2**32 - 1], dtype=torch.uint32),
        "u64": torch.tensor([0, 2**63 - 1], dtype=torch.uint64),
        "bool": torch.tensor([[True, False], [False, True]]),
        "fp8_e4m3": torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn),
        "fp8_e5m2": torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e5m2),
        "c64": torch.randn(6, dtype=torch.complex64, generator=g),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "model.layers.0.attn.weight": torch.randn(16, 16, generator=g),
    }
    return out


def check_zt_and_back(
    script,
    d: Path,
    src: Path,
    expected_torch: dict | None = None,
    expected_np: dict | None = None,
    exclude_for_safetensors=(),
):
    """src -> .zt (raw and compressed+crc32c) -> .safetensors; every step bit-identical."""
    import safetensors.torch as st_torch

    import ztensor.torch as zttorch

    for opts, name in (([], "raw.zt"), (["--compress", "--checksum", "crc32c"], "packed.zt")):
        p = run(script, "convert", src, d / name, *opts)
        assert p.returncode == 0, p.stderr
        assert run(script, "verify", d / name, "-q").returncode == 0
        p = run(script, "diff", src, d / name)
        assert p.returncode == 0, p.stdout + p.stderr
        if expected_torch is not None:
            got = zttorch.load_file(d / name)
            assert sorted(got) == sorted(expected_torch)
            for k, v in expected_torch.items():
                assert_torch_equal(got[k], v, f"{name}:{k}")
        if expected_np is not None:
            got = ztnp.load_file(d / name)
            assert sorted(got) == sorted(expected_np)
            for k, v in expected_np.items():
                want = np.asarray(v)
                if want.dtype.byteorder == ">":
                    want = want.astype(want.dtype.newbyteorder("<"))
                assert_bits_equal(got[k], want.copy(order="C"), f"{name}:{k}")
    back = d / "back.safetensors"
    excl = [a for n in exclude_for_safetensors for a in ("--exclude", n)]
    p = run(script, "convert", d / "packed.zt", back, *excl)
    assert p.returncode == 0, p.stderr
    loaded = st_torch.load_file(str(back))
    reference = zttorch.load_file(d / "raw.zt")
    assert sorted(loaded) == sorted(k for k in reference if k not in exclude_for_safetensors)
    for k, v in loaded.items():
        assert_torch_equal(v, reference[k], f"back:{k}")
    return back


@needs("safetensors")
def test_safetensors_to_zt_and_back(script, tmp_path):
    import safetensors.torch as st_torch

    tensors = torch_samples()
    src = tmp_path / "model.safetensors"
    st_torch.save_file(tensors, str(src), metadata={"format": "pt"})
    back = check_zt_and_back(script, tmp_path, src, expected_torch=tensors)
    # Same layout and header rules as the safetensors library: the round trip
    # reproduces the original file byte for byte.
    assert back.read_bytes() == src.read_bytes()
    doc = json.loads(run(script, "info", tmp_path / "raw.zt", "--json").stdout)
    assert doc["metadata"] == {"format": "pt"}


@needs("safetensors")
def test_safetensors_numpy_to_zt_and_back(script, tmp_path):
    import safetensors.numpy as st_np

    rng = np.random.default_rng(1)
    arrays = {
        "f64": rng.standard_normal((3, 3)),
        "f32": rng.standard_normal(10).astype(np.float32),
        "f16": rng.standard_normal(4).astype(np.float16),
        "u32": np.array([0, 2**32 - 1], dtype=np.uint32),
        "b": np.array([True, False]),
        "c64": (rng.standard_normal(3) + 1j).astype(np.complex64),
    }
    src = tmp_path / "np.safetensors"
    st_np.save_file(arrays, str(src), metadata={"k": "v"})
    back = check_zt_and_back(script, tmp_path, src, expected_np=arrays)
    assert back.read_bytes() == src.read_bytes()


@needs("npz")
@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_npz_to_zt_and_back(script, tmp_path, compressed):
    rng = np.random.default_rng(2)
    arrays = {
        "f64": rng.standard_normal((4, 5)),
        "f32_fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
        "f16": rng.standard_normal(7).astype(np.float16),
        "i64_big_endian": np.arange(6, dtype=">i8").reshape(2, 3),
        "i32": np.array([-(2**31), 5], dtype=np.int32),
        "u8": np.arange(256, dtype=np.uint8),
        "u64": np.array([0, 2**64 - 1], dtype=np.uint64),
        "bool": rng.integers(0, 2, 9).astype(bool),
        "c64": (rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex64),
        "c128": rng.standard_normal(2) + 1j,
        "scalar": np.array(7, dtype=np.int16),
    }
    src = tmp_path / "arrays.npz"
    (np.savez_compressed if compressed else np.savez)(src, **arrays)
    with np.load(src) as z:
        expected = {k: z[k] for k in z.files}
    check_zt_and_back(script, tmp_path, src, expected_np=expected, exclude_for_safetensors=("c128",))


@needs("pt")
@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_checkpoint_to_zt_and_back(script, tmp_path, zipfile):
    import torch

    tensors = torch_samples()
    if not zipfile:
        # torch.load cannot read these dtypes back from its legacy format itself.
        for k in ("u16", "u32", "u64", "fp8_e4m3", "fp8_e5m2"):
            del tensors[k]
    tensors["transposed"] = torch.arange(12.0).reshape(3, 4).t()
    tensors["sliced"] = torch.arange(30.0).reshape(5, 6)[1:, 2:]
    src = tmp_path / "model.pt"
    torch.save(tensors, src, _use_new_zipfile_serialization=zipfile)
    expected = torch.load(src, weights_only=True)
    check_zt_and_back(script, tmp_path, src, expected_torch={k: v.contiguous() for k, v in expected.items()})


class _ShellPayload:
    """Unpickling this runs a shell command (pickled as os.system, i.e. posix.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@needs("pt")
def test_info_and_verify_report_pickle_globals(script, tmp_path):
    """A code-execution payload fails info, verify and convert, naming its global;
    an object the reader skips (argparse.Namespace) is a note; a clean file has none."""
    import argparse

    import torch

    marker = tmp_path / "pwned"
    evil, odd, clean = tmp_path / "evil.pt", tmp_path / "odd.pt", tmp_path / "clean.pt"
    torch.save({"w": torch.ones(2), "run": _ShellPayload(marker)}, evil)
    torch.save({"w": torch.ones(2), "args": argparse.Namespace(lr=0.1)}, odd)
    torch.save({"w": torch.ones(2)}, clean)

    for cmd in (
        ["info", evil],
        ["info", "--json", evil],
        ["verify", evil],
        ["convert", evil, tmp_path / "out.zt"],
    ):
        p = run(script, *cmd)
        out = p.stdout + p.stderr
        assert p.returncode == 1, (cmd, out)
        assert "posix.system" in out and "refused" in out and "Nothing was run" in out, (cmd, out)
    assert "FAILED" in run(script, "verify", evil).stdout
    assert not (tmp_path / "out.zt").exists() and not marker.exists()

    note = "the reader does not interpret"
    p = run(script, "info", odd)
    assert p.returncode == 0, p.stderr
    assert [line for line in p.stdout.splitlines() if note in line] == [
        "note:      the pickle names 1 global the reader does not interpret (never imported or called; "
        "their objects are skipped, their tensors read): argparse.Namespace"
    ], p.stdout
    assert json.loads(run(script, "info", "--json", odd).stdout)["skipped_globals"] == ["argparse.Namespace"]
    p = run(script, "verify", odd)
    assert p.returncode == 0 and ": OK:" in p.stdout and note in p.stdout and "argparse.Namespace" in p.stdout

    for cmd in (["info"], ["verify"]):
        p = run(script, *cmd, clean)
        assert p.returncode == 0 and note not in p.stdout, p.stdout
    assert "skipped_globals" not in json.loads(run(script, "info", "--json", clean).stdout)


def test_gguf_to_zt_and_back(script, tmp_path):
    """GGUF (plain and quantized tensors, typed metadata) -> .zt; the plain
    tensors also on to .safetensors. Compared with gguf.GGUFReader."""
    gguf = pytest.importorskip("gguf")
    from test_format_gguf import write_file

    src = tmp_path / "model.gguf"
    plain, quant = write_file(src, alignment=64)
    ref = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(src)).tensors}
    expected = {k: ref[k] for k in plain} | {k: ref[k].reshape(-1).view(np.uint8) for k in quant}
    check_zt_and_back(script, tmp_path, src, expected_np=expected, exclude_for_safetensors=tuple(quant))
    with ztensor.Reader(tmp_path / "packed.zt") as r:
        for name, (_raw, qtype, shape) in quant.items():
            md = r.metadata(name)
            assert md.type == qtype.name.lower()
            assert list(md.attributes["original_shape"]) == list(shape)
        assert r.metadata()["general.architecture"] == "testarch"
    # A quantized tensor has no safetensors dtype: converting it is refused by name.
    p = run(script, "convert", tmp_path / "packed.zt", tmp_path / "q.safetensors")
    assert p.returncode != 0
    assert "q8" in p.stderr or "q4k" in p.stderr
    assert not (tmp_path / "q.safetensors").exists()


def test_gguf_dequantize_to_safetensors_and_zt(script, tmp_path):
    """--dequantize f32|f16: quantized GGUF tensors convert to float
    safetensors/.zt equal to gguf.quants.dequantize; info and diff see the
    same float tensors."""
    import json

    import safetensors.numpy as st_np

    gguf = pytest.importorskip("gguf")
    from test_format_gguf import quantized_tensors, reference

    tensors = quantized_tensors(np.random.default_rng(11))
    src = tmp_path / "quant.gguf"
    w = gguf.GGUFWriter(str(src), arch="testarch")
    for name, (raw, q) in tensors.items():
        w.add_tensor(name, raw, raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    want = {name: reference(raw, q) for name, (raw, q) in tensors.items()}

    p = run(script, "convert", src, tmp_path / "f32.safetensors", "--dequantize", "f32", "-q")
    assert p.returncode == 0, p.stderr
    got = st_np.load_file(tmp_path / "f32.safetensors")
    assert sorted(got) == sorted(want)
    for name, w32 in want.items():
        assert got[name].dtype == np.float32 and got[name].shape == w32.shape, name
        assert got[name].view(np.uint32).tobytes() == w32.view(np.uint32).tobytes(), name

    p = run(script, "convert", src, tmp_path / "f16.zt", "--dequantize=f16", "--compress", "-q")
    assert p.returncode == 0, p.stderr
    half = ztnp.load_file(tmp_path / "f16.zt")
    with np.errstate(over="ignore"):
        for name, w32 in want.items():
            assert half[name].dtype == np.float16, name
            assert half[name].tobytes() == w32.astype(np.float16).tobytes(), name
    with ztensor.Reader(tmp_path / "f16.zt") as r:
        md = r.metadata(next(iter(want)))
        assert md.attributes["dequantized"] is True

    p = run(script, "info", src, "--json", "--dequantize", "f32")
    assert p.returncode == 0, p.stderr
    rows = {t["name"]: t for t in json.loads(p.stdout)["tensors"]}
    assert {rows[n]["dtype"] for n in want} == {"float32"}
    assert all(rows[n]["shape"] == list(want[n].shape) for n in want)
    # Without the flag the tensors are raw blocks, which differ from floats.
    assert run(script, "diff", src, tmp_path / "f32.safetensors", "-q").returncode == 1
    p = run(script, "diff", src, tmp_path / "f32.safetensors", "--dequantize", "f32")
    assert p.returncode == 0, p.stdout + p.stderr
    p = run(script, "convert", src, tmp_path / "x.zt", "--dequantize", "f64")
    assert p.returncode == 2 and "f64" in p.stderr


# What .safetensors can hold of the ONNX element types (the rest stays .zt only).
ONNX_IN_SAFETENSORS = {
    "float",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "int32",
    "int64",
    "bool",
    "float16",
    "double",
    "uint32",
    "uint64",
    "bfloat16",
    "float8e4m3fn",
    "float8e5m2",
    "complex64",
}


def test_onnx_to_zt_and_back(script, tmp_path):
    """Every ONNX element type (raw_data and typed fields, 0-d, empty) -> .zt
    -> .safetensors where it fits, compared with onnx.numpy_helper."""
    pytest.importorskip("onnx")
    from test_format_onnx import as_ours, dtype_model, expected_of

    for raw in (True, False):
        d = tmp_path / ("raw" if raw else "typed")
        d.mkdir()
        src = dtype_model(d, raw=raw)
        expected = {k: as_ours(v) for k, v in expected_of(src).items()}
        keep = {k for k in expected if k.split("_")[0] in ONNX_IN_SAFETENSORS}
        assert len(keep) == 4 * len(ONNX_IN_SAFETENSORS)
        check_zt_and_back(
            script, d, src, expected_np=expected, exclude_for_safetensors=tuple(sorted(set(expected) - keep))
        )
        with ztensor.Reader(d / "packed.zt") as r:
            assert r.metadata("int4").type == "int4"
            assert r.metadata("float8e8m0").type == "f8_e8m0fnu"


def test_hdf5_to_zt_and_back(script, tmp_path):
    """h5py files (contiguous, chunked gzip+shuffle, lzf, fill values,
    big-endian, bool, complex, nested groups, both libvers) -> .zt ->
    .safetensors, compared with h5py; file attributes carried over."""
    h5py = pytest.importorskip("h5py")
    from test_format_hdf5 import h5py_contents

    for libver in ("earliest", "latest"):
        d = tmp_path / libver
        d.mkdir()
        src = d / "in.h5"
        with h5py.File(src, "w", libver=libver) as f:
            f["a"] = np.arange(20, dtype=">f4").reshape(4, 5)
            f.create_dataset(
                "g/b", data=np.arange(300, dtype="i2"), chunks=(64,), compression="gzip", shuffle=True
            )
            f.create_dataset("g/sub/l", data=np.arange(50, dtype="u8"), chunks=(16,), compression="lzf")
            f.create_dataset("fill", shape=(10,), dtype="f8", chunks=(4,), fillvalue=2.5)[0:4] = 1
            f["flags"] = np.array([True, False, True])
            f["c"] = np.array([1 - 1j, 2j], dtype="c8")
            f["scalar"] = np.float64(3.5)
            f.attrs["note"] = "cli"
            f.attrs["epoch"] = 7
        expected = h5py_contents(src)
        assert {"a", "g.b", "g.sub.l", "fill", "flags", "c", "scalar"} <= set(expected)
        check_zt_and_back(script, d, src, expected_np=expected)
        with ztensor.Reader(d / "packed.zt") as r:
            meta = r.metadata()
            assert meta["note"] == "cli" and meta["epoch"] == 7
