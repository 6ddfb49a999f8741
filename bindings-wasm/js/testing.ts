// sockline/testing: the real hub core and client sessions in one process, in virtual time, for
// an application's own tests (node:test, vitest): no sockets, no real timers, faults on demand.

import init, * as raw from "./pkg-testing/sockline_wasm.js";
import { SocklineError, WasmModule } from "./wasm.js";
import type { Envelope, OutgoingMessage, SessionEvent, SessionOptions } from "./session.js";

export { SocklineError };

const wasm = new WasmModule(init, new URL("./sockline_wasm_testing_bg.wasm", import.meta.url));

/** Loads the test kit's wasm, once; every call returns the same promise. */
export function ready(): Promise<void> {
  return wasm.ready();
}

/** Hub settings for a test network (the hub's defaults for the rest). */
export interface HubOptions {
  token?: string;
  replayCapacity?: number;
  sessionTtlMs?: number;
  /** Chunks per scripted agent answer; `null`: a hub without an agent. */
  agentChunks?: number | null;
  agentChunkMs?: number;
  idleTimeoutMs?: number;
  maxFrameBytes?: number;
  rateLimit?: "off" | { bucket: { perSec: number; burst: number } };
  /** One-way delay of every frame (5 ms by default). */
  latencyMs?: number;
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
  /** Restarts the hub: 1001 to everyone, refused for `downMs`, back with its state or not. */
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
