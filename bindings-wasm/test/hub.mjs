// The real hub (`sockline hub`, the Rust binary) for the package's tests: started on a free
// loopback port, killed by the test (and on exit, whatever happens).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(root, "target");

/** The `sockline` binary scripts/test-wasm.sh built. */
export const SOCKLINE = process.env.SOCKLINE_BIN ?? path.join(targetDir, "debug", "sockline");

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts `sockline hub` with `args`; resolves once it listens. */
export async function startHub(args = [], listen = "127.0.0.1:0") {
  if (!existsSync(SOCKLINE)) throw new Error(`${SOCKLINE} is missing: build it with cargo build -p sockline-tokio --features cli`);
  const child = spawn(SOCKLINE, ["hub", "--listen", listen, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  running.add(child);
  const addr = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const m = /listening on ws:\/\/(\S+)\/ws/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`sockline hub exited with ${code}: ${out}`)));
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    addr,
    url: `ws://${addr}/ws`,
    http: `http://${addr}`,
    /** Kills the hub at once (SIGKILL: no close frames, as a crash). */
    async kill() {
      child.kill("SIGKILL");
      await exited;
      running.delete(child);
    },
    /** Stops the hub cleanly (SIGTERM: 1012 and the restart window to every client). */
    async stop() {
      child.kill("SIGTERM");
      await exited;
      running.delete(child);
    },
  };
}

/** Polls `pred` every 10 ms until it holds; rejects after `ms` with `what`. */
export async function until(pred, what, ms = 10_000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
