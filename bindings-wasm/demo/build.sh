#!/usr/bin/env bash
# Builds the /demo/websocket page into bindings-wasm/dist/demo/ (served by `sockline hub` and
# `sockline demo --web`): the React app bundled by esbuild with the package inlined, its
# stylesheet, and the client's wasm beside it (the package loads it relative to the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/demo
# esbuild strips types without checking them: tsc checks the page (and the benchmark page).
node_modules/.bin/tsc -p demo/tsconfig.json
node_modules/.bin/esbuild demo/app.tsx --bundle --format=esm --platform=browser --target=es2022 \
  --minify --jsx=automatic --define:process.env.NODE_ENV='"production"' --external:node:* \
  --outfile=dist/demo/app.js --log-level=warning
cp demo/index.html demo/demo.css js/react.css dist/demo/
cp dist/sockline_wasm_bg.wasm dist/demo/
