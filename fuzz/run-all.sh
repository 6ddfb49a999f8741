#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS; exits non-zero if any target crashes,
# hangs (-timeout) or fails to build.
#
#   fuzz/run-all.sh SECONDS [TARGET...]      e.g. fuzz/run-all.sh 20   (CI)
#
# Each target runs on its own working corpus fuzz/corpus/<target>/, seeded with a copy of the
# committed fuzz/corpus/seed/; the seed directory is only read, and everything written
# (fuzz/corpus/<target>/, fuzz/artifacts/, fuzz/target/) is gitignored.
#
# FUZZ_SANITIZER (default none) is passed to cargo fuzz -s: sockline-core forbids unsafe code, and
# without AddressSanitizer the targets run ~6x more executions per second; set it to `address`
# for a sanitized run.
set -euo pipefail

secs=${1:?usage: fuzz/run-all.sh SECONDS [TARGET...]}
shift
case $secs in '' | *[!0-9]*) echo "SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;; esac
cd "$(dirname "$0")"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame trace inputs hub)
fi

# libFuzzer needs nightly's -Z flags; without a nightly toolchain, stable with RUSTC_BOOTSTRAP=1 works.
if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== $(date +%T) installing cargo-fuzz"
    cargo install cargo-fuzz
fi

# The fuzz crate has its own target dir (fuzz/target); a caller's CARGO_TARGET_DIR would pull it elsewhere.
unset CARGO_TARGET_DIR
sanitizer=(-s "${FUZZ_SANITIZER:-none}")

echo "== $(date +%T) building fuzz targets"
"${fuzz[@]}" build "${sanitizer[@]}"

failed=()
# Every crash ever found stays a regression input: each must now run clean through its target.
for repro in crashes-found/*; do
    case $repro in *.md) continue ;; esac
    name=${repro##*/}
    target=${name%%-*}
    echo "== $(date +%T) regression: $name through $target"
    if ! "${fuzz[@]}" run "${sanitizer[@]}" "$target" "$repro" >/dev/null 2>&1; then
        echo "!! regression $name crashes $target again" >&2
        failed+=("$name")
    fi
done

for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    for seed in corpus/seed/*; do
        [ -e "$corpus/${seed##*/}" ] || cp "$seed" "$corpus/"
    done
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    case $target in
        frame | trace) args+=(-dict=sockline.dict) ;;
    esac
    echo "== $(date +%T) fuzzing $target for ${secs}s"
    log=$(mktemp)
    rc=0
    "${fuzz[@]}" run "${sanitizer[@]}" "$target" "$corpus" -- "${args[@]}" >"$log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        echo "!! $target FAILED (exit $rc):" >&2
        grep -m 5 -A 1 'panicked at' "$log" >&2 || true
        echo "-- last lines of its log:" >&2
        tail -n 25 "$log" >&2
        failed+=("$target")
    fi
    rm -f "$log"
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "== $(date +%T) fuzzing found problems in: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
    exit 1
fi
echo "== $(date +%T) all fuzz targets ran ${secs}s without a crash: ${targets[*]}"
