#!/usr/bin/env bash
# Runs every test: Rust (format, lints, every crate's tests), Python lint and format
# (ruff), the type stubs of the native module (mypy.stubtest) and Python (pytest).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> ruff check, ruff format --check (Python lint and format; ruff.toml)"
ruff check .
ruff format --check .
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "==> ztensor-formats with no foreign format (.zt + safetensors; no protobuf, no HDF5)"
cargo check -p ztensor-formats --no-default-features -q
echo "==> cargo test"
log="$(mktemp)"
if ! cargo test --workspace --exclude ztensor-py -q >"$log" 2>&1; then
    tail -n 80 "$log"
    exit 1
fi
grep -E "^test result" "$log"
echo "==> mypy.stubtest (the native module's type stubs match it)"
MYPY_CACHE_DIR="$CACHE/mypy" python -m mypy.stubtest ztensor._ztensor
echo "==> pytest"
python -m pytest tests/python -q "$@"
