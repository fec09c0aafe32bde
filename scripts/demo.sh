#!/usr/bin/env bash
# The main job: builds the package, then saves, loads, compresses, verifies
# and converts real tensors, printing what it did.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
echo "==> cargo run --example quickstart (Rust API)"
cargo run -q --release -p ztensor --example quickstart
echo "==> python examples/demo.py (Python API)"
python examples/demo.py "$@"
