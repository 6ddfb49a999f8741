#!/usr/bin/env bash
# Builds the browser benchmark page into bindings-wasm/dist/bench/ (after ../build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/bench
node_modules/.bin/esbuild bench/bench.ts --bundle --format=esm --platform=browser --target=es2022 \
  --minify --external:node:* --outfile=dist/bench/bench.js --log-level=warning
cp bench/index.html dist/bench/
cp dist/sockline_wasm_bg.wasm dist/bench/
