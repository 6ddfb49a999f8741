// sockline/testing: the real hub core and client sessions in one process, in virtual time, for
// an application's own tests (node:test, vitest): no sockets, no real timers, faults on demand.

import init, * as raw from "./pkg-testing/sockline_wasm.js";
import { SocklineError, WasmModule } from "./wasm.js";
import type { Envelope, OutgoingMessage, SessionEvent, SessionOptions } from "./session.js";
import type { Clock, WebSocketConstructor, WebSocketLike } from "./host.js";

export { SocklineError };

const wasm = new WasmModule(init, new URL("./sockline_wasm_testing_bg.wasm", import.meta.url));

/** Loads the test kit's wasm, once; every call returns the same promise. */
export function ready(): Promise<void> {
  return wasm.ready();
}

/** Replays a trace's canonical JSON (as `Session.trace()` records it); returns the lines
 *  `sockline replay` prints, joined by newlines. Needs `ready()` of this module. */
export function replayTrace(traceJson: string): string {
  return wasm.call(() => raw.replayTrace(traceJson));
}

/** The hub's own fault injection (off by default; seeded by the hub's seed unless `seed` is given). */
export interface ChaosOptions {
  seed?: number;
  /** End each connection after a random time in `[from, to)` ms. */
  dropMs?: [number, number];
  /** Close with this code when dropping (an abrupt drop, no close frame, without it). */
  closeCode?: number;
  /** Delay every pong by this long. */
  pongDelayMs?: number;
  /** Never answer a ping. */
  swallowPongs?: boolean;
  /** Stop reading and writing (without closing) after a random time in `[from, to)` ms. */
  stallMs?: [number, number];
  /** Fraction (0..1) of outbound frames to corrupt. */
  corrupt?: number;
}

/** Hub settings for a test network or hub (the hub's defaults for the rest; an unknown key is an error). */
export interface HubOptions {
  token?: string;
  replayCapacity?: number;
  sessionTtlMs?: number;
  helloTimeoutMs?: number;
  /** Chunks per scripted agent answer; `null`: a hub without an agent. */
  agentChunks?: number | null;
  agentChunkMs?: number;
  dedupeWindow?: number;
  idleTimeoutMs?: number;
  maxFrameBytes?: number;
  maxJsonDepth?: number;
  rateLimit?: "off" | { bucket: { perSec: number; burst: number } };
  chaos?: ChaosOptions;
  /** A restart tells every client to wait at least this long before reconnecting (`retryAfterMs`, 0 by default). */
  restartRetryAfterMs?: number;
  /** ... and to draw its reconnect uniformly over this many ms above that (`spreadMs`, 3000 by default); both 0: no hint. */
  restartSpreadMs?: number;
  /** Per-user and per-connection limits (the hub's defaults for the keys not given). */
  limits?: HubLimits;
  /** A token running out within this many ms is announced (`token_expiring`; 60000 by default). */
  tokenWarningMs?: number;
  /** One-way delay of every frame (5 ms by default). */
  latencyMs?: number;
}

/** The hub's limits, each refused with its own error code (`docs/security.md`). */
export interface HubLimits {
  /** Connections one user may have open (`too_many_connections`, close 1013; 32). */
  maxConnectionsPerUser?: number;
  /** Projects one connection may be in (`too_many_projects`; 64). */
  maxProjectsPerConnection?: number;
  /** Messages per second one user may send across their connections (`rate_limited`; 400, 0: none). */
  userMessagesPerSec?: number;
  /** ... and the burst over it (800). */
  userBurst?: number;
  /** Largest `hello`, in bytes (`too_large`, close 1008; 8192). */
  maxHelloBytes?: number;
  /** Longest user id, in bytes (`bad_message`, close 1008; 128). */
  maxUserIdBytes?: number;
  /** Agent streams one connection may run at once (`too_many_streams`; 4). */
  maxStreamsPerConnection?: number;
}

/** Clients and the real hub core on in-memory links, driven together in virtual time. */
export class Network {
  readonly #raw: raw.Network;

  constructor(options: HubOptions = {}, seed = 0) {
    this.#raw = wasm.call(() => new raw.Network(JSON.stringify(options), seed));
  }

  /** Adds an idle client; returns its number. */
  addClient(options: Omit<SessionOptions, "url"> & { url?: string } = {}): number {
    const withUrl = { url: "ws://hub.test/ws", ...options };
    return wasm.call(() => this.#raw.addClient(JSON.stringify(withUrl)));
  }

  /** The virtual time in ms. */
  get now(): number {
    return wasm.call(() => this.#raw.now);
  }

  /** Runs `ms` of virtual time. */
  advance(ms: number): void {
    wasm.call(() => this.#raw.advance(ms));
  }

  /** Runs until `done(network)` holds, for at most `maxMs` of virtual time; returns the virtual
   *  ms it took. Throws a `SocklineError` (`timeout` or `livelock`) if it never holds. */
  until(done: (network: Network) => boolean, maxMs: number): number {
    const start = this.now;
    const end = start + maxMs;
    const watchdog = wasm.call(() => new raw.Watchdog(start));
    try {
      while (!done(this)) {
        if (!wasm.call(() => this.#raw.step(end))) {
          throw new SocklineError("timeout", `still false after ${maxMs} ms of virtual time`);
        }
        const now = this.now;
        wasm.call(() => watchdog.check(now));
      }
    } finally {
      watchdog.free();
    }
    return this.now - start;
  }

  connect(client: number): void {
    wasm.call(() => this.#raw.connect(client));
  }
  disconnect(client: number): void {
    wasm.call(() => this.#raw.disconnect(client));
  }
  /** A client sends a message; returns its id. */
  send(client: number, message: OutgoingMessage): string {
    return wasm.call(() => this.#raw.send(client, JSON.stringify(message)));
  }
  subscribe(client: number, pattern: string, projectId?: number): number {
    return wasm.call(() => this.#raw.subscribe(client, pattern, projectId));
  }
  joinProject(client: number, projectId: number): void {
    wasm.call(() => this.#raw.joinProject(client, projectId));
  }
  /** A client's connection state. */
  state(client: number): string {
    return wasm.call(() => this.#raw.state(client));
  }
  /** A client's events so far, as canonical objects. */
  events(client: number): SessionEvent[] {
    return JSON.parse(wasm.call(() => this.#raw.events(client))) as SessionEvent[];
  }
  /** The messages a client's subscriptions received. */
  messages(client: number): Envelope[] {
    return JSON.parse(wasm.call(() => this.#raw.messages(client))) as Envelope[];
  }
  streamContent(client: number, streamId: string): string | undefined {
    return wasm.call(() => this.#raw.streamContent(client, streamId));
  }
  typingUsers(client: number, projectId: number): string[] {
    return JSON.parse(wasm.call(() => this.#raw.typingUsers(client, projectId))) as string[];
  }
  /** Cuts a client's link without a close frame. */
  dropLink(client: number): void {
    wasm.call(() => this.#raw.dropLink(client));
  }
  /** Makes a client's link half-open. */
  stallLink(client: number): void {
    wasm.call(() => this.#raw.stallLink(client));
  }
  /** Restarts the hub: 1012 and its restart window to everyone, refused for `downMs`, back with its state or not. */
  restartHub({ keepState = true, downMs = 0 }: { keepState?: boolean; downMs?: number } = {}): void {
    wasm.call(() => this.#raw.restartHub(keepState, downMs));
  }
  /** Seeded faults on every frame from now on. */
  setFaults({ drop = 0, delayMs = 0, corrupt = 0 }: { drop?: number; delayMs?: number; corrupt?: number } = {}): void {
    wasm.call(() => this.#raw.setFaults(drop, delayMs, corrupt));
  }
  /** Application messages the hub delivered so far. */
  get hubRelayed(): number {
    return wasm.call(() => this.#raw.hubRelayed);
  }
  /** Frees the wasm memory the network holds. */
  free(): void {
    this.#raw.free();
  }
}

// ---- the hub core, for a driver written in JS -------------------------------------------------

/** What the hub core asks of its driver, as canonical objects (docs/session-json.md, "The hub core"). */
export type HubOutput =
  | { kind: "send"; conn: number; text: string }
  | { kind: "close"; conn: number; code: number; reason: string }
  | { kind: "abort"; conn: number }
  | { kind: "stall"; conn: number }
  | { kind: "timeout"; deadline: number | null };

/** The real hub core (sans-IO): connections' frames and the time in, outputs out. */
export class HubCore {
  readonly #raw: raw.Hub;

  /** A hub with these settings (no `latencyMs`: a hub core has no links); `seed` fixes session ids and chaos. */
  constructor(options: Omit<HubOptions, "latencyMs"> = {}, seed = 0) {
    this.#raw = wasm.call(() => new raw.Hub(JSON.stringify(options), seed));
  }
  /** A connection finished its opening handshake; returns its id. */
  accept(now: number): number {
    return wasm.call(() => this.#raw.accept(now));
  }
  /** A text frame arrived on a connection. */
  frame(now: number, conn: number, text: string): void {
    wasm.call(() => this.#raw.frame(now, conn, text));
  }
  /** A binary frame of `len` bytes arrived (the core closes with 1003). */
  binaryFrame(now: number, conn: number, len: number): void {
    wasm.call(() => this.#raw.binaryFrame(now, conn, len));
  }
  /** A frame over twice `maxFrameBytes` arrived (the core closes with 1009). */
  frameTooLarge(now: number, conn: number): void {
    wasm.call(() => this.#raw.frameTooLarge(now, conn));
  }
  /** The connection's write queue is full (the core closes with 4009). */
  writeBlocked(now: number, conn: number): void {
    wasm.call(() => this.#raw.writeBlocked(now, conn));
  }
  /** The connection is gone, whoever ended it. */
  closed(now: number, conn: number): void {
    wasm.call(() => this.#raw.closed(now, conn));
  }
  /** The driver's timer fired. */
  timeout(now: number): void {
    wasm.call(() => this.#raw.timeout(now));
  }
  /** The hub goes down: every connection gets 1012 with the restart window as its reason. */
  shutdown(now: number): void {
    wasm.call(() => this.#raw.shutdown(now));
  }
  /** Every output up to the next deadline; the last one is `timeout`. */
  drain(): HubOutput[] {
    return JSON.parse(wasm.call(() => this.#raw.drain())) as HubOutput[];
  }
  /** When `timeout` is next needed, or `undefined`. */
  pollTimeout(): number | undefined {
    return wasm.call(() => this.#raw.pollTimeout());
  }
  /** The frame limit in use; a driver cuts off (`frameTooLarge`) frames over twice it. */
  get maxFrameBytes(): number {
    return wasm.call(() => this.#raw.maxFrameBytes);
  }
  /** Application messages delivered to sessions so far. */
  get relayed(): number {
    return wasm.call(() => this.#raw.relayed);
  }
  /** Connections the hub knows (including those it is closing). */
  get connections(): number {
    return wasm.call(() => this.#raw.connections);
  }
  /** Sessions the hub keeps (connected or resumable). */
  get sessions(): number {
    return wasm.call(() => this.#raw.sessions);
  }
  /** Frees the wasm memory the hub holds. */
  free(): void {
    this.#raw.free();
  }
}

// ---- virtual time -----------------------------------------------------------------------------

/** A whole number of ms from 0 to 2^53-1, or a `SocklineError` (`invalid_argument`). */
function wholeMs(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new SocklineError("invalid_argument", `${name} must be a whole number from 0 to 2^53-1, got ${String(v)}`);
  }
  return v;
}

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly f: () => void;
}

/** `a` fires before `b`: earlier, or as early and scheduled first. */
function before(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** Options of a virtual clock. */
export interface VirtualClockOptions {
  /** Where `now()` starts (0 by default). */
  startMs?: number;
  /** `wallNow()` when `now()` is 0 (2026-01-01T00:00:00Z by default, so frames' timestamps repeat run to run). */
  wallStartMs?: number;
}

/** A `Clock` in virtual time: time moves only when a test runs it, and timers fire in time
 *  order, timers due at the same instant in the order they were scheduled. */
export class VirtualClock implements Clock {
  #now: number;
  readonly #wallStart: number;
  #seq = 0;
  /** A binary min-heap of pending timers; cancelled ones are skipped when they surface. */
  readonly #heap: Timer[] = [];
  readonly #live = new Map<number, Timer>();

  constructor({ startMs = 0, wallStartMs = 1_767_225_600_000 }: VirtualClockOptions = {}) {
    this.#now = wholeMs("startMs", startMs);
    this.#wallStart = wholeMs("wallStartMs", wallStartMs);
  }

  /** Virtual monotonic ms. */
  now(): number {
    return this.#now;
  }
  /** Virtual wall-clock ms since the Unix epoch. */
  wallNow(): number {
    return this.#wallStart + this.#now;
  }
  /** Calls `f` once `ms` (truncated; negative or not a number: 0) of virtual time from now; returns its handle. */
  setTimeout(f: () => void, ms: number): number {
    const delay = Number.isFinite(ms) && ms > 0 ? Math.trunc(ms) : 0;
    const timer: Timer = { at: this.#now + delay, seq: ++this.#seq, f };
    this.#live.set(timer.seq, timer);
    this.#push(timer);
    return timer.seq;
  }
  /** Cancels a pending timer (an unknown or fired handle is ignored). */
  clearTimeout(handle: unknown): void {
    if (typeof handle === "number") this.#live.delete(handle);
  }
  /** Timers waiting to fire. */
  get pending(): number {
    return this.#live.size;
  }
  /** When the next timer fires, or `undefined`. */
  nextAt(): number | undefined {
    return this.#peek()?.at;
  }
  /** Fires the next timer due by `endMs`, moving time to it; false (time then at `endMs`) when none is. */
  step(endMs: number): boolean {
    const next = this.#peek();
    if (next === undefined || next.at > endMs) {
      this.#now = Math.max(this.#now, endMs);
      return false;
    }
    this.#pop();
    this.#live.delete(next.seq);
    this.#now = Math.max(this.#now, next.at);
    // A callback that throws propagates out of advance()/until(), its timer already gone: a
    // failing assertion in a handler fails the test instead of vanishing.
    next.f();
    return true;
  }
  /** Runs `ms` of virtual time: every timer due by then fires, in order. Throws a `SocklineError`
   *  (`livelock`) when timers keep coming without time moving. */
  advance(ms: number): void {
    const end = this.#now + wholeMs("ms", ms);
    this.#drive(() => !this.step(end));
  }
  /** Runs timers until `done()` holds, for at most `maxMs` of virtual time; returns the virtual ms
   *  it took. Throws a `SocklineError` (`timeout` or `livelock`) if it never holds. */
  until(done: () => boolean, maxMs: number): number {
    const start = this.#now;
    const end = start + wholeMs("maxMs", maxMs);
    this.#drive(() => {
      if (done()) return true;
      if (!this.step(end)) {
        throw new SocklineError("timeout", `still false after ${maxMs} ms of virtual time (now ${this.#now})`);
      }
      return false;
    });
    return this.#now - start;
  }

  /** Calls `stepped` until it returns true, with the core's livelock rule. */
  #drive(stepped: () => boolean): void {
    const watchdog = wasm.call(() => new raw.Watchdog(this.#now));
    try {
      while (!stepped()) {
        const now = this.#now;
        wasm.call(() => watchdog.check(now));
      }
    } finally {
      watchdog.free();
    }
  }

  #peek(): Timer | undefined {
    while (this.#heap.length > 0 && !this.#live.has(this.#heap[0]!.seq)) this.#pop();
    return this.#heap[0];
  }
  #push(t: Timer): void {
    const h = this.#heap;
    let i = h.push(t) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }
  #pop(): void {
    const h = this.#heap;
    const last = h.pop();
    if (last === undefined || h.length === 0) return;
    h[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && before(h[l]!, h[m]!)) m = l;
      if (r < h.length && before(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

/** A standalone virtual clock (the one a `VirtualHub` has is `hub.clock`). */
export function virtualClock(options: VirtualClockOptions = {}): VirtualClock {
  return new VirtualClock(options);
}

// ---- the in-process hub and its WebSockets ------------------------------------------------------

/** How long a socket that sent a close frame waits for the answer before it reports 1006. */
const CLOSE_HANDSHAKE_MS = 60_000;

/** What a link carries towards a socket. */
type ToClient = { text: string } | { close: [number, string] } | { lost: true };

/** One accepted connection: a socket and the hub's end of it. */
interface Link {
  readonly conn: number;
  readonly peer: Peer;
  /** The hub incarnation that accepted it (a fresh hub reuses connection ids). */
  readonly generation: number;
  /** Nothing goes onto it any more (half-open, or cut and ending). */
  stalled: boolean;
  /** Its end was scheduled for both sides. */
  cut: boolean;
  /** The hub still holds it (it was not reported `closed`). */
  hubOpen: boolean;
  /** When the last thing put on it arrives, each way: nothing overtakes, as on TCP. */
  lastToHub: number;
  lastToClient: number;
}

/** A socket's state, kept apart from the object the application holds. */
interface Peer {
  readonly socket: VirtualWebSocket;
  readyState: number;
  buffered: number;
  link: Link | undefined;
  closeTimer: number | undefined;
}

/** What a socket asks of its hub. */
interface Wiring {
  open(socket: VirtualWebSocket): Peer;
  send(peer: Peer, data: string | ArrayBufferLike | ArrayBufferView): void;
  close(peer: Peer, code: number | undefined, reason: string): void;
}

/** The hub each bound `WebSocket` class talks to. */
const wirings = new WeakMap<object, Wiring>();
const encoder = new TextEncoder();

/** What the message event carries: the frame's text. */
export interface VirtualMessageEvent {
  readonly type: "message";
  readonly data: string;
  readonly target: VirtualWebSocket;
}

/** What the close event carries. */
export interface VirtualCloseEvent {
  readonly type: "close";
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  readonly target: VirtualWebSocket;
}

/** A `WebSocket` whose server is a `VirtualHub`: build one with `new hub.WebSocket(url)`. Events
 *  arrive on the hub's virtual clock, never during the call that caused them. */
export class VirtualWebSocket implements WebSocketLike {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;
  /** The url it was opened with (any url reaches the hub). */
  readonly url: string;
  /** No subprotocol is negotiated. */
  readonly protocol = "";
  readonly extensions = "";
  binaryType = "blob";
  onopen: ((ev: unknown) => void) | null = null;
  /** `ev` is a `VirtualMessageEvent`: `ev.data` is the frame's text. */
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  /** `ev` is a `VirtualCloseEvent`. */
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  readonly #wiring: Wiring;
  readonly #peer: Peer;

  constructor(url: string | URL, _protocols?: string | string[]) {
    let wiring: Wiring | undefined;
    for (let c: object | null = new.target; c !== null && wiring === undefined; c = Object.getPrototypeOf(c) as object | null) {
      wiring = wirings.get(c);
    }
    if (wiring === undefined) {
      throw new SocklineError("invalid_argument", "a VirtualWebSocket belongs to a hub: use new hub.WebSocket(url)");
    }
    this.url = String(url);
    this.#wiring = wiring;
    this.#peer = wiring.open(this);
  }

  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  get readyState(): number {
    return this.#peer.readyState;
  }
  /** Bytes sent but not on their way: 0, or what a stalled link holds. */
  get bufferedAmount(): number {
    return this.#peer.buffered;
  }
  /** Sends a text frame (binary data is sent as a binary frame, which the hub refuses with 1003).
   *  Throws `invalid_state` while connecting; ignored once closing. */
  send(data: string | ArrayBufferLike | ArrayBufferView): void {
    this.#wiring.send(this.#peer, data);
  }
  /** Starts the closing handshake (`code`: 1000 or 3000-4999; `reason`: at most 123 bytes). */
  close(code?: number, reason = ""): void {
    if (code !== undefined && code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new SocklineError("invalid_argument", `close code must be 1000 or 3000-4999, got ${code}`);
    }
    if (encoder.encode(reason).length > 123) {
      throw new SocklineError("invalid_argument", "close reason must be at most 123 bytes");
    }
    this.#wiring.close(this.#peer, code, reason);
  }
}

/** A `WebSocket` class bound to one `VirtualHub`. */
export type VirtualWebSocketClass = typeof VirtualWebSocket;

/** Options of a virtual hub: the hub's settings, the links' one-way latency, the clock's wall start. */
export interface VirtualHubOptions extends HubOptions {
  /** `wallNow()` when virtual time is 0. */
  wallStartMs?: number;
}

/** Seeded faults on every frame from now on. */
export interface LinkFaultOptions {
  /** Chance (0..1) that a frame cuts its link instead: both ends see 1006. */
  drop?: number;
  /** Chance (0..1) that a frame from the hub arrives broken (not JSON any more). */
  corrupt?: number;
  /** Up to this much extra delay per frame (order on a link is kept). */
  delayMs?: number;
}

/** A small seeded PRNG (mulberry32) for link faults: the same seed, the same faults. */
function prng(seed: number): () => number {
  let s = ((seed >>> 0) ^ Math.imul(Math.floor(seed / 0x1_0000_0000), 0x9e3779b9) ^ 0x5eedf00d) >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

/** The real hub core in this process, reached by real (browser-driver) clients through
 *  `hub.WebSocket` and timed by `hub.clock`: deterministic, in virtual time, faults on demand. */
export class VirtualHub {
  /** The virtual clock everything runs on: pass it to the clients as their `clock`. */
  readonly clock: VirtualClock;
  /** A `WebSocket` constructor whose sockets reach this hub: pass it to the clients. */
  readonly WebSocket: VirtualWebSocketClass;
  #core: HubCore;
  readonly #options: Omit<HubOptions, "latencyMs">;
  readonly #seed: number;
  readonly #latencyMs: number;
  #random: () => number;
  #faults: Required<LinkFaultOptions> = { drop: 0, corrupt: 0, delayMs: 0 };
  #generation = 0;
  #downUntil = 0;
  #offline = false;
  /** The links the current hub holds, by connection id. */
  readonly #links = new Map<number, Link>();
  /** Sockets not closed yet. */
  readonly #peers = new Set<Peer>();
  #hubTimer: { handle: number; at: number } | undefined;
  #accepted = 0;
  /** What hubs before a restart without state relayed. */
  #relayedBefore = 0;

  constructor(options: VirtualHubOptions = {}, seed = 0) {
    const { latencyMs = 5, wallStartMs, ...hubOptions } = options;
    this.#latencyMs = wholeMs("latencyMs", latencyMs);
    this.#seed = wholeMs("seed", seed);
    this.clock = new VirtualClock(wallStartMs === undefined ? {} : { wallStartMs });
    this.#options = hubOptions;
    this.#core = new HubCore(hubOptions, seed);
    this.#random = prng(seed);
    const wiring: Wiring = {
      open: (socket) => this.#open(socket),
      send: (peer, data) => this.#send(peer, data),
      close: (peer, code, reason) => this.#close(peer, code, reason),
    };
    const bound = class WebSocket extends VirtualWebSocket {};
    wirings.set(bound, wiring);
    this.WebSocket = bound;
  }

  /** Virtual time in ms. */
  get now(): number {
    return this.clock.now();
  }
  /** Runs `ms` of virtual time: timers and deliveries, in time order. */
  advance(ms: number): void {
    this.clock.advance(ms);
  }
  /** Runs until `done(hub)` holds, for at most `maxMs` of virtual time; returns the virtual ms it
   *  took. Throws a `SocklineError` (`timeout` or `livelock`) if it never holds. */
  until(done: (hub: VirtualHub) => boolean, maxMs: number): number {
    return this.clock.until(() => done(this), maxMs);
  }

  /** Connections the hub holds now. */
  get connectionsOpen(): number {
    return this.#links.size;
  }
  /** Connections the hub accepted so far (across restarts). */
  get connectionsAccepted(): number {
    return this.#accepted;
  }
  /** Application messages the hub delivered so far (across restarts). */
  get hubRelayed(): number {
    return this.#relayedBefore + this.#core.relayed;
  }
  /** Sessions the hub keeps now (connected or resumable). */
  get hubSessions(): number {
    return this.#core.sessions;
  }

  // ---- faults ----

  /** Cuts every socket's link without a close frame: each sees 1006 (`wasClean: false`) and the
   *  hub sees it closed, after what is already on its way. Sockets still connecting go on. */
  dropLinks(): void {
    for (const link of this.#allLinks()) this.#cut(link);
  }
  /** Makes every link half-open: frames both ways vanish (a socket's `bufferedAmount` grows)
   *  and neither end hears of it until `dropLinks()` or a restart. */
  stallLinks(): void {
    for (const link of this.#allLinks()) link.stalled = true;
  }

  /** Every link either end still holds: the hub's, and sockets' the hub already let go. */
  #allLinks(): Set<Link> {
    const links = new Set(this.#links.values());
    for (const peer of this.#peers) {
      if (peer.link !== undefined) links.add(peer.link);
    }
    return links;
  }
  /** Restarts the hub: 1012 to every socket, connections refused (error, then close 1006) for
   *  `downMs`, then back with its sessions (`keepState`) or a fresh hub. */
  restart({ keepState = true, downMs = 0 }: { keepState?: boolean; downMs?: number } = {}): void {
    const now = this.now;
    const down = wholeMs("downMs", downMs);
    this.#core.shutdown(now);
    this.#pump();
    // Whatever the hub process held goes with it: a half-open link's socket never hears of it.
    for (const link of [...this.#links.values()]) {
      this.#hubLetGo(link);
      if (!link.stalled) this.#toClient(link, { lost: true });
    }
    this.#pump();
    this.#generation += 1;
    if (!keepState) {
      this.#relayedBefore += this.#core.relayed;
      this.#core.free();
      this.#core = new HubCore(this.#options, (this.#seed + this.#generation) % 2 ** 53);
      this.#pump();
    }
    this.#downUntil = now + down;
  }
  /** Seeded faults on every frame from now on (`drop`, `corrupt`: chances 0..1). */
  setFaults({ drop = 0, corrupt = 0, delayMs = 0 }: LinkFaultOptions = {}): void {
    for (const [name, p] of [["drop", drop], ["corrupt", corrupt]] as const) {
      if (typeof p !== "number" || !(p >= 0 && p <= 1)) {
        throw new SocklineError("invalid_argument", `${name} must be in 0..1, got ${String(p)}`);
      }
    }
    this.#faults = { drop, corrupt, delayMs: wholeMs("delayMs", delayMs) };
  }
  /** Offline: new sockets fail (error, then close 1006) and open ones are dropped; online again
   *  with `false`. */
  setOffline(offline: boolean): void {
    this.#offline = offline;
    if (offline) this.dropLinks();
  }
  /** Frees the wasm memory the hub holds (the hub is unusable after). */
  free(): void {
    this.#core.free();
  }

  // ---- sockets ----

  #open(socket: VirtualWebSocket): Peer {
    const peer: Peer = { socket, readyState: 0, buffered: 0, link: undefined, closeTimer: undefined };
    this.#peers.add(peer);
    this.clock.setTimeout(() => this.#connect(peer), this.#latencyMs);
    return peer;
  }

  #connect(peer: Peer): void {
    if (peer.readyState !== 0) return; // closed while connecting: failed already
    const now = this.now;
    if (this.#offline || now < this.#downUntil) {
      this.#fail(peer);
      return;
    }
    const conn = this.#core.accept(now);
    this.#accepted += 1;
    const link: Link = {
      conn,
      peer,
      generation: this.#generation,
      stalled: false,
      cut: false,
      hubOpen: true,
      lastToHub: now,
      lastToClient: now,
    };
    this.#links.set(conn, link);
    peer.link = link;
    peer.readyState = 1;
    this.#pump();
    dispatch(peer.socket, peer.socket.onopen, { type: "open", target: peer.socket });
  }

  #send(peer: Peer, data: string | ArrayBufferLike | ArrayBufferView): void {
    if (peer.readyState === 0) {
      throw new SocklineError("invalid_state", "send() before the socket is open");
    }
    const link = peer.link;
    if (peer.readyState !== 1 || link === undefined) return;
    const text = typeof data === "string" ? data : undefined;
    const bytes = typeof data === "string" ? encoder.encode(data).length : data.byteLength;
    if (link.stalled) {
      peer.buffered += bytes;
      return;
    }
    if (this.#roll(this.#faults.drop)) {
      this.#cut(link);
      return;
    }
    this.#toHub(link, () => {
      const now = this.now;
      if (text === undefined) {
        this.#core.binaryFrame(now, link.conn, bytes);
      } else if (bytes > 2 * this.#core.maxFrameBytes) {
        // Like the tokio hub's transport limit: the core only hears that it was too large.
        this.#core.frameTooLarge(now, link.conn);
      } else {
        this.#core.frame(now, link.conn, text);
      }
    });
  }

  #close(peer: Peer, code: number | undefined, reason: string): void {
    if (peer.readyState === 0) {
      // Closed before it opened: the connection fails (as in a browser), soon but not now.
      peer.readyState = 2;
      this.clock.setTimeout(() => this.#fail(peer), 0);
      return;
    }
    if (peer.readyState !== 1) return;
    peer.readyState = 2;
    // No answer (a half-open link, a hub gone): the socket gives up as a browser does.
    peer.closeTimer = this.clock.setTimeout(() => this.#ended(peer, 1006, "", false), CLOSE_HANDSHAKE_MS);
    const link = peer.link;
    if (link === undefined || link.stalled) return;
    this.#toHub(link, () => {
      this.#hubLetGo(link);
      // The hub answers the close frame with the same code.
      this.#toClient(link, { close: [code ?? 1005, reason] });
    });
  }

  /** The socket failed to connect: `error`, then `close` 1006. */
  #fail(peer: Peer): void {
    if (peer.readyState === 3) return;
    peer.readyState = 3;
    this.#peers.delete(peer);
    dispatch(peer.socket, peer.socket.onerror, { type: "error", target: peer.socket });
    const ev: VirtualCloseEvent = { type: "close", code: 1006, reason: "", wasClean: false, target: peer.socket };
    dispatch(peer.socket, peer.socket.onclose, ev);
  }

  /** The socket is closed: `close` with this code. */
  #ended(peer: Peer, code: number, reason: string, wasClean: boolean): void {
    if (peer.readyState === 3) return;
    peer.readyState = 3;
    peer.link = undefined;
    this.#peers.delete(peer);
    if (peer.closeTimer !== undefined) this.clock.clearTimeout(peer.closeTimer);
    const ev: VirtualCloseEvent = { type: "close", code, reason, wasClean, target: peer.socket };
    dispatch(peer.socket, peer.socket.onclose, ev);
  }

  // ---- links ----

  /** When something put on a link now arrives (after the latency and any delay fault, behind
   *  what is already on its way). */
  #arrival(last: number): number {
    const extra = this.#faults.delayMs === 0 ? 0 : Math.floor(this.#random() * (this.#faults.delayMs + 1));
    return Math.max(this.now + this.#latencyMs + extra, last);
  }

  /** Schedules `arrive` at the hub end of a link, unless that hub has let the link go meanwhile,
   *  and carries out what the hub makes of it. */
  #toHub(link: Link, arrive: () => void): void {
    link.lastToHub = this.#arrival(link.lastToHub);
    this.clock.setTimeout(() => {
      if (link.hubOpen && link.generation === this.#generation) {
        arrive();
        this.#pump();
      }
    }, link.lastToHub - this.now);
  }

  /** Puts something on a link towards its socket (nothing goes onto a stalled one). */
  #toClient(link: Link, wire: ToClient): void {
    if (link.stalled) return;
    if ("text" in wire) {
      if (this.#roll(this.#faults.drop)) {
        this.#cut(link);
        return;
      }
      if (this.#roll(this.#faults.corrupt)) wire = { text: `#${wire.text.slice(1)}` };
    }
    link.lastToClient = this.#arrival(link.lastToClient);
    this.clock.setTimeout(() => this.#receive(link, wire), link.lastToClient - this.now);
  }

  #receive(link: Link, wire: ToClient): void {
    const peer = link.peer;
    if (peer.link !== link || peer.readyState === 3) return;
    if ("text" in wire) {
      const ev: VirtualMessageEvent = { type: "message", data: wire.text, target: peer.socket };
      if (peer.readyState === 1) dispatch(peer.socket, peer.socket.onmessage, ev);
    } else if ("close" in wire) {
      this.#ended(peer, wire.close[0], wire.close[1], true);
    } else {
      this.#ended(peer, 1006, "", false);
    }
  }

  /** Ends a link abruptly: both ends hear of it behind what is already on its way. */
  #cut(link: Link): void {
    if (link.cut) return;
    link.cut = true;
    link.stalled = true;
    if (link.hubOpen) {
      this.clock.setTimeout(() => {
        if (link.hubOpen && link.generation === this.#generation) {
          this.#hubLetGo(link);
          this.#pump();
        }
      }, Math.max(this.now + this.#latencyMs, link.lastToHub) - this.now);
    }
    const at = Math.max(this.now + this.#latencyMs, link.lastToClient);
    link.lastToClient = at;
    this.clock.setTimeout(() => this.#receive(link, { lost: true }), at - this.now);
  }

  /** The hub's end of a link is gone: the core hears `closed`. */
  #hubLetGo(link: Link): void {
    if (!link.hubOpen) return;
    link.hubOpen = false;
    this.#links.delete(link.conn);
    this.#core.closed(this.now, link.conn);
  }

  /** Carries out what the hub core asks until it names its next deadline, and sets its timer. */
  #pump(): void {
    let deadline: number | null = null;
    for (;;) {
      const gone: Link[] = [];
      for (const out of this.#core.drain()) {
        if (out.kind === "timeout") {
          deadline = out.deadline;
          continue;
        }
        const link = this.#links.get(out.conn);
        if (link === undefined) continue;
        switch (out.kind) {
          case "send":
            this.#toClient(link, { text: out.text });
            break;
          case "close":
            this.#toClient(link, { close: [out.code, out.reason] });
            gone.push(link);
            break;
          case "abort":
            this.#toClient(link, { lost: true });
            gone.push(link);
            break;
          case "stall":
            link.stalled = true;
            break;
        }
      }
      if (gone.length === 0) break;
      // The hub's driver reports a connection it ended as closed (which may send more).
      for (const link of gone) this.#hubLetGo(link);
    }
    this.#setHubTimer(deadline);
  }

  #setHubTimer(deadline: number | null): void {
    if (this.#hubTimer?.at === deadline) return;
    if (this.#hubTimer !== undefined) this.clock.clearTimeout(this.#hubTimer.handle);
    this.#hubTimer = undefined;
    if (deadline === null) return;
    const handle = this.clock.setTimeout(() => {
      this.#hubTimer = undefined;
      this.#core.timeout(this.now);
      this.#pump();
    }, deadline - this.now);
    this.#hubTimer = { handle, at: deadline };
  }

  #roll(chance: number): boolean {
    return chance > 0 && this.#random() < chance;
  }
}

// The kit's host is the browser driver's host (checked by tsc): `new SocklineClient({WebSocket:
// hub.WebSocket, clock: hub.clock, ...})` must type-check.
type Holds<T extends true> = T;
type _VirtualHubIsAHost = Holds<VirtualHub extends { WebSocket: WebSocketConstructor; clock: Clock } ? true : false>;

/** Calls a socket's event handler, if any, with the socket as `this` (as a browser does). */
function dispatch<E>(socket: VirtualWebSocket, handler: ((ev: E) => void) | null, ev: E): void {
  if (handler !== null) handler.call(socket, ev);
}
