// What the browser driver takes from its host: time, timers and a WebSocket implementation. The
// browser's own are the defaults; the test kit (`sockline/testing`) passes virtual ones, so the
// very same driver runs against the in-process hub in virtual time.

/** Time and timers, as the driver uses them. */
export interface Clock {
  /** Monotonic milliseconds (the browser's `performance.now()`). */
  now(): number;
  /** Wall-clock milliseconds since the Unix epoch (the browser's `Date.now()`). */
  wallNow(): number;
  /** Calls `f` once after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(f: () => void, ms: number): unknown;
  /** Cancels a pending `setTimeout`. */
  clearTimeout(handle: unknown): void;
}

/** The part of the browser's `WebSocket` the driver uses. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A `WebSocket` constructor: the browser's, Node's (>= 22, or 20 with `--experimental-websocket`), or the test kit's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The browser's clock: `performance.now()`, `Date.now()`, the global timers. */
export const browserClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (f, ms) => globalThis.setTimeout(f, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};

/** A seed for the session's jitter from the platform's CSPRNG (53 bits: exact as a JS number). */
export function randomSeed(): number {
  const words = new Uint32Array(2);
  globalThis.crypto.getRandomValues(words);
  return (words[0]! & 0x1fffff) * 0x1_0000_0000 + words[1]!;
}
