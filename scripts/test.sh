#!/usr/bin/env bash
# Runs every test: Rust (core crate, lints) and Python (pytest).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "==> cargo test"
cargo test -p ztensor -p ztensor-cli -q 2>&1 | tail -n 40
echo "==> pytest"
python -m pytest tests/python -q "$@"
