// sockline/react under happy-dom: real SocklineClients (through the hooks and components) against
// the real hub core in virtual time, the test kit's VirtualHub (hub.WebSocket and hub.clock as the
// provider's options). React renders with react-dom/client inside act().
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { Window } from "happy-dom";

// A DOM for react-dom, registered before it is imported: the window's globals that Node lacks.
const window = new Window({ url: "http://localhost/" });
for (const key of Object.getOwnPropertyNames(window)) {
  if (key in globalThis) continue;
  Object.defineProperty(globalThis, key, { value: window[key], configurable: true, writable: true });
}
Object.defineProperty(globalThis, "window", { value: window, configurable: true });
Object.defineProperty(globalThis, "navigator", { value: window.navigator, configurable: true });
globalThis.IS_REACT_ACT_ENVIRONMENT = true;

const React = await import("react");
const { act, createElement: h, StrictMode, useEffect } = React;
const { createRoot, hydrateRoot } = await import("react-dom/client");
const { renderToString } = await import("react-dom/server");
const sockline = await import("../dist/index.js");
const { ready: kitReady, VirtualHub } = await import("../dist/testing.js");
const {
  WebSocketProvider,
  useWebSocket,
  useConnectionStatus,
  useRealtimeMessaging,
  useProjectWebSocket,
  useStreamingResponse,
  useTypingIndicators,
  ConnectionStatus,
  TypingIndicator,
  StreamingResponse,
  connectionLabel,
  typingLabel,
} = await import("../dist/react.js");

before(async () => {
  await sockline.ready();
  await kitReady();
});
after(async () => {
  await window.happyDOM.close();
});

// ---- helpers -----------------------------------------------------------------------------------

/** Every handler the hooks registered on a client and have not removed yet, by method. */
const live = { subscribe: 0, onEvent: 0, onStatusChange: 0 };
for (const method of Object.keys(live)) {
  const original = sockline.SocklineClient.prototype[method];
  sockline.SocklineClient.prototype[method] = function (...args) {
    const off = original.apply(this, args);
    live[method] += 1;
    let done = false;
    return () => {
      if (!done) live[method] -= 1;
      done = true;
      off();
    };
  };
}

/** A hub with a fast scripted agent, and the provider options that reach it. */
function virtualHub(hubOptions = {}, seed = 1) {
  const hub = new VirtualHub({ agentChunks: 6, agentChunkMs: 10, ...hubOptions }, seed);
  // Counts the sockets the clients construct (the StrictMode test reads it).
  let sockets = 0;
  const Counted = class extends hub.WebSocket {
    constructor(url) {
      super(url);
      sockets += 1;
    }
  };
  const options = (userId, more = {}) => ({
    url: "ws://hub.test/ws",
    userId,
    WebSocket: Counted,
    clock: hub.clock,
    signals: false,
    storage: null,
    // Message ids come from the seed: clients sharing one would send the same ids, and a
    // receiver deduplicates them as one message.
    seed: [...userId].reduce((n, ch) => n * 31 + ch.charCodeAt(0), 7),
    reconnect: { initialMs: 3000, jitter: "none", maxAttempts: null },
    ...more,
  });
  return { hub, options, sockets: () => sockets };
}

/** Renders `element` into a fresh container; the wasm is loaded, so the client exists once the
 *  ready() promise settles inside the act. */
async function render(element) {
  const container = document.createElement("div");
  document.body.appendChild(container);
  const root = createRoot(container);
  await act(async () => root.render(element));
  return {
    container,
    text: () => container.textContent,
    $: (selector) => container.querySelector(selector),
    async unmount() {
      await act(async () => root.unmount());
      container.remove();
    },
  };
}

/** Runs virtual time in `step` ms slices (each inside act) until `pred()` holds. */
function until(hub, pred, maxMs = 10_000, step = 5) {
  for (let t = 0; !pred(); t += step) {
    if (t > maxMs) { throw new Error(`still false after ${maxMs} ms of virtual time`); }
    act(() => hub.advance(step));
  }
}

function advance(hub, ms) {
  act(() => hub.advance(ms));
}

/** A component that hands a hook's latest result to the test. */
function Probe({ use, out }) {
  out.current = use();
  return null;
}
const ref = () => ({ current: undefined });

// ---- tests ---------------------------------------------------------------------------------------

test("the bundle imports the client from the package's entry (one wasm) and is a client module", () => {
  const text = readFileSync(new URL("../dist/react.js", import.meta.url), "utf8");
  assert.ok(text.startsWith('"use client";'), "a \"use client\" module");
  assert.match(text, /from "\.\/index\.js"/);
  assert.doesNotMatch(text, /WebAssembly|sockline_wasm|__wbg/, "no second wasm loader");
  assert.doesNotMatch(text, /from "react-dom/, "react-dom is the application's");
});

test("the labels: connection words and typing sentences", () => {
  const info = { status: "open", attempt: 0, reason: null, nextRetry: null, retryInMs: null, terminal: false, offline: false };
  assert.equal(connectionLabel(info), "Connected");
  assert.equal(connectionLabel({ ...info, status: "connecting" }), "Connecting");
  assert.equal(connectionLabel({ ...info, status: "connecting", attempt: 2 }), "Reconnecting (attempt 2)");
  const retry = { attempt: 2, delayMs: 3000, at: 5000 };
  assert.equal(connectionLabel({ ...info, status: "reconnecting", nextRetry: retry, retryInMs: 2001 }), "Reconnecting (attempt 2, in 3 s)");
  assert.equal(connectionLabel({ ...info, status: "reconnecting", offline: true }), "Offline");
  assert.equal(connectionLabel({ ...info, status: "failed", terminal: true, offline: true }), "Failed");
  assert.deepEqual(
    [[], ["ann"], ["ann", "bob"], ["ann", "bob", "cy"], ["ann", "bob", "cy", "dee"]].map(typingLabel),
    ["", "ann is typing", "ann and bob are typing", "ann, bob and cy are typing", "ann, bob and 2 others are typing"],
  );
});

test("connect on mount; a dropped link shows Reconnecting with the attempt and a live countdown, then Connected", async () => {
  const { hub, options } = virtualHub();
  const status = ref();
  const client = ref();
  const view = await render(
    h(
      WebSocketProvider,
      options("ann"),
      h(ConnectionStatus, { variant: "detailed" }),
      h(Probe, { use: useConnectionStatus, out: status }),
      h(Probe, { use: useWebSocket, out: client }),
    ),
  );
  assert.ok(client.current instanceof sockline.SocklineClient, "the client exists once the wasm is loaded");
  until(hub, () => status.current.status === "open");
  assert.equal(view.$(".sockline-status-label").textContent, "Connected");
  assert.ok(view.$(".sockline-status").classList.contains("sockline-status-open"));
  assert.equal(view.$(".sockline-status-reconnect"), null, "no reconnect button while open");

  act(() => hub.dropLinks());
  until(hub, () => status.current.status === "reconnecting");
  assert.deepEqual(status.current.nextRetry, { attempt: 1, delayMs: 3000, at: status.current.nextRetry.at });
  assert.equal(status.current.reason, "connection lost (1006)");
  assert.equal(view.$(".sockline-status-label").textContent, "Reconnecting (attempt 1, in 3 s)");
  assert.equal(view.$(".sockline-status-detail").textContent, "connection lost (1006)");
  // The countdown moves on its own (a timer on the client's clock), with nothing else happening.
  advance(hub, 1000);
  assert.equal(view.$(".sockline-status-label").textContent, "Reconnecting (attempt 1, in 2 s)");
  advance(hub, 1000);
  assert.equal(view.$(".sockline-status-label").textContent, "Reconnecting (attempt 1, in 1 s)");

  advance(hub, 1000);
  assert.equal(status.current.status, "connecting");
  assert.equal(view.$(".sockline-status-label").textContent, "Reconnecting (attempt 1)");
  until(hub, () => status.current.status === "open", 100);
  assert.equal(view.$(".sockline-status-label").textContent, "Connected");

  // While reconnecting, the button opens the waiting attempt now instead of after its backoff.
  act(() => hub.dropLinks());
  until(hub, () => status.current.status === "reconnecting");
  const waited = status.current.nextRetry.delayMs;
  assert.ok(waited >= 1000, `a backoff to skip: ${waited} ms`);
  const button = view.$(".sockline-status-reconnect");
  assert.notEqual(button, null, "a reconnect-now button while reconnecting");
  const pressedAt = hub.now;
  act(() => button.click());
  until(hub, () => status.current.status === "open", 100);
  assert.ok(hub.now - pressedAt < waited, "connected before the backoff was over");
  assert.equal(view.$(".sockline-status-reconnect"), null, "no button once open");
  await view.unmount();
});

test("the browser going offline shows Offline; a failed client shows Failed and the button starts over", async () => {
  const { hub, options } = virtualHub();
  const status = ref();
  const view = await render(
    h(
      WebSocketProvider,
      options("ann", { reconnect: { initialMs: 100, jitter: "none", maxAttempts: 1 } }),
      h(ConnectionStatus, { variant: "compact" }),
      h(ConnectionStatus, { variant: "detailed" }),
      h(Probe, { use: useConnectionStatus, out: status }),
    ),
  );
  until(hub, () => status.current.status === "open");
  let onLine = false;
  Object.defineProperty(window.navigator, "onLine", { get: () => onLine, configurable: true });
  try {
    act(() => window.dispatchEvent(new window.Event("offline")));
    assert.equal(status.current.offline, true);
    const compact = view.$(".sockline-status-compact");
    assert.equal(compact.textContent, "Offline");
    assert.ok(compact.classList.contains("sockline-status-offline"));
    onLine = true;
    act(() => window.dispatchEvent(new window.Event("online")));
    assert.equal(compact.textContent, "Connected");
  } finally {
    delete window.navigator.onLine;
  }

  // The hub goes away for good: one reconnect attempt, then the core gives up.
  act(() => hub.restart({ downMs: 60_000 }));
  until(hub, () => status.current.status === "failed", 5_000);
  assert.equal(view.$(".sockline-status-compact").textContent, "Failed");
  assert.match(view.$(".sockline-status-detail").textContent, /gave up after 1 reconnect attempts/);
  advance(hub, 60_000);
  await act(async () => view.$(".sockline-status-reconnect").click());
  until(hub, () => status.current.status === "open", 1_000);
  await view.unmount();
});

test("typing: who types shows with three dots; it expires; a typist's component unmounting stops at once", async () => {
  const { hub, options } = virtualHub();
  const ann = ref();
  const bob = ref();
  const cy = ref();
  const typing = (out) => h(Probe, { use: () => useTypingIndicators(1), out });
  const annView = await render(
    h(WebSocketProvider, options("ann"), h(TypingIndicator, { projectId: 1 }), typing(ann), h(Joined, { projectId: 1 })),
  );
  // Bob's own idle stop comes much later than ann's expiry, so ann's expiry is what shows.
  const bobView = await render(
    h(WebSocketProvider, options("bob", { typing: { idleMs: 60_000 } }), typing(bob), h(Joined, { projectId: 1 })),
  );
  const cyView = await render(h(WebSocketProvider, options("cy"), typing(cy), h(Joined, { projectId: 1 })));
  const indicator = () => annView.$(".sockline-typing");
  until(hub, () => ann.current.typingUsers !== undefined && annView.text() === "" && hub.connectionsOpen === 3);
  advance(hub, 50); // presence settles
  assert.ok(indicator().classList.contains("sockline-typing-idle"), "the live region is there while nobody types");

  act(() => bob.current.startTyping());
    until(hub, () => ann.current.typingUsers.length === 1, 100);
  assert.deepEqual(ann.current.typingUsers, ["bob"]);
  assert.equal(annView.$(".sockline-typing-label").textContent, "bob is typing");
  assert.equal(annView.container.querySelectorAll(".sockline-typing-dots > .sockline-typing-dot").length, 3);
  act(() => cy.current.startTyping());
  until(hub, () => ann.current.typingUsers.length === 2, 100);
  assert.equal(annView.$(".sockline-typing-label").textContent, "bob and cy are typing");

  // Bob says nothing more: ann's core lets him expire (typing.expireMs, 6 s); cy stops by unmounting.
  await cyView.unmount();
  until(hub, () => ann.current.typingUsers.length === 1, 100);
  assert.deepEqual(ann.current.typingUsers, ["bob"], "cy's stop arrived at once");
  const start = hub.now;
  until(hub, () => ann.current.typingUsers.length === 0, 10_000, 100);
  assert.ok(hub.now - start >= 5_000, `bob expired after ${hub.now - start} ms`);
  assert.ok(indicator().classList.contains("sockline-typing-idle"));
  assert.equal(annView.$(".sockline-typing-dot"), null);
  await annView.unmount();
  await bobView.unmount();
});

/** Keeps a project joined (typing and presence are per project). */
function Joined({ projectId }) {
  useProjectWebSocket(projectId);
  return null;
}

test("an agent stream renders as it arrives, auto-scrolls unless scrolled up, and the button interrupts another", async () => {
  const { hub, options } = virtualHub({ agentChunks: 40, agentChunkMs: 10 });
  const client = ref();
  const s1 = ref();
  const view = await render(
    h(
      WebSocketProvider,
      options("ann"),
      h(Probe, { use: useWebSocket, out: client }),
      h(Probe, { use: () => useStreamingResponse({ streamId: "s1" }), out: s1 }),
      h("div", { id: "one" }, h(StreamingResponse, { streamId: "s1" })),
      h("div", { id: "two" }, h(StreamingResponse, { streamId: "s2", interruptLabel: "Interrupt" })),
    ),
  );
  assert.deepEqual({ ...s1.current, interrupt: undefined }, { content: "", state: undefined, isStreaming: false, error: null, interrupt: undefined });
  const box = view.$("#one .sockline-stream");
  // happy-dom does no layout: the box is 100 px high and its content always 1000 px.
  Object.defineProperty(box, "scrollHeight", { get: () => 1000, configurable: true });
  Object.defineProperty(box, "clientHeight", { get: () => 100, configurable: true });

  client.current.sendMessage({ type: "agent_prompt", data: { prompt: "hello", streamId: "s1" } });
  until(hub, () => s1.current.content.length > 0, 200);
  assert.equal(s1.current.isStreaming, true);
  assert.equal(box.textContent, s1.current.content);
  assert.equal(box.scrollTop, 1000, "kept at the bottom");
  assert.ok(view.$("#one .sockline-stream-interrupt"), "an interrupt button while streaming");
  // The reader scrolls up: the box stays where they put it.
  box.scrollTop = 300;
  act(() => box.dispatchEvent(new window.Event("scroll")));
  const before = s1.current.content;
  until(hub, () => s1.current.content !== before, 100);
  assert.equal(box.scrollTop, 300, "not pulled back down");
  until(hub, () => !s1.current.isStreaming, 2_000);
  assert.equal(s1.current.state, "done");
  assert.equal(s1.current.content, client.current.streamContent("s1"));
  assert.equal(box.textContent, s1.current.content);
  assert.ok(box.classList.contains("sockline-stream-done"));
  assert.equal(view.$("#one .sockline-stream-interrupt"), null, "no button once done");

  client.current.sendMessage({ type: "agent_prompt", data: { prompt: "again", streamId: "s2" } });
  until(hub, () => (client.current.streamContent("s2") ?? "").length > 0, 200);
  const button = view.$("#two .sockline-stream-interrupt");
  assert.equal(button.textContent, "Interrupt");
  await act(async () => button.click());
  assert.equal(client.current.streamState("s2"), "interrupted");
  const shown = view.$("#two .sockline-stream").textContent;
  advance(hub, 500);
  assert.equal(view.$("#two .sockline-stream").textContent, shown, "nothing more after the interrupt");
  assert.equal(view.$("#two .sockline-stream-interrupt"), null);
  await view.unmount();
});

test("a stream the hub cannot resume fails, and its error shows", async () => {
  const { hub, options } = virtualHub({ agentChunks: 40, agentChunkMs: 10 });
  const client = ref();
  const s = ref();
  const view = await render(
    h(
      WebSocketProvider,
      options("ann", { reconnect: { initialMs: 10, jitter: "none", maxAttempts: null } }),
      h(Probe, { use: useWebSocket, out: client }),
      h(Probe, { use: () => useStreamingResponse({ streamId: "r" }), out: s }),
      h(StreamingResponse, { streamId: "r" }),
    ),
  );
  until(hub, () => client.current.connectionStatus === "open");
  client.current.sendMessage({ type: "agent_prompt", data: { prompt: "x", streamId: "r" } });
  until(hub, () => s.current.content.length > 0, 200);
  // A fresh hub knows neither the session nor the stream: the resume is answered with an error.
  act(() => hub.restart({ keepState: false }));
  // The client comes back within the hub's restart window (3 s by default).
  until(hub, () => s.current.state === "failed", 5_000);
  assert.equal(s.current.isStreaming, false);
  assert.equal(typeof s.current.error, "string");
  assert.equal(view.$(".sockline-stream-error").textContent, s.current.error);
  await view.unmount();
});

test("projects: version, sync state, presence and state; joined while mounted, once per project", async () => {
  const { hub, options } = virtualHub();
  const ann = ref();
  const ann2 = ref();
  const bob = ref();
  const annProject = (out) => h(Probe, { use: () => useProjectWebSocket(5), out });
  const annView = await render(h(WebSocketProvider, options("ann"), annProject(ann), h(Toggle, { id: "ann2" }, annProject(ann2))));
  const bobView = await render(h(WebSocketProvider, options("bob"), h(Toggle, { id: "bob" }, annProject(bob))));
  until(hub, () => ann.current.presence.length === 2 && bob.current.presence.length === 2, 1_000);
  assert.deepEqual(ann.current.presence, ["ann", "bob"]);
  assert.equal(ann.current.syncState, "synced");
  assert.equal(ann.current.version, 0);

  act(() => {
    bob.current.sendUpdate({ title: "draft" });
  });
  until(hub, () => ann.current.version === 1, 100);
  assert.deepEqual(ann.current.state, { version: 1, title: "draft" });
  assert.equal(ann2.current.version, 1, "the second user of the project sees the same");
  assert.deepEqual(ann2.current.state, ann.current.state);

  // One of ann's two components goes: she stays in the project.
  await act(async () => toggles.get("ann2")(false));
  advance(hub, 100);
  assert.deepEqual(bob.current.presence, ["ann", "bob"]);
  // Bob's only one goes: he leaves.
  await act(async () => toggles.get("bob")(false));
  until(hub, () => ann.current.presence.length === 1, 100);
  assert.deepEqual(ann.current.presence, ["ann"]);
  await annView.unmount();
  await bobView.unmount();
});

/** Renders its children until the test switches it off with `toggles.get(id)(false)`. */
const toggles = new Map();
function Toggle({ id, children }) {
  const [on, set] = React.useState(true);
  toggles.set(id, set);
  return on ? children : null;
}

test("useRealtimeMessaging: the latest messages of the given types, bounded; sendMessage before a client is not_ready", async () => {
  const { hub, options } = virtualHub();
  const ann = ref();
  const bob = ref();
  const annView = await render(
    h(
      WebSocketProvider,
      options("ann"),
      h(Joined, { projectId: 3 }),
      h(Probe, { use: () => useRealtimeMessaging(["chat", "chat*"], { limit: 3 }), out: ann }),
    ),
  );
  const bobView = await render(
    h(WebSocketProvider, options("bob"), h(Joined, { projectId: 3 }), h(Probe, { use: () => useRealtimeMessaging("note"), out: bob })),
  );
  until(hub, () => ann.current.connectionStatus === "open" && bob.current.connectionStatus === "open");
  advance(hub, 50);
  for (let i = 1; i <= 5; i += 1) {
    const id = bob.current.sendMessage({ type: "chat", data: i, projectId: 3 });
    assert.equal(typeof id, "string");
  }
  advance(hub, 100);
  assert.deepEqual(
    ann.current.messages.map((m) => m.data),
    [3, 4, 5],
    "the last three, each once although two patterns match",
  );
  assert.deepEqual(bob.current.messages, [], "bob follows notes only");
  await annView.unmount();
  await bobView.unmount();

  const outside = ref();
  const view = await render(h(Probe, { use: () => useRealtimeMessaging(), out: outside }));
  assert.equal(outside.current.connectionStatus, "idle");
  assert.throws(
    () => outside.current.sendMessage({ type: "chat" }),
    (e) => e instanceof sockline.SocklineError && e.code === "not_ready",
  );
  await view.unmount();
});

test("unmount cleans up everything: no handler left, the client closed, no timer, socket or listener", async () => {
  const { hub, options } = virtualHub();
  const client = ref();
  const before = { ...live };
  const view = await render(
    h(
      WebSocketProvider,
      options("ann"),
      h(Probe, { use: useWebSocket, out: client }),
      h(ConnectionStatus, { variant: "detailed" }),
      h(TypingIndicator, { projectId: 1 }),
      h(StreamingResponse, { streamId: "x" }),
      h(Probe, { use: () => useRealtimeMessaging(["a", "b"]), out: ref() }),
      h(Probe, { use: () => useProjectWebSocket(1), out: ref() }),
    ),
  );
  until(hub, () => client.current.connectionStatus === "open");
  assert.ok(live.subscribe > before.subscribe && live.onEvent > before.onEvent);
  const c = client.current;
  await view.unmount();
  assert.deepEqual(live, before, "every subscribe and onEvent undone");
  // Unmounted: the client closed (1000) and freed its wasm session at once.
  assert.deepEqual(c.resources, { listeners: 0, timers: 0, sockets: 0 });
  assert.throws(() => c.connectionStatus, (e) => e.code === "freed");
  advance(hub, 100);
  assert.equal(hub.connectionsOpen, 0);
});

test("React.StrictMode: one connection, one client, and a clean unmount", async () => {
  const { hub, options, sockets } = virtualHub();
  const clients = new Set();
  const status = ref();
  function Collect() {
    const client = useWebSocket();
    useEffect(() => {
      if (client !== null) clients.add(client);
    }, [client]);
    return null;
  }
  const before = { ...live };
  const view = await render(
    h(
      StrictMode,
      null,
      h(
        WebSocketProvider,
        options("ann"),
        h(Collect),
        h(Probe, { use: useConnectionStatus, out: status }),
        h(Probe, { use: () => useProjectWebSocket(2), out: ref() }),
        h(TypingIndicator, { projectId: 2 }),
        h(ConnectionStatus, { variant: "compact" }),
      ),
    ),
  );
  until(hub, () => status.current.status === "open");
  advance(hub, 1_000);
  assert.equal(sockets(), 1, "one WebSocket constructed");
  assert.equal(hub.connectionsAccepted, 1, "one connection accepted");
  assert.equal(clients.size, 1, "one client");
  assert.equal(hub.hubSessions, 1);
  await view.unmount();
  assert.deepEqual(live, before);
  const [c] = clients;
  assert.deepEqual(c.resources, { listeners: 0, timers: 0, sockets: 0 });
  assert.throws(() => c.connectionStatus, (e) => e.code === "freed");
  advance(hub, 100);
  assert.equal(hub.connectionsOpen, 0);
});

test("a new token prop reaches the live client without a new connection", async () => {
  const { hub, options, sockets } = virtualHub({ token: "t2" });
  const status = ref();
  let setToken;
  function App() {
    const [token, set] = React.useState("t1");
    setToken = set;
    return h(WebSocketProvider, { ...options("ann"), token }, h(Probe, { use: useConnectionStatus, out: status }));
  }
  const view = await render(h(App));
  until(hub, () => status.current.status === "unauthorized", 1_000);
  assert.equal(view.text(), "");
  await act(async () => setToken("t2"));
  until(hub, () => status.current.status === "open", 1_000);
  assert.equal(sockets(), 2, "the same client reconnected with the new token");
  await view.unmount();
});

test("server-rendered markup hydrates without a mismatch, then connects", async () => {
  const { hub, options } = virtualHub();
  const tree = () =>
    h(
      WebSocketProvider,
      options("ann"),
      h(ConnectionStatus, { variant: "detailed" }),
      h(TypingIndicator, { projectId: 1 }),
      h(StreamingResponse, { streamId: "s" }),
    );
  const html = renderToString(tree());
  assert.match(html, /Not connected/);
  const container = document.createElement("div");
  container.innerHTML = html;
  document.body.appendChild(container);
  const errors = [];
  let root;
  await act(async () => {
    root = hydrateRoot(container, tree(), { onRecoverableError: (e) => errors.push(e) });
  });
  assert.deepEqual(errors, []);
  until(hub, () => container.textContent.includes("Connected"));
  await act(async () => root.unmount());
  container.remove();
});

test("options the core refuses reach onError, or the nearest error boundary", async () => {
  const errors = [];
  const view = await render(h(WebSocketProvider, { url: "http://not-a-ws/", signals: false, storage: null, onError: (e) => errors.push(e) }));
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "invalid_config");
  await view.unmount();

  class Boundary extends React.Component {
    state = { error: null };
    static getDerivedStateFromError(error) {
      return { error };
    }
    render() {
      return this.state.error === null ? this.props.children : h("p", null, `error: ${this.state.error.code}`);
    }
  }
  const logged = console.error;
  console.error = () => {}; // React logs the boundary's catch
  try {
    const caught = await render(h(Boundary, null, h(WebSocketProvider, { url: "http://not-a-ws/", signals: false, storage: null })));
    assert.equal(caught.text(), "error: invalid_config");
    await caught.unmount();
  } finally {
    console.error = logged;
  }
});
