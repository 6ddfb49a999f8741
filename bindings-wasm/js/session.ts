// The wasm session: the deterministic Rust core behind a typed JS class.
//
// This module is the boundary: it loads the wasm, hands options and messages across as JSON,
// parses outputs back into their canonical objects (the same JSON Rust, Python and traces use)
// and turns refusals into `SocklineError`s carrying the core's error code. It decides nothing:
// every protocol decision is the core's.

import init, * as raw from "./pkg/sockline_wasm.js";
import { SocklineError, WasmModule } from "./wasm.js";

export { SocklineError };
export type { ErrorCode } from "./wasm.js";

// The instance's exports, kept for its memory: `receive` encodes a frame straight into it and
// reads its outcome from it.
let exports: { memory: WebAssembly.Memory } | undefined;
const wasm = new WasmModule(async (input) => {
  exports = (await init(input)) as { memory: WebAssembly.Memory };
  return exports;
}, new URL("./sockline_wasm_bg.wasm", import.meta.url));
const encoder = new TextEncoder();
// The numbers `receive` leaves, as a view of the whole wasm memory; a memory that grows
// detaches its old buffer (every view of it then has length 0) and the view is made again.
let memNumbers = new Float64Array(0);
function numbers(): Float64Array {
  if (memNumbers.length === 0) memNumbers = new Float64Array(exports!.memory.buffer);
  return memNumbers;
}
/** An input buffer larger than this is given back once a smaller frame asks for room (as the binding's KEEP_INPUT_BYTES). */
const KEEP_INPUT_BYTES = 64 * 1024;

/** The canonical envelope of a frame the core accepted (its `Envelope` serialized: `type`,
 *  `data` (null when absent), then `timestamp`, `id`, `projectId`, `epoch`, `offset` where not null; other
 *  keys dropped), built from the frame's own `JSON.parse`. The core parsed the same text with
 *  the same JSON rules, so these are the values its canonical JSON would have carried: `data`
 *  is kept as the exact text received, and the other fields are strings and whole numbers. */
function envelopeOf(text: string): Envelope {
  const p = JSON.parse(text) as Partial<Envelope> & { type: string };
  const m: Envelope = { type: p.type, data: p.data === undefined ? null : p.data };
  if (p.timestamp != null) m.timestamp = p.timestamp;
  if (p.id != null) m.id = p.id;
  if (p.projectId != null) m.projectId = p.projectId;
  if (p.epoch != null) m.epoch = p.epoch;
  if (p.offset != null) m.offset = p.offset;
  return m;
}

/** Loads and instantiates the wasm, once (browser or Node >= 20); every call returns the same promise. */
export function ready(): Promise<void> {
  return wasm.ready();
}

/** Session options: the core's config keys, camelCased (see docs/session-json.md). */
export interface SessionOptions {
  /** The hub's `ws://` or `wss://` URL (or `urls`). */
  url?: string;
  /** Several hubs' URLs instead of `url`: reconnect attempts rotate through them. */
  urls?: string[];
  userId?: string;
  token?: string;
  connectTimeoutMs?: number;
  closeTimeoutMs?: number;
  maxFrameBytes?: number;
  maxJsonDepth?: number;
  dedupeWindow?: number;
  fatalCloseCodes?: number[];
  requireTls?: boolean;
  tokenRefreshMarginMs?: number;
  maxBufferedBytes?: number;
  writeTimeoutMs?: number;
  reconnect?: {
    initialMs?: number;
    factor?: number;
    maxMs?: number;
    maxAttempts?: number | null;
    jitter?: "none" | "full" | "equal";
    stableMs?: number;
    maxHintMs?: number;
  };
  heartbeat?: { intervalMs?: number; timeoutMs?: number; suspendDetectMs?: number };
  outbox?: {
    maxMessages?: number;
    maxBytes?: number;
    overflow?: "drop_oldest" | "drop_newest" | "reject";
    ackTimeoutMs?: number;
  };
  typing?: { throttleMs?: number; idleMs?: number; expireMs?: number };
  streams?: { stallMs?: number; maxBytes?: number; maxStreams?: number; maxPending?: number };
  rateLimit?: "off" | { bucket: { perSec: number; burst: number } };
}

/** A message to send (`data` is yours, sent as given). */
export interface OutgoingMessage {
  type: string;
  data?: unknown;
  projectId?: number;
  delivery?: "volatile" | "at_most_once" | "at_least_once";
  ttlMs?: number;
  coalesce?: string;
  id?: string;
  unixMs?: number;
}

/** A message as it travels on the wire. */
export interface Envelope {
  type: string;
  data: unknown;
  timestamp?: string;
  id?: string;
  projectId?: number;
  /** The project log's epoch (a project message the hub relayed). */
  epoch?: string;
  /** The message's place in its project's log, from 1. */
  offset?: number;
}

/** A connection state (terminal ones: `idle`, `closed`, `failed`; see `isTerminalState`). */
export type State = "idle" | "connecting" | "open" | "reconnecting" | "unauthorized" | "closing" | "closed" | "failed";

/** Why a message was dropped. */
export type DropReason =
  | "queue_full"
  | "coalesced"
  | "expired"
  | "not_connected"
  | "disconnected"
  | "rejected"
  | "backpressure";

/** What happened to an agent stream (final ones: `done`, `interrupted`, `failed`). */
export type StreamState = "started" | "delta" | "done" | "interrupted" | "failed" | "stalled";

/** The connection state changed. */
export type StatusEvent = { kind: "status"; from: State; to: State; reason: string; attempt: number };

/** An event in its canonical JSON form (snake_case keys), as in docs/session-json.md: the core's
 *  events, and the driver's `handler_error`. */
export type SessionEvent =
  | StatusEvent
  | { kind: "reconnect_scheduled"; attempt: number; delay_ms: number }
  | { kind: "ready"; session_id: string; resumed: boolean }
  | { kind: "message"; subscriptions: number[]; message: Envelope }
  | { kind: "acked"; id: string }
  | { kind: "dropped"; id: string; type: string; reason: DropReason }
  | { kind: "ack_timeout"; id: string }
  | { kind: "protocol_error"; reason: string }
  | { kind: "server_error"; code: string; message: string; retry_after_ms?: number; id?: string }
  | { kind: "token_required"; reason: string }
  | { kind: "token_refresh_due"; expires_at: number }
  | { kind: "gap"; project_id: number; from: number; to: number }
  | { kind: "rejoined"; project_id: number; recovered: boolean; replayed: number; reason?: string }
  | { kind: "typing"; project_id: number; users: string[] }
  | { kind: "stream"; stream_id: string; state: StreamState; delta?: string; len: number; error?: string }
  | { kind: "project"; project_id: number; version: number; state: "stale" | "synced" }
  | { kind: "presence"; project_id: number; members: string[] }
  | { kind: "backpressure"; blocked: boolean; buffered_bytes: number }
  | { kind: "handler_error"; handler: string; message: string };

/** The session's counters (`stats()`), snake_case as in its canonical JSON. */
export type Stats = {
  frames_in: number;
  frames_out: number;
  bytes_in: number;
  bytes_out: number;
  messages_sent: number;
  messages_delivered: number;
  messages_unrouted: number;
  duplicates: number;
  dropped: number;
  resent: number;
  acked: number;
  reconnects: number;
  protocol_errors: number;
  stale_versions: number;
  last_rtt_ms: number | null;
  queue_depth: number;
  queue_bytes: number;
  [counter: string]: number | null;
};

/** What the session asks of its driver, in canonical JSON form. */
export type Output =
  | { kind: "open_transport"; url: string; attempt: number }
  | { kind: "transmit"; text: string }
  | { kind: "close_transport"; code: number; reason: string }
  | { kind: "timeout"; deadline: number | null }
  | SessionEvent;

/** The deterministic session: inputs in (with the driver's time), outputs out. */
export class Session {
  readonly #raw: raw.Session;
  /** Where `receive` encodes frames: this session's input buffer in the wasm memory (length 0
   *  until the first frame, and again whenever the memory grows, which detaches the view: the
   *  buffer itself moves only when `frameBuffer` is called). */
  #input = new Uint8Array(0);
  /** Where `receive`'s numbers are, counted in f64s. */
  readonly #resultAt: number;

  /** A session for `options`, seeded with `seed` (a whole number), at driver time `nowMs`. */
  constructor(options: SessionOptions, seed: number, nowMs: number) {
    this.#raw = wasm.call(() => new raw.Session(JSON.stringify(options), seed, nowMs));
    this.#resultAt = this.#raw.resultBuffer() / 8;
  }

  /** Every output up to the next deadline, the final `timeout` included. */
  drain(): Output[] {
    return JSON.parse(wasm.call(() => this.#raw.drain())) as Output[];
  }

  /** A text frame arrived; returns every output up to the next deadline, as `frame` then
   *  `drain` would (the same input reaches the core). Faster: the frame is encoded straight into
   *  the wasm memory, and the envelope of the message it carries is parsed once, here, from the
   *  text, instead of being serialized by the core and parsed again. */
  receive(nowMs: number, text: string, bufferedAmount = 0): Output[] {
    this.bufferedReport = undefined;
    if (!(text as { isWellFormed?: () => boolean }).isWellFormed?.()) {
      // A lone surrogate (never from a real WebSocket, whose text is UTF-8) reaches the core
      // as U+FFFD, which a parse here would not see: the envelope comes from the core.
      this.frame(nowMs, text);
      return this.drain();
    }
    return wasm.call(() => {
      // At most 3 UTF-8 bytes per UTF-16 unit.
      const room = text.length * 3;
      let input = this.#input;
      if (room > input.length || (input.length > KEEP_INPUT_BYTES && room <= KEEP_INPUT_BYTES)) {
        const at = this.#raw.frameBuffer(room);
        input = this.#input = new Uint8Array(exports!.memory.buffer, at, room);
      }
      const { written } = encoder.encodeInto(text, input);
      const n = this.#raw.receive(nowMs, written, bufferedAmount);
      if (n < 0) {
        const outs = JSON.parse(this.#raw.takeReceived()) as Output[];
        for (const o of outs) {
          if (o.kind === "message" && (o as { message?: Envelope }).message === undefined) {
            (o as { message?: Envelope }).message = envelopeOf(text);
          }
        }
        return outs;
      }
      const mem = numbers();
      const at = this.#resultAt;
      const d = mem[at]!;
      const timeout: Output = { kind: "timeout", deadline: Number.isNaN(d) ? null : d };
      this.bufferedReport = mem[at + 1] === 1;
      if (n === 0) return [timeout];
      const subscriptions: number[] = [];
      for (let i = 2; i < n + 2; i++) subscriptions.push(mem[at + i]!);
      return [{ kind: "message", subscriptions, message: envelopeOf(text) }, timeout];
    });
  }

  /** After `receive` returned only the frame's message (or nothing) and the timeout:
   *  `shouldReportBuffered(bufferedAmount)` once they were drained; otherwise `undefined`. */
  bufferedReport: boolean | undefined = undefined;

  /** When `handleTimeout` is next needed, or `undefined`. */
  pollTimeout(): number | undefined {
    return wasm.call(() => this.#raw.pollTimeout());
  }

  handleTimeout(nowMs: number): void {
    wasm.call(() => this.#raw.handleTimeout(nowMs));
  }
  connect(nowMs: number): void {
    wasm.call(() => this.#raw.connect(nowMs));
  }
  disconnect(nowMs: number): void {
    wasm.call(() => this.#raw.disconnect(nowMs));
  }
  transportOpened(nowMs: number): void {
    wasm.call(() => this.#raw.transportOpened(nowMs));
  }
  transportClosed(nowMs: number, code: number | undefined, reason: string): void {
    wasm.call(() => this.#raw.transportClosed(nowMs, code, reason));
  }
  transportLost(nowMs: number): void {
    wasm.call(() => this.#raw.transportLost(nowMs));
  }
  transportError(nowMs: number, message: string): void {
    wasm.call(() => this.#raw.transportError(nowMs, message));
  }
  frame(nowMs: number, text: string): void {
    wasm.call(() => this.#raw.frame(nowMs, text));
  }
  binaryFrame(nowMs: number, len: number): void {
    wasm.call(() => this.#raw.binaryFrame(nowMs, len));
  }
  buffered(nowMs: number, bytes: number): void {
    wasm.call(() => this.#raw.buffered(nowMs, bytes));
  }
  shouldReportBuffered(bytes: number): boolean {
    return wasm.call(() => this.#raw.shouldReportBuffered(bytes));
  }

  /** Sends (or queues) a message; returns its id. */
  send(nowMs: number, message: OutgoingMessage): string {
    return wasm.call(() => this.#raw.send(nowMs, JSON.stringify(message)));
  }
  subscribe(nowMs: number, pattern: string, projectId?: number): number {
    return wasm.call(() => this.#raw.subscribe(nowMs, pattern, projectId));
  }
  unsubscribe(nowMs: number, id: number): void {
    wasm.call(() => this.#raw.unsubscribe(nowMs, id));
  }
  joinProject(nowMs: number, projectId: number): void {
    wasm.call(() => this.#raw.joinProject(nowMs, projectId));
  }
  leaveProject(nowMs: number, projectId: number): void {
    wasm.call(() => this.#raw.leaveProject(nowMs, projectId));
  }
  startTyping(nowMs: number, projectId: number): void {
    wasm.call(() => this.#raw.startTyping(nowMs, projectId));
  }
  stopTyping(nowMs: number, projectId: number): void {
    wasm.call(() => this.#raw.stopTyping(nowMs, projectId));
  }
  typingUsers(projectId: number): string[] {
    return JSON.parse(wasm.call(() => this.#raw.typingUsers(projectId))) as string[];
  }
  presence(projectId: number): string[] {
    return JSON.parse(wasm.call(() => this.#raw.presence(projectId))) as string[];
  }
  projectVersion(projectId: number): number | undefined {
    return wasm.call(() => this.#raw.projectVersion(projectId));
  }
  interruptStream(nowMs: number, streamId: string): void {
    wasm.call(() => this.#raw.interruptStream(nowMs, streamId));
  }
  streamContent(streamId: string): string | undefined {
    return wasm.call(() => this.#raw.streamContent(streamId));
  }
  streamState(streamId: string): StreamState | undefined {
    return wasm.call(() => this.#raw.streamState(streamId)) as StreamState | undefined;
  }
  setToken(nowMs: number, token: string, expiresAtMs?: number): void {
    wasm.call(() => this.#raw.setToken(nowMs, token, expiresAtMs));
  }
  online(nowMs: number): void {
    wasm.call(() => this.#raw.online(nowMs));
  }
  offline(nowMs: number): void {
    wasm.call(() => this.#raw.offline(nowMs));
  }
  visible(nowMs: number): void {
    wasm.call(() => this.#raw.visible(nowMs));
  }
  hidden(nowMs: number): void {
    wasm.call(() => this.#raw.hidden(nowMs));
  }
  /** The connection state (`idle`, `connecting`, `open`, ...). */
  get state(): State {
    return wasm.call(() => this.#raw.state()) as State;
  }
  stats(): Stats {
    return JSON.parse(wasm.call(() => this.#raw.stats())) as Stats;
  }
  snapshotOutbox(): unknown {
    return JSON.parse(wasm.call(() => this.#raw.snapshotOutbox()));
  }
  restoreOutbox(nowMs: number, snapshot: unknown): number {
    return wasm.call(() => this.#raw.restoreOutbox(nowMs, JSON.stringify(snapshot)));
  }
  startRecording(): void {
    wasm.call(() => this.#raw.startRecording());
  }
  /** The recorded trace's canonical JSON text, if recording. */
  trace(): string | undefined {
    return wasm.call(() => this.#raw.trace());
  }
  /** Frees the wasm memory the session holds; the object is unusable afterwards. */
  free(): void {
    this.#raw.free();
  }
}

/** Whether a state is terminal: the session does nothing more on its own. */
export function isTerminalState(name: string): boolean {
  return wasm.call(() => raw.isTerminalState(name));
}

/** Whether a stream state is final: no more events for that stream. */
export function isFinalStreamState(name: string): boolean {
  return wasm.call(() => raw.isFinalStreamState(name));
}
