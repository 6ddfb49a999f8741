#!/usr/bin/env bash
# The wasm bindings: npm packages (npm ci, skipped when node_modules matches the lockfile),
# the package build (bindings-wasm/build.sh: cargo for wasm32, wasm-bindgen, wasm-opt, esbuild,
# tsc), then the Node tests against the built dist/. Works with CARGO_TARGET_DIR set or unset.
set -euo pipefail
cd "$(dirname "$0")/../bindings-wasm"
step() { printf '\n==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

step "npm packages (bindings-wasm)"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.lock-sha256 2>/dev/null)" = "$want" ]; then
  echo "node_modules matches package-lock.json"
else
  npm ci --no-audit --no-fund
  echo "$want" >node_modules/.lock-sha256
fi

step "wasm-bindgen-test: the bindings compiled to wasm32, run under Node"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p sockline-wasm --target wasm32-unknown-unknown --test wasm 2>&1 | grep -v "^ *Compiling"

step "build the package (wasm32, wasm-bindgen, wasm-opt -Oz, esbuild, tsc)"
./build.sh
for f in dist/sockline_wasm_bg.wasm dist/index.js dist/chunk-*.js dist/react.js dist/sockline_wasm_testing_bg.wasm dist/testing.js; do
  printf '%-28s %8d bytes, %8d gzipped\n' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)"
done

step "node tests (bindings-wasm/test, against the real hub binary)"
cargo build -q -p sockline-tokio --features cli --bin sockline
# Node 20 has a WebSocket (undici's) behind a flag; later versions have it on by default.
# --test-force-exit: a test that fails midway must not leave a reconnecting client keeping Node alive.
node --experimental-websocket --test --test-force-exit --test-timeout=120000 test/*.test.mjs

step "headless Chromium: the demo page against the real hub (screenshots in target/browser/)"
node --test --test-force-exit --test-timeout=180000 browser/*.test.mjs
