"""Reading .zt and .safetensors files from URLs (issue 15).

Two servers on the loopback, started here: moto's S3 server (credentials
and endpoint from the environment, as a user sets them) and a small HTTP
server with byte ranges, ETags and injected faults (503s, bodies cut short,
Range ignored, bytes corrupted in flight, the file replaced between
requests), which also counts the bytes it sends. Every read is compared
bit for bit with the same file read locally.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import safetensors.numpy
import torch

import ztensor
import ztensor.numpy as ztnp
import ztensor.torch as zttorch
from ztensor import Reader, Writer, ZTensorError

MiB = 1 << 20


# --- files ---------------------------------------------------------------
def arrays(n: int = 6, size: int = 4096) -> dict:
    rng = np.random.default_rng(15)
    out = {f"layer.{i}.weight": rng.standard_normal(size // 4).astype(np.float32) for i in range(n)}
    out["ids"] = np.arange(-5, 5, dtype=np.int64)
    out["half"] = rng.standard_normal((8, 3)).astype(np.float16)
    out["mask"] = np.array([True, False, True])
    out["scalar"] = np.array(2.5, dtype=np.float64)
    return out


def write_zt(path, tensors: dict, *, compress=None, checksum="none") -> bytes:
    with Writer(str(path)) as w:
        for name, a in tensors.items():
            w.add(name, a, compress=compress, checksum=checksum)
    return path.read_bytes()


def make_file(tmp_path, kind: str, tensors: dict | None = None) -> tuple[str, bytes]:
    """(file name, bytes) of a file of `kind`: zt, zt-zstd (crc32c), safetensors."""
    tensors = arrays() if tensors is None else tensors
    if kind == "safetensors":
        p = tmp_path / "model.safetensors"
        safetensors.numpy.save_file(tensors, str(p))
        return p.name, p.read_bytes()
    p = tmp_path / "model.zt"
    if kind == "zt-zstd":
        return p.name, write_zt(p, tensors, compress=3, checksum="crc32c")
    return p.name, write_zt(p, tensors)


def local_copy(tmp_path, name: str, data: bytes) -> str:
    d = tmp_path / "local"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)
    return str(d / name)


def fresh_dir(tmp_path, name: str):
    d = tmp_path / name
    d.mkdir()
    return d


def assert_same_numpy(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert got[k].shape == want[k].shape, k
        assert got[k].tobytes() == want[k].tobytes(), k


def assert_same_torch(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert torch.equal(got[k], want[k]), k


# --- an HTTP server with byte ranges and faults -----------------------------
class Served:
    """What the HTTP server serves, the faults it injects, what it sent."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self.faults: list[str] = []  # consumed one per GET: "503", "cut", "short"
        self.ignore_range = False
        self.honor_if_match = True
        self.send_etag = True
        self.send_date = True
        self.corrupt: tuple[str, int] | None = None  # (path, file offset) flipped in flight
        self.bytes_sent = 0
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    def put(self, path: str, data: bytes) -> None:
        with self.lock:
            self.files[path] = data
            self.versions[path] = self.versions.get(path, 0) + 1

    def etag(self, path: str) -> str:
        return '"' + hashlib.md5(self.files[path]).hexdigest() + '"'


def handler_for(served: Served):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _status(self, code: int, headers=()):
            served.statuses.append(code)
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)

        def do_HEAD(self):
            self._serve(body=False)

        def do_GET(self):
            self._serve(body=True)

        def _serve(self, body: bool):
            with served.lock:
                data = served.files.get(self.path)
                fault = served.faults.pop(0) if body and served.faults and data is not None else None
                etag = served.etag(self.path) if data is not None else None
                version = served.versions.get(self.path, 0)
            if data is None:
                self._status(404, [("Content-Length", "0")])
                self.end_headers()
                return
            if fault == "503":
                self._status(503, [("Content-Length", "0")])
                self.end_headers()
                return
            if_match = self.headers.get("If-Match")
            if if_match and served.honor_if_match and if_match != etag:
                self._status(412, [("Content-Length", "0")])
                self.end_headers()
                return
            size = len(data)
            start, end, partial = 0, size, False
            rng = self.headers.get("Range")
            if rng and not served.ignore_range:
                a, b = rng.removeprefix("bytes=").split("-")
                if a == "":
                    start, end = max(0, size - int(b)), size
                else:
                    start, end = int(a), size if b == "" else min(size, int(b) + 1)
                if start >= size:
                    self._status(416, [("Content-Range", f"bytes */{size}"), ("Content-Length", "0")])
                    self.end_headers()
                    return
                partial = True
            chunk = bytearray(data[start:end])
            if served.corrupt and served.corrupt[0] == self.path and start <= served.corrupt[1] < end:
                chunk[served.corrupt[1] - start] ^= 0xFF
            if fault == "short":  # a clean response of half the bytes its Content-Range names
                chunk = chunk[: len(chunk) // 2]
            headers = [("Content-Length", str(len(chunk))), ("Accept-Ranges", "bytes")]
            if served.send_etag:
                headers.append(("ETag", etag))
            if served.send_date:
                headers.append(("Last-Modified", formatdate(1_700_000_000 + version, usegmt=True)))
            if partial:
                headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
            self._status(206 if partial else 200, headers)
            self.end_headers()
            if not body:
                return
            # Counted before sending: the client may go on before this thread does.
            if fault == "cut":  # half the body, then the connection drops
                with served.lock:
                    served.bytes_sent += len(chunk) // 2
                self.wfile.write(chunk[: len(chunk) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            with served.lock:
                served.bytes_sent += len(chunk)
            self.wfile.write(chunk)

    return Handler


@pytest.fixture
def http():
    served = Served()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(served))
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    served.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield served
    server.shutdown()
    server.server_close()


# --- moto's S3 server ------------------------------------------------------
@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """An S3 bucket on moto; the AWS_* variables point at it, as a user sets them."""
    import boto3

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="ckpt")
    return client


# --- results identical to local reads -----------------------------------------
@pytest.mark.parametrize("kind", ["zt", "zt-zstd", "safetensors"])
def test_s3_reads_match_local(tmp_path, s3, kind):
    name, data = make_file(tmp_path, kind)
    s3.put_object(Bucket="ckpt", Key=f"run/{name}", Body=data)
    url = f"s3://ckpt/run/{name}"
    local = local_copy(tmp_path, name, data)
    assert list(ztnp.load_file(url)) == list(ztnp.load_file(local))  # file order
    for copy in (False, True):
        assert_same_numpy(ztnp.load_file(url, copy=copy), ztnp.load_file(local, copy=copy))
        assert_same_torch(zttorch.load_file(url, copy=copy), zttorch.load_file(local, copy=copy))
    with ztensor.open(url) as r, Reader(local) as want:
        assert r.keys() == want.keys() and r.format == want.format
        assert r.metadata() == want.metadata()
        for k in want.keys():
            assert r[k].tobytes() == want[k].tobytes()
            assert r.metadata(k) == want.metadata(k)
        r.verify()


@pytest.mark.parametrize("kind", ["zt", "zt-zstd", "safetensors"])
def test_http_reads_match_local(tmp_path, http, kind):
    name, data = make_file(tmp_path, kind)
    http.put(f"/files/{name}", data)
    url = f"{http.base}/files/{name}"
    local = local_copy(tmp_path, name, data)
    assert_same_numpy(ztnp.load_file(url), ztnp.load_file(local))
    assert_same_torch(zttorch.load_file(url, copy=True), zttorch.load_file(local, copy=True))
    with ztensor.safe_open(url, "np") as f, ztensor.safe_open(local, "np") as g:
        assert f.keys() == g.keys() and f.metadata() == g.metadata()
        for k in g.keys():
            assert f.get_tensor(k).tobytes() == g.get_tensor(k).tobytes()
        k = "layer.1.weight"
        assert f.get_slice(k)[10:50].tobytes() == g.get_slice(k)[10:50].tobytes()


def test_single_tensor_read_fetches_a_small_fraction(tmp_path, http):
    """Reader[name] on a 16 MiB file fetches its manifest and that tensor only."""
    for kind in ("zt", "safetensors"):
        tensors = arrays(n=16, size=MiB)
        name, data = make_file(tmp_path, kind, tensors)
        http.put(f"/{name}", data)
        http.bytes_sent = 0
        with Reader(f"{http.base}/{name}") as r:
            got = r["layer.7.weight"]
        assert got.tobytes() == tensors["layer.7.weight"].tobytes()
        # 1 MiB of tensor plus at most 256 KiB of manifest/header guess.
        assert http.bytes_sent <= MiB + 300 * 1024, (kind, http.bytes_sent)
        assert http.bytes_sent < len(data) / 10
        # Loading everything fetches each byte once (plus the first guess).
        http.bytes_sent = 0
        assert_same_numpy(ztnp.load_file(f"{http.base}/{name}"), tensors)
        assert http.bytes_sent <= len(data) + 300 * 1024, (kind, http.bytes_sent, len(data))


def test_fetch_tuning_gives_the_same_bytes(tmp_path, http):
    tensors = arrays(n=5, size=300_000)
    name, data = make_file(tmp_path, "zt-zstd", tensors)
    http.put(f"/{name}", data)
    for options in (
        {"request_size": 4096, "concurrency": 3, "merge_gap": 0},
        {"request_size": 64 * MiB, "concurrency": 1, "merge_gap": 10 * MiB},
        {"concurrency": 64, "timeout": "30s"},
    ):
        assert_same_numpy(ztnp.load_file(f"{http.base}/{name}", storage_options=options), tensors)


# --- faults ----------------------------------------------------------------
def test_503s_are_retried(tmp_path, http):
    name, data = make_file(tmp_path, "zt-zstd")
    http.put(f"/{name}", data)
    http.faults = ["503", "503"]  # the open's first request, then its retry
    with Reader(f"{http.base}/{name}") as r:
        http.faults = ["503", "503", "503"]
        assert r["layer.2.weight"].tobytes() == arrays()["layer.2.weight"].tobytes()
    assert http.statuses.count(503) == 5


@pytest.mark.parametrize("fault", ["cut", "short"])
def test_body_cut_short_never_gives_wrong_data(tmp_path, http, fault):
    tensors = arrays(n=4, size=2 * MiB)
    name, data = make_file(tmp_path, "safetensors", tensors)  # no digests: only the length check guards
    http.put(f"/{name}", data)
    with Reader(f"{http.base}/{name}") as r:
        http.faults = [fault] * 3
        assert_same_numpy(r.read_tensors(list(tensors)), tensors)


def test_a_server_that_ignores_range(tmp_path, http):
    """The whole file is fetched once and every read comes from it."""
    name, data = make_file(tmp_path, "zt-zstd")
    http.put(f"/{name}", data)
    http.ignore_range = True
    with Reader(f"{http.base}/{name}") as r:
        assert_same_numpy(r.load_numpy(), arrays())
    assert 206 not in http.statuses
    # The first (ranged) request's whole-file answer is dropped by the client,
    # then the file is fetched once more: twice the file, never more.
    assert http.bytes_sent == 2 * len(data)


def test_corrupted_bytes_fail_the_digest(tmp_path, http):
    name, data = make_file(tmp_path, "zt-zstd")
    http.put(f"/{name}", data)
    with Reader(f"{http.base}/{name}") as r, Reader(local_copy(tmp_path, name, data)) as local:
        offset = local.metadata("layer.3.weight").components["data"]["offset"]
        http.corrupt = (f"/{name}", offset + 5)
        with pytest.raises(ZTensorError, match="layer.3.weight.*(checksum|crc32c)"):
            r["layer.3.weight"]
        assert r["layer.2.weight"].tobytes() == local["layer.2.weight"].tobytes()


@pytest.mark.parametrize("honor_if_match", [True, False])
@pytest.mark.parametrize("kind", ["zt", "safetensors"])
def test_file_replaced_between_requests_is_detected(tmp_path, http, kind, honor_if_match):
    name, data = make_file(tmp_path, kind)
    http.put(f"/{name}", data)
    http.honor_if_match = honor_if_match  # False: the ETag of the answer gives it away
    with Reader(f"{http.base}/{name}") as r:
        changed = dict(arrays())
        changed["layer.0.weight"] = changed["layer.0.weight"] + 1
        http.put(f"/{name}", make_file(fresh_dir(tmp_path, "v2"), kind, changed)[1])
        with pytest.raises(ZTensorError, match="changed on the server"):
            r["layer.0.weight"]


@pytest.mark.parametrize("send_date", [True, False])
def test_servers_without_etags(tmp_path, http, send_date):
    """Without an ETag the date tells versions apart; without either, the size."""
    name, data = make_file(tmp_path, "zt")
    http.put(f"/{name}", data)
    http.send_etag, http.send_date = False, send_date
    with Reader(f"{http.base}/{name}") as r:
        assert_same_numpy(r.load_numpy(), arrays())
        bigger = make_file(fresh_dir(tmp_path, "v2"), "zt", arrays(n=7))[1]
        http.put(f"/{name}", bigger)
        with pytest.raises(ZTensorError, match="changed on the server"):
            r["layer.0.weight"]


def test_file_replaced_on_s3_is_detected(tmp_path, s3):
    name, data = make_file(tmp_path, "zt")
    s3.put_object(Bucket="ckpt", Key=name, Body=data)
    with Reader(f"s3://ckpt/{name}") as r:
        s3.put_object(
            Bucket="ckpt", Key=name, Body=make_file(fresh_dir(tmp_path, "v2"), "zt", arrays(n=7))[1]
        )
        with pytest.raises(ZTensorError, match="changed on the server"):
            r["layer.0.weight"]


def test_missing_objects_are_file_not_found(tmp_path, http, s3):
    with pytest.raises(FileNotFoundError) as e:
        Reader(f"{http.base}/nope.zt")
    assert "nope.zt" in str(e.value)
    with pytest.raises(FileNotFoundError):
        ztnp.load_file("s3://ckpt/missing/model.safetensors")


def test_other_formats_are_refused_clearly(tmp_path, http):
    p = tmp_path / "a.npy"
    np.save(p, np.arange(3))
    http.put("/a.npy", p.read_bytes())
    with pytest.raises(ZTensorError, match=r"remote reading supports \.zt and \.safetensors.*npy"):
        Reader(f"{http.base}/a.npy")


def test_storage_options_are_checked():
    with pytest.raises(ValueError, match="unknown storage option 'no_such_key'"):
        Reader("s3://bucket/a.zt", storage_options={"no_such_key": "1"})
    with pytest.raises(ValueError, match="concurrency"):
        Reader("http://127.0.0.1:9/a.zt", storage_options={"concurrency": 0})
    with pytest.raises(TypeError, match="storage_options must be a dict"):
        Reader("http://127.0.0.1:9/a.zt", storage_options=[("a", "b")])
    with pytest.raises(ValueError, match="apply to URLs"):
        Reader("model.zt", storage_options={"concurrency": 2})


def test_s3_configured_by_storage_options_alone(tmp_path, s3, moto_endpoint, monkeypatch):
    for k in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    name, data = make_file(tmp_path, "safetensors")
    s3.put_object(Bucket="ckpt", Key=name, Body=data)
    options = {
        "aws_endpoint": moto_endpoint,
        "aws_allow_http": True,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    assert_same_numpy(ztnp.load_file(f"s3://ckpt/{name}", storage_options=options), arrays())


def test_a_forked_child_reads_from_a_reader_opened_before(tmp_path, http):
    """The runtime and the client are made again in a child process."""
    name, data = make_file(tmp_path, "zt")
    http.put(f"/{name}", data)
    with Reader(f"{http.base}/{name}") as r:
        want = arrays()["layer.4.weight"].tobytes()
        assert r["layer.4.weight"].tobytes() == want
        pid = os.fork()
        if pid == 0:  # child: exit status says whether the bytes match
            try:
                os._exit(0 if r["layer.4.weight"].tobytes() == want else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


# --- the CLI ---------------------------------------------------------------
def zt(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ztensor._cli", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_cli_info_verify_convert_a_url(tmp_path, http, s3):
    name, data = make_file(tmp_path, "zt-zstd")
    http.put(f"/{name}", data)
    s3.put_object(Bucket="ckpt", Key=name, Body=data)
    for url in (f"{http.base}/{name}", f"s3://ckpt/{name}"):
        info = zt("info", "--json", url)
        assert info.returncode == 0, info.stderr
        assert '"layer.0.weight"' in info.stdout and f'"file_size": {len(data)}' in info.stdout
        verify = zt("verify", url)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        out = tmp_path / "copy.safetensors"
        conv = zt("convert", url, out)
        assert conv.returncode == 0, conv.stderr
        assert_same_numpy(safetensors.numpy.load_file(str(out)), arrays())
        out.unlink()
    with Reader(local_copy(tmp_path, name, data)) as local:
        offset = local.metadata("layer.1.weight").components["data"]["offset"]
    http.corrupt = (f"/{name}", offset + 3)
    bad = zt("verify", f"{http.base}/{name}")
    assert bad.returncode != 0 and "checksum" in (bad.stdout + bad.stderr).lower()
