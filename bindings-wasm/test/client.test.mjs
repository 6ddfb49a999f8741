// SocklineClient, the thin driver, against the real hub (the Rust binary) over real loopback
// WebSockets: Node's own WebSocket (node --experimental-websocket on Node 20) stands where the
// browser's does. Protocol behaviour is tested in virtual time elsewhere; these show what only a
// real socket and a real hub process can.
import { test, before } from "node:test";
import assert from "node:assert/strict";

import { ready, SocklineClient, SocklineError, getWebSocketService } from "../dist/index.js";
import { startHub, until } from "./hub.mjs";

before(async () => {
  assert.equal(typeof globalThis.WebSocket, "function", "run node with --experimental-websocket");
  await ready();
});

const fast = { reconnect: { initialMs: 50, maxMs: 200, jitter: "none", maxAttempts: null } };

// A seed per client: message ids come from it, and receivers drop repeated ids.
let seeds = 0;
function client(url, userId, extra = {}) {
  return new SocklineClient({ url, userId, signals: false, storage: null, seed: ++seeds, ...fast, ...extra });
}

test("two clients: status, project messages, presence, typing and events in canonical form", async () => {
  const hub = await startHub();
  const ann = client(hub.url, "ann");
  const bob = client(hub.url, "bob");
  const statuses = [];
  ann.onStatusChange((state, event) => statuses.push([state, event.kind]));
  const annEvents = [];
  ann.onEvent((e) => annEvents.push(e));
  const got = [];
  ann.subscribe("chat", (m) => got.push(m), { projectId: 1 });
  for (const c of [ann, bob]) {
    c.joinProject(1);
    c.connect();
  }
  await until(() => ann.connectionStatus === "open" && bob.connectionStatus === "open", "both open");
  assert.deepEqual(statuses.slice(0, 2), [["connecting", "status"], ["open", "status"]]);
  await until(() => ann.presence(1).length === 2, "presence of both");
  assert.deepEqual(ann.presence(1), ["ann", "bob"]);
  const id = bob.sendMessage({ type: "chat", data: { text: "hi" }, projectId: 1, delivery: "at_least_once" });
  assert.equal(typeof id, "string");
  await until(() => got.length === 1, "the chat message");
  assert.equal(got[0].type, "chat");
  assert.deepEqual(got[0].data, { text: "hi" });
  assert.equal(got[0].projectId, 1, "wire messages are camelCase");
  bob.startTyping(1);
  await until(() => ann.typingUsers(1).includes("bob"), "bob typing");
  const typing = annEvents.find((e) => e.kind === "typing");
  assert.deepEqual(typing, { kind: "typing", project_id: 1, users: ["bob"] }, "events are the core's canonical JSON (snake_case)");
  bob.stopTyping(1);
  await until(() => ann.typingUsers(1).length === 0, "bob stopped");
  for (const c of [ann, bob]) c.close();
  await until(() => ann.connectionStatus === "closed" && bob.connectionStatus === "closed", "both closed");
  assert.deepEqual(ann.resources, { listeners: 0, timers: 0, sockets: 0 }, "nothing held once closed");
  await hub.kill();
});

test("an agent answer streams in; interrupt stops another", async () => {
  const hub = await startHub(["--agent-chunk-ms", "5", "--agent-chunks", "8"]);
  const ann = client(hub.url, "ann");
  const streams = [];
  ann.onEvent((e) => e.kind === "stream" && streams.push(e));
  ann.connect();
  ann.sendMessage({ type: "agent_prompt", data: { prompt: "hello", streamId: "s1" } });
  await until(() => ann.streamState("s1") === "done", "s1 done");
  assert.ok(ann.streamContent("s1").length > 0);
  const deltas = streams.filter((e) => e.stream_id === "s1" && e.state === "delta");
  assert.equal(deltas.map((e) => e.delta).join(""), ann.streamContent("s1"), "the deltas make the content");
  ann.sendMessage({ type: "agent_prompt", data: { prompt: "again", streamId: "s2" } });
  await until(() => ann.streamState("s2") === "delta", "s2 streaming");
  ann.interruptStream("s2");
  assert.equal(ann.streamState("s2"), "interrupted");
  const len = ann.streamContent("s2").length;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(ann.streamContent("s2").length, len, "nothing more after the interrupt");
  ann.close();
  await hub.kill();
});

test("a handler that throws is reported as handler_error and breaks nothing", async () => {
  const hub = await startHub();
  const ann = client(hub.url, "ann");
  const bob = client(hub.url, "bob");
  const errors = [];
  ann.onEvent((e) => e.kind === "handler_error" && errors.push(e));
  ann.onEvent(() => {
    throw new Error("listener bug");
  });
  let calls = 0;
  ann.subscribe("chat", () => {
    calls += 1;
    throw new Error("handler bug");
  });
  const after = [];
  ann.subscribe("chat", (m) => after.push(m.data));
  for (const c of [ann, bob]) {
    c.joinProject(2);
    c.connect();
  }
  await until(() => ann.presence(2).length === 2, "both present");
  bob.sendMessage({ type: "chat", data: 1, projectId: 2 });
  bob.sendMessage({ type: "chat", data: 2, projectId: 2 });
  await until(() => after.length === 2, "both messages");
  assert.deepEqual(after, [1, 2], "the second handler still ran, in order");
  assert.equal(calls, 2);
  assert.ok(errors.some((e) => e.handler === "subscribe" && e.message === "handler bug"));
  assert.ok(errors.some((e) => e.handler === "on_event" && e.message === "listener bug"));
  assert.equal(ann.connectionStatus, "open");
  for (const c of [ann, bob]) c.close();
  await hub.kill();
});

test("bad input throws a SocklineError with the core's code", async () => {
  const refused = (f, code) =>
    assert.throws(f, (e) => e instanceof SocklineError && e instanceof Error && e.code === code && e.message.length > 0);
  refused(() => new SocklineClient({ url: "http://example.com/", signals: false, storage: null }), "invalid_config");
  refused(() => new SocklineClient({ url: "ws://h/ws", reconnect: { factr: 2 }, signals: false, storage: null }), "invalid_config");
  const c = client("ws://127.0.0.1:9/ws", "ann");
  refused(() => c.sendMessage({ type: "ping", data: {} }), "reserved_type");
  refused(() => c.subscribe("a*b", () => {}), "invalid_pattern");
});

test("the hub killed and restarted: reconnecting, then open, and a message sent meanwhile arrives once", async () => {
  let hub = await startHub();
  // ann retries slowly, bob quickly: bob is back in the project before ann's queued note goes
  // out (a restarted hub without persistence has no log to replay it from).
  const ann = client(hub.url, "ann", { reconnect: { initialMs: 1_000, maxMs: 1_000, jitter: "none", maxAttempts: null } });
  const bob = client(hub.url, "bob", { reconnect: { initialMs: 20, maxMs: 50, jitter: "none", maxAttempts: null } });
  const states = [];
  ann.onStatusChange((s) => states.push(s));
  const got = [];
  bob.subscribe("note", (m) => got.push(m.data));
  for (const c of [ann, bob]) {
    c.joinProject(3);
    c.connect();
  }
  await until(() => ann.presence(3).length === 2, "both present");
  const addr = hub.addr;
  await hub.kill();
  await until(() => ann.connectionStatus === "reconnecting" && bob.connectionStatus === "reconnecting", "both reconnecting");
  ann.sendMessage({ type: "note", data: "during the outage", projectId: 3, delivery: "at_least_once" });
  hub = await startHub([], addr);
  await until(() => got.length >= 1, "the queued note", 15_000);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(got, ["during the outage"], "exactly once");
  assert.ok(states.includes("reconnecting") && states.at(-1) === "open", states.join(" "));
  for (const c of [ann, bob]) c.close();
  await hub.kill();
});

test("getWebSocketService: the seed's options mapped onto the core's, one client per page", async () => {
  const hub = await startHub();
  const port = Number(hub.addr.split(":")[1]);
  await hub.kill(); // nobody listens there now: every attempt fails
  const svc = getWebSocketService({
    url: `ws://127.0.0.1:${port}/ws`,
    maxReconnectAttempts: 2,
    reconnectInterval: 20,
    signals: false,
    storage: null,
  });
  assert.equal(getWebSocketService({ url: "ws://elsewhere/ws" }), svc, "the same client");
  const scheduled = [];
  svc.onEvent((e) => e.kind === "reconnect_scheduled" && scheduled.push(e));
  await until(() => svc.connectionStatus === "failed", "failed after 2 attempts");
  assert.equal(scheduled.length, 2);
  assert.ok(scheduled[0].delay_ms <= 20, `first delay from reconnectInterval: ${scheduled[0].delay_ms}`);
  assert.deepEqual(svc.resources.timers, 0, "a failed client holds no timer");
});
