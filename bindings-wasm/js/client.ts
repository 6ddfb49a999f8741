// The browser driver: the wasm session wired to a WebSocket, one timer, the clock and the page's
// signals. It moves what happened into the core and carries out what the core asks; every
// decision (when to reconnect, what a close means, which states are final, what the outbox
// holds) is the core's.

import { browserClock, randomSeed, type Clock, type WebSocketConstructor, type WebSocketLike } from "./host.js";
import {
  isTerminalState,
  Session,
  SocklineError,
  type Envelope,
  type OutgoingMessage,
  type Output,
  type SessionEvent,
  type SessionOptions,
  type State,
  type Stats,
  type StatusEvent,
  type StreamState,
} from "./session.js";

/** Where the outbox snapshot is kept across a reload (the browser's `localStorage` by default). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Options of a client: the core's config keys (camelCased) and what the driver runs on. */
export interface ClientOptions extends SessionOptions {
  /** The WebSocket implementation (the global `WebSocket` by default). */
  WebSocket?: WebSocketConstructor;
  /** Time and timers (`performance.now()`, `Date.now()` and the global timers by default). */
  clock?: Clock;
  /** Seed of the session's jitter (from `crypto.getRandomValues` by default). */
  seed?: number;
  /** Follow the page's online/offline, visibility, freeze/resume and pagehide/pageshow events
   *  (default: where there is a `window`). */
  signals?: boolean;
  /** Keeps the outbox across reloads (`localStorage` where there is one; `null`: nowhere). */
  storage?: StorageLike | null;
  /** The storage key of the outbox snapshot (default: per url and user). */
  storageKey?: string;
}

/** A subscription's handler: the message as received. */
export type MessageHandler = (message: Envelope) => void;

/** A status change: the new state and the core's `status` event. */
export type StatusHandler = (state: State, event: StatusEvent) => void;

/** An event of the client: every core event in its canonical form, plus `handler_error`. */
export type EventHandler = (event: SessionEvent) => void;

/** Stops what a `subscribe`, `onEvent` or `onStatusChange` started. */
export type Off = () => void;

// Options that belong to the driver, not to the core's config.
const DRIVER_KEYS = ["WebSocket", "clock", "seed", "signals", "storage", "storageKey"] as const;

/** A real-time client: the core's session over a browser (or Node, or test kit) WebSocket. */
export class SocklineClient {
  readonly #session: Session;
  readonly #clock: Clock;
  readonly #WebSocket: WebSocketConstructor;
  readonly #storage: StorageLike | null;
  readonly #storageKey: string;
  readonly #signals: boolean;
  #ws: WebSocketLike | null = null;
  #timer: unknown = undefined;
  #timerAt: number | undefined = undefined;
  #pumping = false;
  #dirty = false;
  #handlers = new Map<number, MessageHandler>();
  #onEvent = new Set<EventHandler>();
  #onStatus = new Set<StatusHandler>();
  #detach: (() => void)[] = [];
  #freed = false;

  /** A client for `options` (idle until `connect()`); `await ready()` first. */
  constructor(options: ClientOptions) {
    const config: Record<string, unknown> = { ...options };
    for (const k of DRIVER_KEYS) delete config[k];
    this.#clock = options.clock ?? browserClock;
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WS === undefined) {
      throw new SocklineError(
        "invalid_config",
        "no WebSocket implementation: pass `WebSocket` in the options (Node 20 needs --experimental-websocket)",
      );
    }
    this.#WebSocket = WS;
    this.#session = new Session(config as unknown as SessionOptions, options.seed ?? randomSeed(), this.#now());
    this.#storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.#storageKey = options.storageKey ?? `sockline:outbox:${options.urls?.join(" ") ?? options.url}:${options.userId ?? ""}`;
    this.#signals = options.signals ?? typeof window !== "undefined";
    this.#restoreSaved();
  }

  // ---- connection ------------------------------------------------------------------------

  /** Opens the connection (and reconnects by itself until `close()`). */
  connect(): void {
    this.#attachSignals();
    this.#call((s, now) => s.connect(now));
  }

  /** Closes for good (code 1000); releases the page listeners at once and the timer once the
   *  close is done. */
  close(): void {
    this.#detachSignals();
    this.#call((s, now) => s.disconnect(now));
  }

  /** Closes (code 1000) and releases everything at once, the wasm session's memory included;
   *  the client is unusable afterwards (every call throws `SocklineError` `freed`). */
  free(): void {
    if (this.#freed) return;
    if (!isTerminalState(this.#session.state)) this.close();
    this.#detachSignals();
    this.#drop();
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = this.#timerAt = undefined;
    this.#handlers.clear();
    this.#onEvent.clear();
    this.#onStatus.clear();
    this.#session.free();
    this.#freed = true;
  }

  /** Reconnects now (after `failed`, `closed`, or to skip a backoff wait). */
  reconnect(): void {
    this.#attachSignals();
    this.#call((s, now) => s.connect(now));
  }

  /** The connection state: `idle`, `connecting`, `open`, `reconnecting`, `unauthorized`, `closing`, `closed` or `failed`. */
  get connectionStatus(): State {
    return this.#live().state;
  }

  /** Calls `handler` on every status change; returns a function that stops it. */
  onStatusChange(handler: StatusHandler): Off {
    this.#onStatus.add(handler);
    return () => this.#onStatus.delete(handler);
  }

  /** Calls `handler` with every event (the core's canonical objects); returns a function that stops it. */
  onEvent(handler: EventHandler): Off {
    this.#onEvent.add(handler);
    return () => this.#onEvent.delete(handler);
  }

  // ---- messages --------------------------------------------------------------------------

  /** Calls `handler` for each message of `type` (`type`, `prefix*` or `*`), optionally of one
   *  project; returns a function that unsubscribes. */
  subscribe(type: string, handler: MessageHandler, options: { projectId?: number } = {}): Off {
    const id = this.#call((s, now) => s.subscribe(now, type, options.projectId));
    this.#handlers.set(id, handler);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#handlers.delete(id);
      this.#call((s, now) => s.unsubscribe(now, id));
    };
  }

  /** Sends (or queues, while not connected) a message; returns its id. */
  sendMessage(message: OutgoingMessage): string {
    return this.#call((s, now) => s.send(now, message));
  }

  /** Joins a project (and re-joins it after every reconnect). */
  joinProject(projectId: number): void {
    this.#call((s, now) => s.joinProject(now, projectId));
  }

  /** Leaves a project. */
  leaveProject(projectId: number): void {
    this.#call((s, now) => s.leaveProject(now, projectId));
  }

  /** The last applied version of a joined project, if any. */
  projectVersion(projectId: number): number | undefined {
    return this.#live().projectVersion(projectId);
  }

  /** Who is present in a joined project, sorted. */
  presence(projectId: number): string[] {
    return this.#live().presence(projectId);
  }

  // ---- typing ----------------------------------------------------------------------------

  /** The local user is typing in a project (throttled by the core). */
  startTyping(projectId: number): void {
    this.#call((s, now) => s.startTyping(now, projectId));
  }

  /** The local user stopped typing in a project. */
  stopTyping(projectId: number): void {
    this.#call((s, now) => s.stopTyping(now, projectId));
  }

  /** The remote users typing in a project now, sorted. */
  typingUsers(projectId: number): string[] {
    return this.#live().typingUsers(projectId);
  }

  // ---- agent streams ---------------------------------------------------------------------

  /** The text of an agent stream so far. */
  streamContent(streamId: string): string | undefined {
    return this.#live().streamContent(streamId);
  }

  /** The state of an agent stream (`started`, `delta`, `done`, `interrupted`, `failed`, ...). */
  streamState(streamId: string): StreamState | undefined {
    return this.#live().streamState(streamId);
  }

  /** Stops an agent stream. */
  interruptStream(streamId: string): void {
    this.#call((s, now) => s.interruptStream(now, streamId));
  }

  // ---- credentials, stats, outbox --------------------------------------------------------

  /** A new token; `expiresAtMs` is when it expires as Unix milliseconds (a JWT's `exp` × 1000). */
  setToken(token: string, expiresAtMs?: number): void {
    this.#call((s, now) => {
      // The core keeps time on the driver's monotonic clock.
      const at = expiresAtMs === undefined ? undefined : Math.max(0, now + (expiresAtMs - this.#clock.wallNow()));
      s.setToken(now, token, at);
    });
  }

  /** Counters describing the session so far (frames, messages, queue depth, reconnects, ...). */
  stats(): Stats {
    return this.#live().stats();
  }

  /** The outbox (messages not yet delivered) in its canonical JSON form. */
  snapshotOutbox(): unknown {
    return this.#live().snapshotOutbox();
  }

  /** Puts back messages from `snapshotOutbox()`; returns how many were restored. */
  restoreOutbox(snapshot: unknown): number {
    return this.#call((s, now) => s.restoreOutbox(now, snapshot));
  }

  /** Page listeners and timers this client holds now (zero once it is closed and released). */
  get resources(): { listeners: number; timers: number; sockets: number } {
    return {
      listeners: this.#detach.length,
      timers: this.#timer === undefined ? 0 : 1,
      sockets: this.#ws === null ? 0 : 1,
    };
  }

  // ---- the driver ------------------------------------------------------------------------

  /** The session, unless the client was freed. */
  #live(): Session {
    if (this.#freed) throw new SocklineError("freed", "this client was freed");
    return this.#session;
  }

  #now(): number {
    return this.#clock.now();
  }

  /** Runs one call into the session, then carries out what it asked. */
  #call<T>(f: (s: Session, now: number) => T): T {
    if (this.#freed) throw new SocklineError("freed", "this client was freed");
    try {
      return f(this.#session, this.#now());
    } finally {
      this.#pump();
    }
  }

  /** A text frame arrived: fed and drained in one call, then carried out. */
  #frame(text: string): void {
    if (this.#pumping) {
      // Fed from inside a handler: the outer loop drains it, after what is already queued.
      this.#call((s, now) => s.frame(now, text));
      return;
    }
    let outputs: Output[] | undefined;
    const bytes = this.#ws?.bufferedAmount ?? 0;
    try {
      outputs = this.#session.receive(this.#now(), text, bytes);
    } finally {
      this.#pump(outputs, this.#session.bufferedReport);
    }
  }

  /** Drains the session's outputs (`first`: already drained; `firstReport`: whether the
   *  session then wanted `buffered` reported, when it said) and carries them out, then sets
   *  the one timer. */
  #pump(first?: Output[], firstReport?: boolean): void {
    if (this.#pumping) {
      // A handler called back into the client: the outer loop drains again when it is done.
      this.#dirty = true;
      return;
    }
    this.#pumping = true;
    try {
      let deadline: number | null | undefined;
      do {
        // A handler may have freed the client mid-batch: nothing is left to carry out.
        if (this.#freed) return;
        this.#dirty = false;
        const outputs = first ?? this.#session.drain();
        // Only messages and the timeout, and no handler called back into the client: the
        // socket has sent nothing since `receive` read its bufferedAmount, and the session has
        // had no input since it answered for that amount.
        const known = first === undefined ? undefined : firstReport;
        first = undefined;
        for (const out of outputs) {
          if (out.kind === "timeout") {
            deadline = (out as { deadline: number | null }).deadline;
          } else {
            this.#carryOut(out);
          }
        }
        this.#reportBuffered(this.#dirty ? undefined : known);
      } while (this.#dirty);
      this.#arm(deadline ?? null);
    } finally {
      this.#pumping = false;
    }
  }

  #carryOut(out: Output): void {
    switch (out.kind) {
      case "open_transport":
        this.#open((out as { url: string }).url);
        return;
      case "transmit":
        this.#ws?.send((out as { text: string }).text);
        return;
      case "close_transport": {
        const { code, reason } = out as { code: number; reason: string };
        try {
          this.#ws?.close(code, reason);
        } catch {
          // Already closing: the browser will report its end all the same.
        }
        return;
      }
      default:
        this.#dispatch(out as SessionEvent);
    }
  }

  #open(url: string): void {
    this.#drop();
    let ws: WebSocketLike;
    try {
      ws = new this.#WebSocket(url);
    } catch (e) {
      this.#session.transportError(this.#now(), e instanceof Error ? e.message : String(e));
      this.#dirty = true;
      return;
    }
    ws.binaryType = "arraybuffer";
    // Events of a socket the core has replaced are not news about the current one.
    const current = () => this.#ws === ws;
    ws.onopen = () => {
      if (current()) this.#call((s, now) => s.transportOpened(now));
    };
    ws.onmessage = (ev) => {
      if (!current()) return;
      const data = ev.data;
      if (typeof data === "string") {
        this.#frame(data);
      } else {
        const len = (data as { byteLength?: number; size?: number }).byteLength ?? (data as { size?: number }).size ?? 0;
        this.#call((s, now) => s.binaryFrame(now, len));
      }
    };
    ws.onclose = (ev) => {
      if (!current()) return;
      this.#ws = null;
      this.#call((s, now) => s.transportClosed(now, ev.code, ev.reason ?? ""));
    };
    // Browsers follow `error` with `close` (which the core then ignores: the transport is
    // already gone) and never say what went wrong, for privacy; Node 20's WebSocket fires only
    // `error` for a refused connection. Either way this one message names it.
    ws.onerror = () => {
      if (!current()) return;
      this.#call((s, now) => s.transportError(now, "websocket error"));
    };
    this.#ws = ws;
  }

  /** Forgets the current socket (its later events are ignored) and closes it. */
  #drop(): void {
    const ws = this.#ws;
    if (ws === null) return;
    this.#ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000, "");
    } catch {
      // Already closed.
    }
  }

  /** Feeds `buffered` if the session wants it (`known`: its answer, if it already gave it). */
  #reportBuffered(known?: boolean): void {
    const ws = this.#ws;
    if (ws === null) return;
    const bytes = ws.bufferedAmount;
    if (known ?? this.#session.shouldReportBuffered(bytes)) {
      this.#session.buffered(this.#now(), bytes);
      this.#dirty = true;
    }
  }

  /** Keeps one timer, set to the core's deadline; none once the session rests in a terminal state. */
  #arm(deadline: number | null): void {
    if (deadline === this.#timerAt) return;
    if (this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#timerAt = deadline ?? undefined;
    if (deadline === null) {
      if (isTerminalState(this.#session.state)) this.#drop();
      return;
    }
    const delay = Math.max(0, deadline - this.#now());
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = undefined;
      // A timer that fires late (a throttled or frozen page) says so by the time it reports:
      // the core tells a suspension from a dead link.
      this.#call((s, now) => s.handleTimeout(now));
    }, delay);
  }

  #dispatch(event: SessionEvent): void {
    if (event.kind === "message") {
      const { subscriptions, message } = event as unknown as { subscriptions: number[]; message: Envelope };
      for (const id of subscriptions) {
        const handler = this.#handlers.get(id);
        if (handler === undefined) continue;
        // As #isolated, without a closure per message (the receive path).
        try {
          handler(message);
        } catch (e) {
          this.#reportThrow("subscribe", e);
        }
      }
    } else if (event.kind === "status") {
      for (const h of [...this.#onStatus]) this.#isolated("on_status_change", () => h(event.to, event));
    }
    if (this.#onEvent.size === 0) return;
    for (const h of [...this.#onEvent]) {
      this.#isolated("on_event", () => h(event), h);
    }
  }

  /** Runs an application handler; one that throws is reported as a `handler_error` event and
   *  never breaks the client. */
  #isolated(where: string, f: () => void, self?: EventHandler): void {
    try {
      f();
    } catch (e) {
      this.#reportThrow(where, e, self);
    }
  }

  /** Reports a handler's throw as a `handler_error` event to every event handler but `self`. */
  #reportThrow(where: string, e: unknown, self?: EventHandler): void {
    const report: SessionEvent = {
      kind: "handler_error",
      handler: where,
      message: e instanceof Error ? e.message : String(e),
    };
    for (const h of [...this.#onEvent]) {
      if (h === self) continue;
      try {
        h(report);
      } catch {
        // A reporter that throws too is not reported again (no loop).
      }
    }
  }

  // ---- page signals and the saved outbox ------------------------------------------------

  #attachSignals(): void {
    if (!this.#signals || this.#detach.length > 0) return;
    // A page's `window` (in a browser, `globalThis` itself); a worker's global scope otherwise.
    const win = ((globalThis as { window?: EventTarget }).window ?? globalThis) as EventTarget;
    const doc = (globalThis as { document?: EventTarget & { visibilityState?: string } }).document;
    const on = (target: EventTarget | undefined, type: string, f: (ev: Event) => void) => {
      if (target === undefined || typeof target.addEventListener !== "function") return;
      target.addEventListener(type, f);
      this.#detach.push(() => target.removeEventListener(type, f));
    };
    on(win, "online", () => this.#call((s, now) => s.online(now)));
    on(win, "offline", () => this.#call((s, now) => s.offline(now)));
    on(doc, "visibilitychange", () =>
      this.#call((s, now) => (doc?.visibilityState === "hidden" ? s.hidden(now) : s.visible(now))),
    );
    // A frozen page runs nothing; it comes back as from a hidden state.
    on(doc, "freeze", () => this.#call((s, now) => s.hidden(now)));
    on(doc, "resume", () => this.#call((s, now) => s.visible(now)));
    on(win, "pagehide", () => {
      this.#save();
      this.#call((s, now) => s.hidden(now));
    });
    on(win, "pageshow", () => {
      // Shown again without a reload (the back/forward cache): the session in memory carries on,
      // so the saved copy must not be restored a second time later.
      this.#forgetSaved();
      this.#call((s, now) => s.visible(now));
    });
  }

  #detachSignals(): void {
    for (const off of this.#detach.splice(0)) off();
  }

  #save(): void {
    try {
      this.#storage?.setItem(this.#storageKey, JSON.stringify(this.#session.snapshotOutbox()));
    } catch {
      // Storage full or refused (private mode): nothing more can be kept.
    }
  }

  #forgetSaved(): void {
    try {
      this.#storage?.removeItem(this.#storageKey);
    } catch {
      // Refused storage holds nothing of ours.
    }
  }

  #restoreSaved(): void {
    let saved: string | null = null;
    try {
      saved = this.#storage?.getItem(this.#storageKey) ?? null;
    } catch {
      return;
    }
    if (saved === null) return;
    this.#forgetSaved();
    try {
      this.restoreOutbox(JSON.parse(saved));
    } catch (e) {
      // A snapshot the core refuses (another version, edited by hand) is reported, not fatal.
      this.#dispatch({
        kind: "handler_error",
        handler: "restore_outbox",
        message: e instanceof Error ? e.message : String(e),
      });
    }
  }
}

function defaultStorage(): StorageLike | null {
  try {
    return (globalThis as { localStorage?: StorageLike }).localStorage ?? null;
  } catch {
    // Some browsers throw on access when storage is disabled.
    return null;
  }
}

/** The seed's service options, mapped onto the core's config. */
export interface ServiceOptions extends Partial<ClientOptions> {
  url: string;
  /** The seed's name for `reconnect.maxAttempts`. */
  maxReconnectAttempts?: number;
  /** The seed's name for `reconnect.initialMs`. */
  reconnectInterval?: number;
  /** The seed's name for `heartbeat.intervalMs`. */
  heartbeatInterval?: number;
  /** The seed's name for `outbox.maxMessages`. */
  maxQueueSize?: number;
}

let service: SocklineClient | undefined;

/** The seed's singleton: one client for the page, created (and connected) on the first call;
 *  later calls return it. */
export function getWebSocketService(options: ServiceOptions): SocklineClient {
  if (service !== undefined) return service;
  const { maxReconnectAttempts, reconnectInterval, heartbeatInterval, maxQueueSize, ...rest } = options;
  const mapped: ClientOptions = { ...rest };
  if (maxReconnectAttempts !== undefined || reconnectInterval !== undefined) {
    mapped.reconnect = {
      ...rest.reconnect,
      ...(maxReconnectAttempts !== undefined && { maxAttempts: maxReconnectAttempts }),
      ...(reconnectInterval !== undefined && { initialMs: reconnectInterval }),
    };
  }
  if (heartbeatInterval !== undefined) mapped.heartbeat = { ...rest.heartbeat, intervalMs: heartbeatInterval };
  if (maxQueueSize !== undefined) mapped.outbox = { ...rest.outbox, maxMessages: maxQueueSize };
  const client = new SocklineClient(mapped);
  client.connect();
  service = client;
  return client;
}
