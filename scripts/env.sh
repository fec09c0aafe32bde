# Sourced by the other scripts: makes sure the toolchain and a Python
# virtualenv with every dependency exist, then builds the ztensor package
# into it. Heavy installs are cached under ~/.cache/ztensor (never in the repo).
# The caller's shell options are restored at the end, so sourcing it from an
# interactive shell does not leave `set -e` behind.
# (errexit from $- here: a command substitution runs with it off.)
_ztensor_saved_opts="$(set +o)"
case $- in *e*) _ztensor_saved_opts+="; set -e" ;; *) _ztensor_saved_opts+="; set +e" ;; esac
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ZTENSOR_CACHE:-$HOME/.cache/ztensor}"
VENV="$CACHE/venv"
export ZTENSOR_REF_DIR="${ZTENSOR_REF_DIR:-$CACHE/ref}"

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "error: cargo (Rust) is required: https://rustup.rs" >&2
        exit 1
    fi
fi

PYTHON="${PYTHON:-python3}"
stamp="$VENV/.requirements.$(sha256sum "$ROOT/scripts/requirements-dev.txt" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "==> setting up the Python environment in $VENV (first run only)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$ROOT/scripts/requirements-dev.txt"
    touch "$stamp"
fi
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"

if [ ! -d "$ZTENSOR_REF_DIR/ztensor" ]; then
    echo "==> installing the reference implementation ztensor==1.2.3 into $ZTENSOR_REF_DIR (test oracle only)"
    python -m pip install -q --no-deps --target "$ZTENSOR_REF_DIR" ztensor==1.2.3
fi

echo "==> building the ztensor Python package (release)"
# Under a lock: two scripts building into one venv at once would clash.
mkdir -p "$CACHE"
(cd "$ROOT/crates/ztensor-py" && flock "$CACHE/build.lock" maturin develop --release -q 2>&1 | grep -v "^Ignoring\|^Requirement already" || true)
python -c "import ztensor" || { echo "error: the ztensor package did not build" >&2; exit 1; }
eval "$_ztensor_saved_opts"
unset _ztensor_saved_opts
