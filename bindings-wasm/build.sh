#!/usr/bin/env bash
# Builds the `sockline` npm package into bindings-wasm/dist/: the wasm (cargo for wasm32 with the
# size profile, wasm-opt -Oz from binaryen, then the wasm-bindgen CLI at the crate's pinned
# version), the ES modules bundled by esbuild (the client, the test kit, the React bindings and
# their optional stylesheet), and their .d.ts from tsc. Works with
# CARGO_TARGET_DIR set or unset.
set -euo pipefail
cd "$(dirname "$0")"
TARGET="${CARGO_TARGET_DIR:-../target}"

rm -rf js/pkg js/pkg-testing dist
mkdir -p dist
# Two wasm modules: the client's (`index.js`) and the test kit's (`testing.js`, with the hub core
# and the virtual-time network), so an application's bundle carries no test code.
wasm_module() { # $1: output dir, $2: dist name, $3...: cargo flags
  local out=$1 name=$2
  shift 2
  cargo build -q -p sockline-wasm --target wasm32-unknown-unknown --profile wasm-release "$@"
  mkdir -p "$out"
  # wasm-opt runs before wasm-bindgen: Debian's binaryen (108) rewrites the externref table that
  # wasm-bindgen's output relies on into one the engines refuse, while optimising the module
  # before wasm-bindgen adds that table is safe.
  wasm-opt -Oz --strip-debug --strip-producers --enable-reference-types --enable-bulk-memory \
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    --enable-multivalue "$TARGET/wasm32-unknown-unknown/wasm-release/sockline_wasm.wasm" \
    -o "$out/sockline_wasm.wasm"
  wasm-bindgen --target web --out-dir "$out" "$out/sockline_wasm.wasm"
  rm "$out/sockline_wasm.wasm"
  cp "$out/sockline_wasm_bg.wasm" "dist/$name"
}
wasm_module js/pkg sockline_wasm_bg.wasm
wasm_module js/pkg-testing sockline_wasm_testing_bg.wasm --features testing
# node:* modules are only imported in Node (to read the .wasm from disk). --splitting puts what both
# entries share (the loader, SocklineError) in one chunk: an error the test kit throws is the very
# SocklineError class the application imports from `sockline`.
node_modules/.bin/esbuild js/index.ts js/testing.ts --bundle --splitting --format=esm --platform=neutral \
  --external:node:* --target=es2022 --outdir=dist --log-level=warning
# sockline/react imports the client from the package's own entry (kept external), so an
# application using both loads one wasm; React is the application's. "use client" marks the
# module for React Server Components frameworks (esbuild drops the source's directive when bundling).
node_modules/.bin/esbuild js/react.tsx --bundle --format=esm --platform=neutral --jsx=automatic \
  --external:./index.js --external:react --external:react/jsx-runtime --external:react-dom \
  --banner:js='"use client";' --target=es2022 --outdir=dist --log-level=warning
cp js/react.css dist/react.css
node_modules/.bin/tsc -p tsconfig.json
# The /demo/websocket page and the browser benchmark page, each with the client's wasm beside it.
./demo/build.sh
./bench/build.sh
