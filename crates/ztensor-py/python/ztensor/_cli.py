"""The ``zt`` console script: the Rust command line of ``ztensor-cli``.

Installing the package installs ``zt``, which runs exactly the code of the
cargo-built ``zt`` binary (``ztensor._ztensor.cli_main``); ``python -m
ztensor._cli ...`` does the same. One command is served here instead:
``zt consolidate`` (a DCP checkpoint folder to one ``.zt``), whose stitching
lives in the Python package (``ztensor._dcp_source``).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Runs ``zt`` with ``argv`` (default ``sys.argv``) and exits with its status."""
    from ._ztensor import cli_main

    args = [str(a) for a in (sys.argv if argv is None else argv)]
    if not args:
        args = ["zt"]
    if len(args) > 1 and args[1] == "consolidate":
        raise SystemExit(_consolidate(args[2:]))
    # The native code writes to the file descriptors directly.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        code = cli_main(args)
    except KeyboardInterrupt:
        # Ctrl-C: the command stopped at its next check, removed any
        # unfinished output and said so; exit like a process killed by SIGINT.
        code = 130
    raise SystemExit(code)


def _consolidate(argv: list[str]) -> int:
    """``zt consolidate DCP_DIR OUT``: the full tensors of a checkpoint folder
    written by ``ztensor.torch.dcp`` as one ``.zt`` file."""
    import argparse

    from ._dcp_source import consolidate
    from ._ztensor import ZTensorError

    ap = argparse.ArgumentParser(
        prog="zt consolidate",
        description="Write a DCP checkpoint folder saved with ztensor.torch.dcp as one .zt file.",
    )
    ap.add_argument("dcp_dir", help="the checkpoint folder (holds ztensor-dcp.json)")
    ap.add_argument("output", help="the .zt file to write (replaced atomically)")
    ap.add_argument("--compress", type=int, default=0, metavar="LEVEL", help="zstd level (0: raw, default)")
    ap.add_argument("--checksum", default="crc32c", choices=("none", "crc32c", "sha256"))
    ap.add_argument(
        "--max-shard-size", default=None, metavar="SIZE", help="shard the output (5GB, 500MiB...)"
    )
    opts = ap.parse_args(argv)
    try:
        consolidate(
            opts.dcp_dir,
            opts.output,
            max_shard_size=opts.max_shard_size,
            compression=opts.compress,
            checksum=opts.checksum,
        )
    except (OSError, ZTensorError, ValueError) as e:
        print(f"zt consolidate: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {opts.output}")
    return 0


if __name__ == "__main__":
    main()
