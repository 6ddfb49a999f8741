#!/usr/bin/env bash
# Python bindings: builds the `sockline` package into .venv, then runs mypy --strict (tests,
# package, bench), stubtest (stubs vs the compiled module), pytest (scenarios, golden traces,
# the real hub) and a quick benchmark. Works with CARGO_TARGET_DIR set or unset.
# BENCH=0 skips the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

TARGET="${CARGO_TARGET_DIR:-target}"
VENV=.venv
PY="$VENV/bin/python"
PINS=("maturin==1.16.0" "pytest==9.2.0" "mypy==2.4.1" "websockets==17.4")

step "python venv ($VENV) and pinned tools"
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
missing=()
for pin in "${PINS[@]}"; do
  name="${pin%%==*}"
  want="${pin#*==}"
  have="$("$PY" -c "import importlib.metadata as m,sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: print('')" "$name")"
  [ "$have" = "$want" ] || missing+=("$pin")
done
if [ "${#missing[@]}" -gt 0 ]; then
  "$PY" -m pip install -q --disable-pip-version-check "${missing[@]}"
else
  echo "all pinned: ${PINS[*]}"
fi

export PYO3_PYTHON="$PWD/$PY"
export VIRTUAL_ENV="$PWD/$VENV"
export PATH="$PWD/$VENV/bin:$PATH"

step "build and install the sockline package (maturin develop --release)"
(cd bindings-python && maturin develop --release -q)

step "sockline binary for the hub and replay tests"
cargo build -q -p sockline-tokio --features cli --bin sockline
case "$TARGET" in /*) ;; *) TARGET="$PWD/$TARGET" ;; esac
export SOCKLINE_BIN="$TARGET/debug/sockline"
test -x "$SOCKLINE_BIN"

step "mypy --strict (tests, package, bench) and stubtest"
(cd bindings-python && mypy --strict tests python/sockline bench examples)
(cd bindings-python && python -m mypy.stubtest sockline._sockline)

step "pytest"
(cd bindings-python && python -m pytest -q tests)

step "examples: regression test from a recorded trace, reconnect QA against a chaotic hub"
python bindings-python/examples/regression_from_trace.py --check
python bindings-python/examples/qa_reconnect_chaos.py --spawn "$SOCKLINE_BIN" --seconds 4

if [ "${BENCH:-1}" != 0 ]; then
  step "benchmark (quick)"
  python bindings-python/bench/bench_receive.py --quick
fi

step "python bindings: all passed"
