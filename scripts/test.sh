#!/usr/bin/env bash
# Runs every test: Rust (format, lints, every crate's tests) and Python (pytest).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "==> cargo test"
log="$(mktemp)"
if ! cargo test --workspace --exclude ztensor-py -q >"$log" 2>&1; then
    tail -n 80 "$log"
    exit 1
fi
grep -E "^test result" "$log"
echo "==> pytest"
python -m pytest tests/python -q "$@"
