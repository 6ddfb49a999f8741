#!/usr/bin/env bash
# Builds the `sockline` npm package into bindings-wasm/dist/: the wasm (cargo for wasm32 with the
# size profile, wasm-opt -Oz from binaryen, then the wasm-bindgen CLI at the crate's pinned
# version), the ES module bundled by esbuild, and its .d.ts from tsc. Works with
# CARGO_TARGET_DIR set or unset.
set -euo pipefail
cd "$(dirname "$0")"
TARGET="${CARGO_TARGET_DIR:-../target}"

cargo build -q -p sockline-wasm --target wasm32-unknown-unknown --profile wasm-release
rm -rf js/pkg dist
mkdir -p js/pkg dist
# wasm-opt runs before wasm-bindgen: Debian's binaryen (108) rewrites the externref table that
# wasm-bindgen's output relies on into one the engines refuse, while optimising the module
# before wasm-bindgen adds that table is safe.
wasm-opt -Oz --strip-debug --strip-producers --enable-reference-types --enable-bulk-memory \
  --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals --enable-multivalue \
  "$TARGET/wasm32-unknown-unknown/wasm-release/sockline_wasm.wasm" -o js/pkg/sockline_wasm.wasm
wasm-bindgen --target web --out-dir js/pkg js/pkg/sockline_wasm.wasm
rm js/pkg/sockline_wasm.wasm
cp js/pkg/sockline_wasm_bg.wasm dist/
# node:* modules are only imported in Node (to read the .wasm from disk).
node_modules/.bin/esbuild js/index.ts --bundle --format=esm --platform=neutral \
  --external:node:* --target=es2022 --outfile=dist/index.js --log-level=warning
node_modules/.bin/tsc -p tsconfig.json
