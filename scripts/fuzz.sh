#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/, one after another, each for a fixed time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 600 seconds, every target (zt cbor safetensors pickle npz npy gguf
# onnx hdf5). Builds the targets, writes the seed corpora with
# fuzz/make_seeds.py when a target's corpus is missing, runs each target on
# one core (-jobs=1, RAYON_NUM_THREADS=1), then prints executions and corpus
# size per target. Crash inputs land in fuzz/artifacts/<target>/ (libFuzzer's
# artifact prefix under cargo-fuzz); turn each into a regression test under
# crates/ztensor-formats/tests/fuzz-regressions/<target>/.
#
# Only stable Rust is installed. By default the targets are built with
# AddressSanitizer through RUSTC_BOOTSTRAP=1 (stable rustc then accepts
# -Zsanitizer); FUZZ_SANITIZER=none builds with coverage instrumentation only.
# Environment: FUZZ_SANITIZER (address | none), PYTHON (seed generator's
# interpreter, default ~/.cache/ztensor/venv/bin/python), FUZZ_ARGS (extra
# libFuzzer flags).
set -euo pipefail

secs=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(zt cbor safetensors pickle npz npy gguf onnx hdf5)
fi
sanitizer=${FUZZ_SANITIZER:-address}
python=${PYTHON:-$HOME/.cache/ztensor/venv/bin/python}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --version 0.13.2 --locked" >&2
    exit 2
fi

fuzz() { # cargo fuzz SUBCOMMAND ARGS...: the build flags every call must share
    local sub=$1
    shift
    if [ "$sanitizer" = none ]; then
        cargo fuzz "$sub" -O -s none "$@"
    else
        RUSTC_BOOTSTRAP=1 cargo fuzz "$sub" -O -s "$sanitizer" "$@"
    fi
}

for t in "${targets[@]}"; do
    fuzz build "$t"
done

for t in "${targets[@]}"; do
    if [ -z "$(ls -A "corpus/$t" 2>/dev/null)" ]; then
        "$python" make_seeds.py corpus
        break
    fi
done

mkdir -p logs
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(ls "artifacts/$t" | wc -l)
    echo "== $t: ${secs}s (sanitizer: $sanitizer)"
    rm -f fuzz-0.log
    start=$(date +%s)
    # -jobs=1 runs the fuzzer in one child process whose output goes to fuzz-0.log.
    # No buffer pool: its MADV_FREE'd pages count in RSS, which libFuzzer limits.
    # shellcheck disable=SC2086
    ZTENSOR_BUFFER_POOL_BYTES=0 RAYON_NUM_THREADS=1 fuzz run "$t" "corpus/$t" -- \
        -jobs=1 -workers=1 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 ${FUZZ_ARGS:-} >/dev/null 2>&1 || true
    took=$(($(date +%s) - start))
    [ -f fuzz-0.log ] && mv fuzz-0.log "logs/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "logs/$t.log" | tail -n 1 | grep -o '[0-9]*$' || echo "?")
    files=$(ls "corpus/$t" | wc -l)
    bytes=$(du -sb "corpus/$t" | cut -f1)
    after=$(ls "artifacts/$t" | wc -l)
    line="$t: $execs executions in ${took}s, corpus $files files ($bytes bytes), $((after - before)) new crash inputs"
    echo "$line"
    summary+=("$line")
    if [ "$after" -gt "$before" ]; then
        status=1
        ls -t "artifacts/$t" | head -n $((after - before)) | sed "s|^|    fuzz/artifacts/$t/|"
        grep -m 3 -E 'panicked|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY' "logs/$t.log" | sed 's/^/    /' || true
    fi
done

echo
echo "== summary (logs in fuzz/logs/)"
printf '%s\n' "${summary[@]}"
exit $status
