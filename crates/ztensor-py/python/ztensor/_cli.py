"""The ``zt`` console script: the Rust command line of ``ztensor-cli``.

Installing the package installs ``zt``, which runs exactly the code of the
cargo-built ``zt`` binary (``ztensor._ztensor.cli_main``); ``python -m
ztensor._cli ...`` does the same.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Runs ``zt`` with ``argv`` (default ``sys.argv``) and exits with its status."""
    from ._ztensor import cli_main

    args = [str(a) for a in (sys.argv if argv is None else argv)]
    if not args:
        args = ["zt"]
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


if __name__ == "__main__":
    main()
