#!/usr/bin/env bash
# Runs every test of the project: the README's one test command, and what CI runs.
# FUZZ_SECONDS (default 20) bounds the fuzz smoke run per target; 0 skips it. BENCH=0 skips the
# quick Python benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy (deny warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "unit, scenario, property and golden tests (+ benches in test mode)"
cargo test --workspace --all-targets

step "doc tests"
cargo test --workspace --doc

step "replay example prints the golden output"
cargo build -q -p sockline-core --example replay
for trace in core/tests/traces/*.json; do
  diff -u "${trace%.json}.out" <("${CARGO_TARGET_DIR:-target}/debug/examples/replay" "$trace")
done

step "python bindings (venv, build, mypy --strict, pytest, examples, quick bench)"
./scripts/test-python.sh

step "wasm bindings (npm ci, wasm32 build, wasm-bindgen, esbuild, node tests)"
./scripts/test-wasm.sh

if [ "${FUZZ_SECONDS:-20}" != 0 ] && [ -x fuzz/run-all.sh ]; then
  step "fuzz smoke (${FUZZ_SECONDS:-20}s per target)"
  fuzz/run-all.sh "${FUZZ_SECONDS:-20}"
fi

step "all tests passed"
