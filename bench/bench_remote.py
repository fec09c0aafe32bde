#!/usr/bin/env python3
"""Remote loading benchmark (issue 15): a ~1 GiB Llama-shaped checkpoint read
over the loopback from moto's S3 server and from an HTTP server with byte
ranges, by ztensor and by its peers, in one run.

A benchmark, not a test: it measures and reports, never fails on figures.

Candidates (each load in a fresh child process; the time is from the first
call to every tensor in memory as torch tensors, imports excluded; peak
memory is the child's peak RSS minus its RSS before loading):

* ``ztensor s3 .safetensors`` / ``.zt``: ``ztensor.torch.load_file("s3://...")``
* ``ztensor http .safetensors`` / ``.zt``: the same from ``http://...``
* ``boto3 get + st.load``: ``get_object(...)["Body"].read()`` then
  ``safetensors.torch.load(bytes)``
* ``boto3 download_file + st.load_file``: boto3's concurrent ranged download
  to a local file (tmpfs/disk), then ``safetensors.torch.load_file`` with
  every page touched
* ``urllib + st.load``: the HTTP body read whole, then ``safetensors.torch.load``
* ``runai s3``: ``runai_model_streamer.SafetensorsStreamer`` from ``s3://``
  (its S3 backend, ``runai-model-streamer-s3``), tensors cloned as kept

moto 5.2.5 reads the whole object (a copy, from its spooled file) for every
GET, ranged or not, before slicing the range: each ranged request costs
moto a full 1 GiB read and 1 GiB of memory. With the defaults (ours: 16
requests of 8 MiB in flight; runai: its defaults; boto3 download_file: 10
threads of 8 MiB parts) moto needs 10-16 GiB at once and minutes per load
(a first run here: ours 152 s, then a load failing on moto's timeouts). So
every ranged reader on S3 is given the same moto-sized settings: requests of
64 MiB, 2 in flight (ours: ``storage_options={"request_size": 64 MiB,
"concurrency": 2}``; runai: ``RUNAI_STREAMER_CHUNK_BYTESIZE`` and
``RUNAI_STREAMER_CONCURRENCY``; boto3: ``TransferConfig``). The S3 figures
still mostly measure moto; the HTTP server (sendfile of the asked range) is
the fair ground for range readers. S3 candidates run once each
(``--s3-repeats``), without warm-up.

Every candidate's tensors are checked against the local file (CRC32 of every
tensor's bytes, outside the timing). Ratios are ztensor time / peer time
(< 1: ztensor faster). The servers run in their own processes; the machine
has few cores, shared by server and client (and by other jobs: see the load
average in the log).

Usage::

    python bench/bench_remote.py [--size-mib 1024] [--repeats 3] [--log PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


# --- the HTTP server (run as a child: --serve-http DIR PORT) -------------------
def serve_http(root: str, port: int) -> None:
    from email.utils import formatdate
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = os.path.join(root, self.path.lstrip("/"))
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            try:
                st = os.fstat(fd)
                size, start, end = st.st_size, 0, st.st_size
                rng = self.headers.get("Range")
                if rng:
                    a, b = rng.removeprefix("bytes=").split("-")
                    if a == "":
                        start = max(0, size - int(b))
                    else:
                        start, end = int(a), size if b == "" else min(size, int(b) + 1)
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(end - start))
                self.send_header("ETag", f'"{st.st_ino}-{st.st_mtime_ns}-{size}"')
                self.send_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
                self.end_headers()
                self.wfile.flush()
                at = start
                while at < end:
                    n = os.sendfile(self.connection.fileno(), fd, at, min(end - at, 64 * MiB))
                    if n == 0:
                        break
                    at += n
            finally:
                os.close(fd)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no server on port {port}")


# --- one load, in a child process (--child CANDIDATE URL) ---------------------
def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(candidate: str, url: str, scratch: str) -> None:
    import resource

    import safetensors.torch
    import torch

    import ztensor.torch as zttorch

    if candidate.startswith("boto3"):
        import boto3

        s3 = boto3.client("s3")
        bucket, key = url.removeprefix("s3://").split("/", 1)
    if candidate == "runai":
        from runai_model_streamer import SafetensorsStreamer
    import urllib.request

    base = rss_mib()
    t0 = time.perf_counter()
    if candidate.startswith("ztensor"):
        options = MOTO_OPTIONS if url.startswith("s3://") else None
        tensors = zttorch.load_file(url, storage_options=options)
    elif candidate == "boto3-get":
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        tensors = safetensors.torch.load(body)
        del body
    elif candidate == "boto3-download":
        local = os.path.join(scratch, "downloaded.safetensors")
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MOTO_REQUEST, multipart_chunksize=MOTO_REQUEST, max_concurrency=MOTO_INFLIGHT
        )
        s3.download_file(bucket, key, local, Config=config)
        tensors = safetensors.torch.load_file(local)
        for t in tensors.values():  # every page in memory, as the others give it
            if t.numel():
                t.view(-1).view(torch.uint8)[::4096].sum()
    elif candidate == "urllib":
        with urllib.request.urlopen(url) as r:
            body = r.read()
        tensors = safetensors.torch.load(body)
        del body
    elif candidate == "runai":
        tensors = {}
        with SafetensorsStreamer() as streamer:
            streamer.stream_file(url)
            for name, t in streamer.get_tensors():
                tensors[name] = t.clone()
    else:
        raise SystemExit(f"unknown candidate {candidate}")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    crcs = {n: zlib.crc32(t.contiguous().view(-1).view(torch.uint8).numpy()) for n, t in tensors.items()}
    print(json.dumps({"seconds": seconds, "peak_mib": peak - base, "crc": crcs}))


# --- the parent --------------------------------------------------------------
# What moto can serve (see the docstring): every ranged reader on S3 gets these.
MOTO_REQUEST = 64 * MiB  # runai's S3 backend fails on 128 MiB chunks ("File access error")
MOTO_INFLIGHT = 2
MOTO_OPTIONS = {"request_size": MOTO_REQUEST, "concurrency": MOTO_INFLIGHT}

CANDIDATES = [
    ("ztensor http .safetensors", "ztensor", "http", "model.safetensors"),
    ("ztensor http .zt", "ztensor", "http", "model.zt"),
    ("urllib + st.load", "urllib", "http", "model.safetensors"),
    ("ztensor s3 .safetensors", "ztensor", "s3", "model.safetensors"),
    ("ztensor s3 .zt", "ztensor", "s3", "model.zt"),
    ("boto3 get + st.load", "boto3-get", "s3", "model.safetensors"),
    ("boto3 download_file + st.load_file", "boto3-download", "s3", "model.safetensors"),
    ("runai s3 .safetensors", "runai", "s3", "model.safetensors"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="runs per HTTP candidate (after a warm-up)")
    ap.add_argument("--s3-repeats", type=int, default=1, help="runs per S3 candidate (no warm-up)")
    ap.add_argument("--log", default=None, help="write the report here too")
    ap.add_argument("--only", default=None, help="comma-separated candidate labels (substring match)")
    ap.add_argument("--serve-http", nargs=2, metavar=("DIR", "PORT"), help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=3, metavar=("CANDIDATE", "URL", "SCRATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_http:
        serve_http(args.serve_http[0], int(args.serve_http[1]))
        return 0
    if args.child:
        child(*args.child)
        return 0

    import boto3
    import safetensors.torch
    import torch

    sys.path.insert(0, HERE)
    import ztensor.torch as zttorch
    from bench import build_llama, to_torch

    work = tempfile.mkdtemp(prefix="ztensor-bench-remote-", dir=os.environ.get("ZTENSOR_BENCH_DIR"))
    procs = []
    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    try:
        tensors = to_torch(build_llama(args.size_mib * MiB)[0])
        st_path = os.path.join(work, "model.safetensors")
        zt_path = os.path.join(work, "model.zt")
        safetensors.torch.save_file(tensors, st_path)
        zttorch.save_file(tensors, zt_path)
        want = {n: zlib.crc32(t.contiguous().view(-1).view(torch.uint8).numpy()) for n, t in tensors.items()}
        n_tensors, nbytes = len(tensors), sum(t.numel() * t.element_size() for t in tensors.values())
        del tensors

        env = dict(os.environ)
        moto_port, http_port = free_port(), free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve-http", work, str(http_port)]))
        wait_port(moto_port)
        wait_port(http_port)
        endpoint = f"http://127.0.0.1:{moto_port}"
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_ENDPOINT_URL=endpoint,
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ALLOW_HTTP="true",
            AWS_EC2_METADATA_DISABLED="true",
            RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING="0",
            RUNAI_STREAMER_CHUNK_BYTESIZE=str(MOTO_REQUEST),
            RUNAI_STREAMER_CONCURRENCY=str(MOTO_INFLIGHT),
        )
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="bench")
        for p in (st_path, zt_path):
            s3.upload_file(p, "bench", os.path.basename(p))

        out(f"# bench_remote: {n_tensors} tensors, {nbytes / MiB:.0f} MiB (Llama-shaped, bf16), loopback")
        out(f"# {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        out(f"# servers: moto {__import__('moto').__version__} (S3), http.server + sendfile (HTTP)")
        out("# machine shared with other jobs (bench lock held); loadavg at start: " + _loadavg())
        out(
            f"# HTTP: {args.repeats} runs each after 1 warm-up; S3: {args.s3_repeats} run(s) each;"
            " each in a fresh child; median (best)"
        )
        out("# moto reads the whole object for every GET (see the docstring): on S3 every ranged reader")
        out(f"# fetches {MOTO_REQUEST // MiB} MiB per request, {MOTO_INFLIGHT} in flight")
        out("# (S3 times mostly measure moto)")
        out()
        results = {}
        chosen = [c for c in CANDIDATES if not args.only or any(o in c[0] for o in args.only.split(","))]
        for label, cand, where, fname in chosen:
            url = f"s3://bench/{fname}" if where == "s3" else f"http://127.0.0.1:{http_port}/{fname}"
            runs, error = [], None
            warmups = 1 if where == "http" else 0
            for i in range((args.repeats if where == "http" else args.s3_repeats) + warmups):
                scratch = tempfile.mkdtemp(dir=work)
                r = subprocess.run(
                    [sys.executable, __file__, "--child", cand, url, scratch],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                subprocess.run(["rm", "-rf", scratch])
                if r.returncode != 0:
                    error = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
                    break
                res = json.loads(r.stdout.strip().splitlines()[-1])
                if res["crc"] != want:
                    error = "tensors differ from the local file"
                    break
                if i >= warmups:
                    runs.append(res)
            if error:
                out(f"{label:38s} FAILED: {error[:300]}")
                continue
            secs = [r["seconds"] for r in runs]
            peak = statistics.median(r["peak_mib"] for r in runs)
            med = statistics.median(secs)
            results[label] = med
            out(
                f"{label:38s} {med:7.2f} s ({min(secs):.2f})  {nbytes / MiB / med:7.0f} MiB/s"
                f"  peak +{peak:6.0f} MiB"
            )
        out()
        for ours, peers in (
            ("ztensor s3 .safetensors", [c[0] for c in CANDIDATES if c[2] == "s3" and c[1] != "ztensor"]),
            ("ztensor http .safetensors", ["urllib + st.load"]),
        ):
            for peer in peers:
                if ours in results and peer in results:
                    out(f"ratio {ours} / {peer}: {results[ours] / results[peer]:.2f}")
        out("# loadavg at end: " + _loadavg())
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        subprocess.run(["rm", "-rf", work])
    if args.log:
        with open(args.log, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
