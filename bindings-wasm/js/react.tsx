// sockline/react: one shared SocklineClient for a React tree, hooks over its state and events,
// and unstyled components. Everything here reads what the core already decided (states, which
// of them are terminal, which stream states are final, versions, presence, typists) and turns it
// into React state; nothing here makes a protocol decision of its own.
//
// The client comes from the package's own entry (`./index.js`, external in the bundle), so an
// application that imports both `sockline` and `sockline/react` loads one wasm instance.

import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import {
  browserClock,
  isFinalStreamState,
  isTerminalState,
  ready,
  SocklineClient,
  SocklineError,
  type ClientOptions,
  type Clock,
  type Envelope,
  type Off,
  type OutgoingMessage,
  type SessionEvent,
} from "./index.js";

// ---- the shared client ---------------------------------------------------------------------

/** A client and what the hooks derive from its events since it was created. */
class ClientStore {
  readonly client: SocklineClient;
  readonly clock: Clock;
  #connection: ConnectionSnapshot;
  readonly #listeners = new Set<(event: SessionEvent) => void>();
  readonly #projects = new Map<number, ProjectEntry>();
  readonly #streamErrors = new Map<string, string>();
  readonly #off: Off;

  constructor(client: SocklineClient, clock: Clock) {
    this.client = client;
    this.clock = clock;
    this.#connection = { status: client.connectionStatus, attempt: 0, reason: null, nextRetry: null };
    this.#off = client.onEvent((event) => this.#onEvent(event));
  }

  /** The connection as the last `status` and `reconnect_scheduled` events described it. */
  get connection(): ConnectionSnapshot {
    return this.#connection;
  }

  /** The error a failed stream reported, if it did. */
  streamError(streamId: string): string | undefined {
    return this.#streamErrors.get(streamId);
  }

  /** What is known of a project some component joined. */
  project(projectId: number): ProjectEntry | undefined {
    return this.#projects.get(projectId);
  }

  /** Calls `listener` after each event, once this store has taken it in. */
  subscribe(listener: (event: SessionEvent) => void): Off {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Joins a project for one user of it; the project is left once its last user is gone. */
  acquireProject(projectId: number): Off {
    let entry = this.#projects.get(projectId);
    if (entry === undefined) {
      this.client.joinProject(projectId);
      const created: ProjectEntry = { users: 0, syncState: null, state: undefined, offs: [] };
      const keep = (message: Envelope) => {
        created.state = message.data;
      };
      created.offs.push(
        this.client.subscribe("project_snapshot", keep, { projectId }),
        this.client.subscribe("project_updated", keep, { projectId }),
      );
      this.#projects.set(projectId, created);
      entry = created;
    }
    const held = entry;
    held.users += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      held.users -= 1;
      // Deferred like the client's close: a StrictMode remount re-acquires at once, and leaving
      // then re-joining would send a needless unsubscribe/subscribe pair.
      queueMicrotask(() => {
        if (held.users > 0 || this.#projects.get(projectId) !== held) return;
        this.#projects.delete(projectId);
        for (const off of held.offs.splice(0)) off();
        this.client.leaveProject(projectId);
      });
    };
  }

  /** Stops listening and forgets every project subscription (the client is closed by its holder). */
  dispose(): void {
    this.#off();
    for (const entry of this.#projects.values()) for (const off of entry.offs.splice(0)) off();
    this.#projects.clear();
    this.#listeners.clear();
  }

  #onEvent(event: SessionEvent): void {
    switch (event.kind) {
      case "status":
        this.#connection = {
          status: String(event["to"]),
          attempt: Number(event["attempt"] ?? 0),
          reason: typeof event["reason"] === "string" ? event["reason"] : null,
          // A state change means the scheduled attempt opened, or was superseded.
          nextRetry: null,
        };
        break;
      case "reconnect_scheduled": {
        const delayMs = Number(event["delay_ms"]);
        this.#connection = {
          ...this.#connection,
          nextRetry: { attempt: Number(event["attempt"]), delayMs, at: this.clock.now() + delayMs },
        };
        break;
      }
      case "project": {
        const entry = this.#projects.get(Number(event["project_id"]));
        if (entry !== undefined) entry.syncState = event["state"] as ProjectSyncState;
        break;
      }
      case "stream":
        if (typeof event["error"] === "string") {
          this.#streamErrors.set(String(event["stream_id"]), event["error"]);
          // Bounded: a long session's old failures are not worth keeping forever.
          if (this.#streamErrors.size > MAX_STREAM_ERRORS) {
            this.#streamErrors.delete(this.#streamErrors.keys().next().value!);
          }
        }
        break;
    }
    for (const listener of [...this.#listeners]) listener(event);
  }
}

const MAX_STREAM_ERRORS = 256;

/** A joined project: how many components use it and what its events said. */
interface ProjectEntry {
  users: number;
  syncState: ProjectSyncState | null;
  state: unknown;
  offs: Off[];
}

/** Creates the provider's client once the wasm is loaded, and closes it once nobody holds it. */
class ClientHolder {
  readonly #options: ClientOptions;
  readonly #clock: Clock;
  #token: string | undefined;
  #users = 0;
  #loading = false;
  #snapshot: HolderSnapshot = { store: null, error: null };
  readonly #listeners = new Set<() => void>();

  constructor(options: ClientOptions) {
    this.#options = options;
    this.#clock = options.clock ?? browserClock;
    this.#token = options.token;
  }

  get snapshot(): HolderSnapshot {
    return this.#snapshot;
  }

  readonly subscribe = (listener: () => void): Off => {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  };

  /** One more mounted provider uses the client: load and connect it unless it exists. */
  acquire(): void {
    this.#users += 1;
    if (this.#snapshot.store !== null || this.#loading) return;
    this.#loading = true;
    ready().then(
      () => {
        this.#loading = false;
        if (this.#users === 0 || this.#snapshot.store !== null) return;
        try {
          const token = this.#token;
          const client = new SocklineClient({ ...this.#options, ...(token !== undefined && { token }) });
          const store = new ClientStore(client, this.#clock);
          this.#publish({ store, error: null });
          client.connect();
        } catch (e) {
          this.#publish({ store: null, error: e });
        }
      },
      (e: unknown) => {
        this.#loading = false;
        this.#publish({ store: null, error: e });
      },
    );
  }

  /** One provider let go; the client closes once none holds it. */
  release(): void {
    this.#users -= 1;
    // StrictMode runs each effect's cleanup and then the effect again, synchronously: closing a
    // microtask later lets that remount find the same client, so it opens one connection.
    queueMicrotask(() => {
      const store = this.#snapshot.store;
      if (this.#users > 0 || store === null) return;
      this.#publish({ store: null, error: null });
      store.dispose();
      // Closes (1000) and frees the wasm session: a remount with new options leaks nothing.
      store.client.free();
    });
  }

  /** A new token from the props: handed to the live client, or used when it is created. */
  setToken(token: string | undefined): void {
    if (token === this.#token) return;
    this.#token = token;
    if (token !== undefined) this.#snapshot.store?.client.setToken(token);
  }

  #publish(snapshot: HolderSnapshot): void {
    this.#snapshot = snapshot;
    for (const listener of [...this.#listeners]) listener();
  }
}

interface HolderSnapshot {
  store: ClientStore | null;
  error: unknown;
}

const SERVER_HOLDER: HolderSnapshot = { store: null, error: null };
const serverHolderSnapshot = () => SERVER_HOLDER;

const StoreContext = createContext<ClientStore | null>(null);

/** Props of `WebSocketProvider`: the client's options (the core's config keys camelCased, plus
 *  `WebSocket`, `clock`, `seed`, `signals`, `storage`, `storageKey`). */
export interface WebSocketProviderProps extends ClientOptions {
  children?: ReactNode;
  /** Called when the wasm fails to load or the options are refused; without it the error is
   *  thrown to the nearest error boundary. */
  onError?: (error: unknown) => void;
}

/** Gives its tree one shared `SocklineClient`: created once the wasm is loaded, connected on
 *  mount, closed on unmount; on the server its children render with no client. */
export function WebSocketProvider(props: WebSocketProviderProps): ReactNode {
  const { children, onError, token, WebSocket, clock, storage, ...config } = props;
  // Options are compared by value (an inline `reconnect={{...}}` is a new object every render);
  // the host objects by identity. A new token alone does not need a new client.
  const configKey = JSON.stringify(config);
  const holder = useMemo(
    () => new ClientHolder({ ...(JSON.parse(configKey) as ClientOptions), token, WebSocket, clock, storage }),
    // eslint-disable-next-line react-hooks/exhaustive-deps -- the token is passed on by setToken below
    [configKey, WebSocket, clock, storage],
  );
  useEffect(() => {
    holder.acquire();
    return () => holder.release();
  }, [holder]);
  useEffect(() => {
    holder.setToken(token);
  }, [holder, token]);
  const { store, error } = useSyncExternalStore(holder.subscribe, () => holder.snapshot, serverHolderSnapshot);
  const reported = useRef<unknown>(null);
  useEffect(() => {
    if (error !== null && onError !== undefined && reported.current !== error) {
      reported.current = error;
      onError(error);
    }
  }, [error, onError]);
  if (error !== null && onError === undefined) throw error;
  return <StoreContext.Provider value={store}>{children}</StoreContext.Provider>;
}

function useStore(): ClientStore | null {
  return useContext(StoreContext);
}

/** The provider's client, or `null` while the wasm loads, on the server, or outside a provider. */
export function useWebSocket(): SocklineClient | null {
  return useStore()?.client ?? null;
}

// ---- a snapshot of client state, kept stable while it does not change ------------------------

/** Reads `read(store)` whenever an event `relevant` says so; returns the previous value while
 *  `equal` says nothing changed (useSyncExternalStore needs a stable snapshot). */
function useStoreValue<T>(
  store: ClientStore | null,
  read: (store: ClientStore) => T,
  fallback: T,
  equal: (a: T, b: T) => boolean,
  relevant: (event: SessionEvent) => boolean,
  deps: readonly unknown[],
): T {
  const cache = useRef<{ value: T } | null>(null);
  // eslint-disable-next-line react-hooks/exhaustive-deps -- `relevant` is described by `deps`
  const subscribe = useCallback(
    (changed: () => void) => (store === null ? noop : store.subscribe((e) => relevant(e) && changed())),
    [store, ...deps],
  );
  const getSnapshot = (): T => {
    const value = store === null ? fallback : read(store);
    if (cache.current !== null && equal(cache.current.value, value)) return cache.current.value;
    cache.current = { value };
    return value;
  };
  return useSyncExternalStore(subscribe, getSnapshot, () => fallback);
}

const noop = () => {};
const NONE: readonly string[] = Object.freeze([]);

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function ofProject(projectId: number) {
  return (e: SessionEvent) =>
    ("project_id" in e && e.project_id === projectId) ||
    (e.kind === "message" && (e["message"] as Envelope | undefined)?.projectId === projectId);
}

// ---- connection status ---------------------------------------------------------------------

/** The next reconnect attempt, as the core scheduled it. */
export interface NextRetry {
  /** The attempt's number (1 = the first reconnect). */
  attempt: number;
  /** The delay the core chose. */
  delayMs: number;
  /** When it opens, on the client's clock (ms). */
  at: number;
}

interface ConnectionSnapshot {
  status: string;
  attempt: number;
  reason: string | null;
  nextRetry: NextRetry | null;
}

/** What `useConnectionStatus` returns. */
export interface ConnectionInfo {
  /** The core's connection state: `idle`, `connecting`, `open`, `reconnecting`, `unauthorized`, `closing`, `closed`, `failed`. */
  status: string;
  /** The attempt of the last state change (0 = the initial connect). */
  attempt: number;
  /** Why the state last changed (the core's status reason), or `null`. */
  reason: string | null;
  /** The reconnect attempt scheduled now, if one is. */
  nextRetry: NextRetry | null;
  /** Milliseconds until `nextRetry` opens, as of this render (never negative), or `null`. */
  retryInMs: number | null;
  /** The state is terminal (the core's `isTerminalState`; also with no client at all): nothing
   *  happens on its own until `connect()` or `reconnect()`. */
  terminal: boolean;
  /** The browser says it has no network (`navigator.onLine`); the client then waits for it. */
  offline: boolean;
}

const IDLE: ConnectionSnapshot = Object.freeze({ status: "idle", attempt: 0, reason: null, nextRetry: null });

/** Options of `useConnectionStatus`. */
export interface ConnectionStatusOptions {
  /** Re-render every second while a reconnect is scheduled, so `retryInMs` counts down. */
  countdown?: boolean;
}

/** The connection state, the attempt, the scheduled reconnect and whether the browser is offline. */
export function useConnectionStatus(options: ConnectionStatusOptions = {}): ConnectionInfo {
  const store = useStore();
  const snapshot = useStoreValue(
    store,
    (s) => s.connection,
    IDLE,
    Object.is,
    (e) => e.kind === "status" || e.kind === "reconnect_scheduled",
    [],
  );
  const offline = useSyncExternalStore(subscribeNetwork, isOffline, notOffline);
  const clock = store?.clock ?? browserClock;
  const retryInMs = snapshot.nextRetry === null ? null : Math.max(0, snapshot.nextRetry.at - clock.now());
  const [, tick] = useState(0);
  const counting = options.countdown === true && retryInMs !== null && retryInMs > 0 && !offline;
  useEffect(() => {
    if (!counting || retryInMs === null) return;
    // Wake when the whole seconds shown change.
    const handle = clock.setTimeout(() => tick((n) => n + 1), retryInMs % 1000 || 1000);
    return () => clock.clearTimeout(handle);
  });
  const terminal = store === null || isTerminalState(snapshot.status);
  return { ...snapshot, retryInMs, terminal, offline };
}

function subscribeNetwork(changed: () => void): Off {
  if (typeof window === "undefined") return noop;
  window.addEventListener("online", changed);
  window.addEventListener("offline", changed);
  return () => {
    window.removeEventListener("online", changed);
    window.removeEventListener("offline", changed);
  };
}
function isOffline(): boolean {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}
function notOffline(): boolean {
  return false;
}

// ---- messages --------------------------------------------------------------------------------

/** Options of `useRealtimeMessaging`. */
export interface RealtimeMessagingOptions {
  /** How many of the latest messages to keep (100 by default). */
  limit?: number;
  /** Only messages of this project. */
  projectId?: number;
}

/** What `useRealtimeMessaging` returns. */
export interface RealtimeMessaging {
  /** The core's connection state. */
  connectionStatus: string;
  /** Sends (or queues) a message; returns its id. Throws `not_ready` before the client exists. */
  sendMessage: (message: OutgoingMessage) => string;
  /** The latest messages of the given types, oldest first. */
  messages: readonly Envelope[];
}

/** Messages of `types` (`type`, `prefix*` or `*`, the default) as they arrive, and a way to send. */
export function useRealtimeMessaging(
  types: string | readonly string[] = "*",
  options: RealtimeMessagingOptions = {},
): RealtimeMessaging {
  const store = useStore();
  const client = store?.client ?? null;
  const { limit = 100, projectId } = options;
  const patterns = typeof types === "string" ? [types] : types;
  const patternsKey = patterns.join("\n");
  const [messages, setMessages] = useState<readonly Envelope[]>(NO_MESSAGES);
  // A new limit applies to what arrives next (and to what is returned now) without resubscribing.
  const limitRef = useRef(limit);
  useEffect(() => {
    limitRef.current = limit;
  }, [limit]);
  useEffect(() => {
    if (client === null) return;
    let last: Envelope | undefined;
    const keep = (message: Envelope) => {
      // One message matched by several of the patterns arrives once per subscription.
      if (message === last) return;
      last = message;
      setMessages((prev) => [...prev.slice(Math.max(0, prev.length + 1 - limitRef.current)), message]);
    };
    const offs = patternsKey
      .split("\n")
      .map((pattern) => client.subscribe(pattern, keep, projectId === undefined ? {} : { projectId }));
    return () => {
      for (const off of offs) off();
    };
  }, [client, patternsKey, projectId]);
  const { status } = useConnectionStatus();
  const sendMessage = useCallback((message: OutgoingMessage) => requireClient(client).sendMessage(message), [client]);
  return { connectionStatus: status, sendMessage, messages: messages.length > limit ? messages.slice(-limit) : messages };
}

const NO_MESSAGES: readonly Envelope[] = Object.freeze([]);

function requireClient(client: SocklineClient | null): SocklineClient {
  if (client === null) {
    throw new SocklineError("not_ready", "no client yet: the wasm is loading, or this is not inside a mounted WebSocketProvider");
  }
  return client;
}

// ---- projects --------------------------------------------------------------------------------

/** A joined project's sync state: `stale` after a version gap, `synced` once a snapshot applied. */
export type ProjectSyncState = "stale" | "synced";

/** What `useProjectWebSocket` returns. */
export interface ProjectWebSocket {
  /** The last applied version, if any yet. */
  version: number | undefined;
  /** `synced` once a snapshot applied, `stale` after a gap until the next one; `null` before either. */
  syncState: ProjectSyncState | null;
  /** Who is present, sorted. */
  presence: readonly string[];
  /** The `data` of the latest `project_snapshot` or `project_updated` (its `version` included). */
  state: unknown;
  /** Sends an edit (`project_update`): the hub bumps the version and broadcasts it. Returns its id. */
  sendUpdate: (state: unknown) => string;
}

interface ProjectSnapshot {
  version: number | undefined;
  syncState: ProjectSyncState | null;
  presence: readonly string[];
  state: unknown;
}

const NO_PROJECT: ProjectSnapshot = Object.freeze({ version: undefined, syncState: null, presence: NONE, state: undefined });

function sameProject(a: ProjectSnapshot, b: ProjectSnapshot): boolean {
  return a.version === b.version && a.syncState === b.syncState && a.state === b.state && sameList(a.presence, b.presence);
}

/** A project's version, sync state, presence and latest state; joined while mounted. */
export function useProjectWebSocket(projectId: number): ProjectWebSocket {
  const store = useStore();
  useEffect(() => store?.acquireProject(projectId), [store, projectId]);
  const snapshot = useStoreValue(
    store,
    (s) => {
      const entry = s.project(projectId);
      return {
        version: s.client.projectVersion(projectId),
        syncState: entry?.syncState ?? null,
        presence: s.client.presence(projectId),
        state: entry?.state,
      };
    },
    NO_PROJECT,
    sameProject,
    ofProject(projectId),
    [projectId],
  );
  const client = store?.client ?? null;
  const sendUpdate = useCallback(
    (state: unknown) => requireClient(client).sendMessage({ type: "project_update", data: state, projectId }),
    [client, projectId],
  );
  return { ...snapshot, sendUpdate };
}

// ---- typing ----------------------------------------------------------------------------------

/** What `useTypingIndicators` returns. */
export interface TypingIndicators {
  /** The remote users typing in the project now, sorted. */
  typingUsers: readonly string[];
  /** The local user is typing (call on each keystroke: the core throttles). */
  startTyping: () => void;
  /** The local user stopped typing. */
  stopTyping: () => void;
}

/** Who else is typing in a project, and the local user's typing signals. */
export function useTypingIndicators(projectId: number): TypingIndicators {
  const store = useStore();
  const typingUsers = useStoreValue(
    store,
    (s) => s.client.typingUsers(projectId),
    NONE,
    sameList,
    (e) => e.kind === "typing" && e["project_id"] === projectId,
    [projectId],
  );
  const client = store?.client ?? null;
  const typing = useRef(false);
  // Typing signals are volatile: before the client exists there is nothing worth queueing.
  const startTyping = useCallback(() => {
    if (client === null) return;
    client.startTyping(projectId);
    typing.current = true;
  }, [client, projectId]);
  const stopTyping = useCallback(() => {
    if (client === null) return;
    typing.current = false;
    client.stopTyping(projectId);
  }, [client, projectId]);
  useEffect(
    () => () => {
      // A typist whose input goes away stops now rather than after the core's idle timeout.
      if (typing.current) stopTyping();
    },
    [stopTyping],
  );
  return { typingUsers, startTyping, stopTyping };
}

// ---- agent streams ---------------------------------------------------------------------------

/** Options of `useStreamingResponse`. */
export interface StreamingResponseOptions {
  /** The stream to follow (the `streamId` of the `agent_prompt`); none: nothing yet. */
  streamId: string | null | undefined;
}

/** What `useStreamingResponse` returns. */
export interface StreamingResponseState {
  /** The text so far. */
  content: string;
  /** The stream's state (`started`, `delta`, `stalled`, `done`, `interrupted`, `failed`), if known. */
  state: string | undefined;
  /** Known and not in a final state. */
  isStreaming: boolean;
  /** Stops the stream (nothing when it already ended). */
  interrupt: () => void;
  /** What a failed stream reported, or `null`. */
  error: string | null;
}

interface StreamSnapshot {
  content: string;
  state: string | undefined;
  error: string | null;
}

const NO_STREAM: StreamSnapshot = Object.freeze({ content: "", state: undefined, error: null });

function sameStream(a: StreamSnapshot, b: StreamSnapshot): boolean {
  return a.content === b.content && a.state === b.state && a.error === b.error;
}

/** An agent stream's content and state as it arrives, and a way to interrupt it. */
export function useStreamingResponse({ streamId }: StreamingResponseOptions): StreamingResponseState {
  const store = useStore();
  const snapshot = useStoreValue(
    store,
    (s) =>
      streamId == null
        ? NO_STREAM
        : {
            content: s.client.streamContent(streamId) ?? "",
            state: s.client.streamState(streamId),
            error: s.streamError(streamId) ?? null,
          },
    NO_STREAM,
    sameStream,
    (e) => e.kind === "stream" && e["stream_id"] === streamId,
    [streamId],
  );
  const isStreaming = snapshot.state !== undefined && !isFinalStreamState(snapshot.state);
  const client = store?.client ?? null;
  const interrupt = useCallback(() => {
    if (client === null || streamId == null) return;
    const state = client.streamState(streamId);
    // Clicked as the stream ended: there is nothing left to stop.
    if (state === undefined || isFinalStreamState(state)) return;
    client.interruptStream(streamId);
  }, [client, streamId]);
  return { ...snapshot, isStreaming, interrupt };
}

// ---- components ------------------------------------------------------------------------------

function classes(...names: (string | false | undefined)[]): string {
  return names.filter(Boolean).join(" ");
}

/** The words `ConnectionStatus` shows for a connection: `Connected`, `Connecting`,
 *  `Reconnecting (attempt 2, in 3 s)`, `Offline`, `Failed`, ... */
export function connectionLabel(info: ConnectionInfo): string {
  const { status, attempt, nextRetry, retryInMs, terminal, offline } = info;
  // A session at rest (idle, closed, failed) is not waiting for the network.
  if (offline && !terminal) return "Offline";
  switch (status) {
    case "open":
      return "Connected";
    case "connecting":
      return attempt > 0 ? `Reconnecting (attempt ${attempt})` : "Connecting";
    case "reconnecting":
      return nextRetry === null
        ? "Reconnecting"
        : `Reconnecting (attempt ${nextRetry.attempt}, in ${Math.ceil((retryInMs ?? 0) / 1000)} s)`;
    case "unauthorized":
      return "Unauthorized";
    case "closing":
      return "Disconnecting";
    case "closed":
      return "Disconnected";
    case "failed":
      return "Failed";
    case "idle":
      return "Not connected";
    default:
      return status;
  }
}

/** Props of `ConnectionStatus`. */
export interface ConnectionStatusProps {
  /** `compact`: an indicator and a word; `detailed`: also the reason and a reconnect button. */
  variant?: "compact" | "detailed";
  className?: string;
  /** The words shown (default `connectionLabel`). */
  format?: (info: ConnectionInfo) => string;
  /** The reconnect button's text. */
  reconnectLabel?: string;
}

/** The connection's state in words, with a live reconnect countdown. Class names:
 *  `sockline-status` with `sockline-status-compact`/`-detailed`, `sockline-status-<status>` and
 *  `sockline-status-offline`; inside: `sockline-status-dot`, `-label`, `-detail`, `-reconnect`. */
export function ConnectionStatus({
  variant = "compact",
  className,
  format = connectionLabel,
  reconnectLabel = "Reconnect",
}: ConnectionStatusProps): ReactNode {
  const info = useConnectionStatus({ countdown: true });
  const client = useWebSocket();
  const root = classes(
    "sockline-status",
    `sockline-status-${variant}`,
    `sockline-status-${info.status}`,
    info.offline && "sockline-status-offline",
    className,
  );
  const label = format(info);
  if (variant === "compact") {
    return (
      <span className={root} role="status" data-status={info.status} title={info.reason ?? undefined}>
        <span className="sockline-status-dot" aria-hidden="true" />
        <span className="sockline-status-label">{label}</span>
      </span>
    );
  }
  // `reconnect()` starts over from a terminal state (closed, failed) and, while reconnecting,
  // opens the waiting attempt now (the core's `connect`); elsewhere it has nothing to do.
  const canReconnect = client !== null && (info.terminal || info.status === "reconnecting");
  return (
    <div className={root} role="status" data-status={info.status}>
      <span className="sockline-status-dot" aria-hidden="true" />
      <span className="sockline-status-label">{label}</span>
      {info.reason !== null && info.status !== "open" && <span className="sockline-status-detail">{info.reason}</span>}
      {canReconnect && (
        <button type="button" className="sockline-status-reconnect" onClick={() => client.reconnect()}>
          {reconnectLabel}
        </button>
      )}
    </div>
  );
}

/** The sentence `TypingIndicator` shows: `ann is typing`, `ann and bob are typing`,
 *  `ann, bob and 2 others are typing`. */
export function typingLabel(users: readonly string[]): string {
  const [a, b, c] = users;
  switch (users.length) {
    case 0:
      return "";
    case 1:
      return `${a} is typing`;
    case 2:
      return `${a} and ${b} are typing`;
    case 3:
      return `${a}, ${b} and ${c} are typing`;
    default:
      return `${a}, ${b} and ${users.length - 2} others are typing`;
  }
}

/** Props of `TypingIndicator`. */
export interface TypingIndicatorProps {
  projectId: number;
  className?: string;
  /** The sentence shown (default `typingLabel`). */
  format?: (users: readonly string[]) => string;
}

/** Who is typing in a project, with three animated dots. The element stays (empty, with
 *  `sockline-typing-idle`) while nobody types, so it is a live region screen readers announce
 *  and the layout does not jump. Class names: `sockline-typing`, `sockline-typing-label`,
 *  `sockline-typing-dots`, `sockline-typing-dot` (animated by `sockline/react.css` or your own). */
export function TypingIndicator({ projectId, className, format = typingLabel }: TypingIndicatorProps): ReactNode {
  const { typingUsers } = useTypingIndicators(projectId);
  const idle = typingUsers.length === 0;
  return (
    <div className={classes("sockline-typing", idle && "sockline-typing-idle", className)} aria-live="polite">
      {!idle && (
        <>
          <span className="sockline-typing-label">{format(typingUsers)}</span>
          <span className="sockline-typing-dots" aria-hidden="true">
            <span className="sockline-typing-dot" />
            <span className="sockline-typing-dot" />
            <span className="sockline-typing-dot" />
          </span>
        </>
      )}
    </div>
  );
}

/** Props of `StreamingResponse`. */
export interface StreamingResponseProps {
  streamId: string | null | undefined;
  className?: string;
  /** How the content is shown (default: as text). */
  render?: (content: string) => ReactNode;
  /** The interrupt button's text. */
  interruptLabel?: string;
}

/** How close to the bottom (px) still counts as following the stream. */
const STICK_PX = 16;

// useLayoutEffect warns in server rendering before React 19; there is no layout there anyway.
const useIsomorphicLayoutEffect = typeof window === "undefined" ? useEffect : useLayoutEffect;

/** An agent stream's content as it arrives, in a box kept scrolled to the bottom unless the
 *  reader scrolled up, followed by an interrupt button while it streams and the error if it
 *  failed (siblings, so a layout can place them). Class names: `sockline-stream` (the scrolling
 *  box, with `sockline-stream-<state>`), `sockline-stream-interrupt`, `sockline-stream-error`. */
export function StreamingResponse({
  streamId,
  className,
  render,
  interruptLabel = "Stop",
}: StreamingResponseProps): ReactNode {
  const { content, state, isStreaming, interrupt, error } = useStreamingResponse({ streamId });
  const box = useRef<HTMLDivElement | null>(null);
  const following = useRef(true);
  useIsomorphicLayoutEffect(() => {
    const el = box.current;
    if (el !== null && following.current) el.scrollTop = el.scrollHeight;
  }, [content]);
  const onScroll = () => {
    const el = box.current;
    if (el !== null) following.current = el.scrollHeight - el.scrollTop - el.clientHeight <= STICK_PX;
  };
  return (
    <>
      <div
        className={classes("sockline-stream", state !== undefined && `sockline-stream-${state}`, className)}
        ref={box}
        onScroll={onScroll}
        aria-live="polite"
        aria-busy={isStreaming}
      >
        {render === undefined ? content : render(content)}
      </div>
      {isStreaming && (
        <button type="button" className="sockline-stream-interrupt" onClick={interrupt}>
          {interruptLabel}
        </button>
      )}
      {error !== null && (
        <div className="sockline-stream-error" role="alert">
          {error}
        </div>
      )}
    </>
  );
}
