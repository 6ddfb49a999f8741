// What the package's entry points share: loading a wasm module once, and turning what the wasm
// throws (`{code, message}` JSON text) into `SocklineError`s carrying the core's code.

/** The codes a `SocklineError` carries: the core's (the same in Rust and Python), the binding's
 *  for arguments JS cannot have meant, and the JS layer's own (`not_ready`, `freed`, `timeout`,
 *  and the test kit's sockets' `invalid_state`). */
export type ErrorCode =
  | "already_active"
  | "invalid_type"
  | "reserved_type"
  | "invalid_key"
  | "duplicate_id"
  | "too_large"
  | "queue_full"
  | "invalid_pattern"
  | "unknown_subscription"
  | "no_user_id"
  | "unknown_stream"
  | "stream_finished"
  | "too_many_projects"
  | "invalid_token"
  | "invalid_snapshot"
  | "invalid_config"
  | "invalid_argument"
  | "invalid_input"
  | "invalid_message"
  | "invalid_trace"
  | "livelock"
  | "timeout"
  | "not_ready"
  | "freed"
  | "invalid_state";

/** A call the core refused: `code` is the core's error code (`reserved_type`, `invalid_config`, ...). */
export class SocklineError extends Error {
  /** Machine-readable, the same in every runtime. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "SocklineError";
    this.code = code;
  }
}

/** wasm-bindgen's `init` for `--target web` glue. */
type Init = (input: { module_or_path: URL | Uint8Array }) => Promise<unknown>;

/** A module that loads once: `ready()` every time returns the same promise. */
export class WasmModule {
  #loading: Promise<void> | undefined;
  #loaded = false;
  readonly #init: Init;
  readonly #url: URL;

  constructor(init: Init, url: URL) {
    this.#init = init;
    this.#url = url;
  }

  ready(): Promise<void> {
    this.#loading ??= this.#load().then(() => {
      this.#loaded = true;
    });
    return this.#loading;
  }

  async #load(): Promise<void> {
    if (this.#url.protocol === "file:") {
      // Node: fetch() cannot read file: URLs.
      const { readFile } = await import("node:fs/promises");
      await this.#init({ module_or_path: await readFile(this.#url) });
    } else {
      await this.#init({ module_or_path: this.#url });
    }
  }

  /** Runs `f` against the loaded wasm, rethrowing its refusals as `SocklineError`s. */
  call<T>(f: () => T): T {
    if (!this.#loaded) {
      throw new SocklineError("not_ready", "sockline is not loaded yet: await ready() first");
    }
    try {
      return f();
    } catch (e) {
      throw toError(e);
    }
  }
}

function toError(e: unknown): Error {
  if (typeof e === "string") {
    try {
      const parsed: unknown = JSON.parse(e);
      if (
        typeof parsed === "object" &&
        parsed !== null &&
        typeof (parsed as { code?: unknown }).code === "string"
      ) {
        const { code, message } = parsed as { code: ErrorCode; message?: unknown };
        return new SocklineError(code, String(message ?? code));
      }
    } catch {
      // Not one of ours: reported as it came.
    }
    return new Error(e);
  }
  return e instanceof Error ? e : new Error(String(e));
}
