// The one Node API the loader uses (only in Node: reading the .wasm beside the module).
declare module "node:fs/promises" {
  export function readFile(path: URL): Promise<Uint8Array>;
}
