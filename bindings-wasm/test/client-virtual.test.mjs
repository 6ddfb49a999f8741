// SocklineClient, the real browser driver, against the real hub core in virtual time (the test
// kit's VirtualHub as its WebSocket and clock): protocol behaviour through the driver, exact and
// in milliseconds, with no sockets and no real timers.
import { test, before } from "node:test";
import assert from "node:assert/strict";

import { ready, SocklineClient } from "../dist/index.js";
import { ready as kitReady, VirtualHub } from "../dist/testing.js";

before(async () => {
  await ready();
  await kitReady();
});

// A seed per client: message ids come from it, and receivers drop repeated ids.
let seeds = 0;
function client(hub, userId, extra = {}) {
  return new SocklineClient({
    url: "ws://hub.test/ws",
    userId,
    WebSocket: hub.WebSocket,
    clock: hub.clock,
    signals: false,
    storage: null,
    seed: ++seeds,
    ...extra,
  });
}

function pair(hub, project) {
  const ann = client(hub, "ann");
  const bob = client(hub, "bob");
  const got = [];
  bob.subscribe("note", (m) => got.push(m.data), { projectId: project });
  for (const c of [ann, bob]) {
    c.joinProject(project);
    c.connect();
  }
  hub.until(() => ann.presence(project).length === 2 && bob.presence(project).length === 2, 2_000);
  return { ann, bob, got };
}

test("a dropped link: the driver reconnects, the session resumes and what was missed arrives once", () => {
  const hub = new VirtualHub({}, 1);
  const { ann, bob, got } = pair(hub, 1);
  const bobStates = [];
  bob.onStatusChange((s) => bobStates.push(s));
  hub.dropLinks();
  // ann sends while both are away: the hub logs it in bob's session, replayed on resume.
  ann.sendMessage({ type: "note", data: "while away", projectId: 1, delivery: "at_least_once" });
  hub.until(() => got.length === 1, 10_000);
  hub.advance(5_000);
  assert.deepEqual(got, ["while away"]);
  assert.deepEqual(bobStates.slice(0, 3), ["reconnecting", "connecting", "open"]);
  const ready = [];
  bob.onEvent((e) => e.kind === "ready" && ready.push(e.resumed));
  hub.dropLinks();
  hub.until(() => ready.length === 1, 10_000);
  assert.deepEqual(ready, [true], "the hub kept the session: resumed");
  ann.close();
  bob.close();
  hub.until(() => ann.connectionStatus === "closed" && bob.connectionStatus === "closed", 5_000);
  assert.deepEqual(bob.resources, { listeners: 0, timers: 0, sockets: 0 });
  assert.equal(hub.connectionsOpen, 0);
});

test("a restart that keeps the hub's state: a message sent during the outage arrives once", () => {
  const hub = new VirtualHub({}, 2);
  const { ann, got } = pair(hub, 2);
  hub.restart({ keepState: true, downMs: 3_000 });
  hub.advance(100);
  assert.equal(ann.connectionStatus, "reconnecting");
  ann.sendMessage({ type: "note", data: "during the outage", projectId: 2, delivery: "at_least_once" });
  hub.until(() => got.length >= 1, 30_000);
  hub.advance(10_000);
  assert.deepEqual(got, ["during the outage"]);
  assert.equal(ann.stats().queue_depth, 0, "acked, nothing left in the outbox");
});

test("a timer that fires late (a frozen page) is a suspension to probe, not a dead link", () => {
  const hub = new VirtualHub({}, 3);
  // The page's clock: while frozen, its timers that fall due wait, then fire late at once, as
  // in a frozen or intensively throttled tab (the hub keeps running).
  let frozen = false;
  const late = [];
  const clock = {
    now: () => hub.clock.now(),
    wallNow: () => hub.clock.wallNow(),
    setTimeout: (f, ms) => hub.clock.setTimeout(() => (frozen ? late.push(f) : f()), ms),
    clearTimeout: (h) => hub.clock.clearTimeout(h),
  };
  const ann = client(hub, "ann", { clock, heartbeat: { intervalMs: 5_000 } });
  const states = [];
  ann.onStatusChange((s) => states.push(s));
  ann.connect();
  hub.until(() => ann.connectionStatus === "open", 1_000);
  frozen = true;
  hub.advance(20_000);
  assert.equal(late.length, 1, "one timer at a time, and it fell due while frozen");
  frozen = false;
  for (const f of late.splice(0)) f();
  hub.advance(10_000);
  assert.deepEqual(states, ["connecting", "open"], "no reconnect after the freeze");
  assert.equal(ann.connectionStatus, "open");
  assert.ok(ann.stats().frames_in > 2, "the probe's pong came back");
});

test("the outbox survives a reload through storage, restored exactly once", () => {
  const hub = new VirtualHub({}, 4);
  const store = new Map();
  const storage = {
    getItem: (k) => store.get(k) ?? null,
    setItem: (k, v) => store.set(k, v),
    removeItem: (k) => store.delete(k),
  };
  const first = client(hub, "ann", { storage });
  first.sendMessage({ type: "note", data: "queued", delivery: "at_least_once" });
  // What pagehide does, then the page is gone without ever connecting.
  storage.setItem("sockline:outbox:ws://hub.test/ws:ann", JSON.stringify(first.snapshotOutbox()));
  const second = client(hub, "ann", { storage });
  assert.equal(second.stats().queue_depth, 1, "restored on the next load");
  assert.equal(store.size, 0, "and forgotten, so a third load does not restore it again");
  const third = client(hub, "ann", { storage });
  assert.equal(third.stats().queue_depth, 0);
});

test("free() closes with 1000 and releases everything at once; the client refuses further calls", () => {
  const hub = new VirtualHub({}, 5);
  const ann = client(hub, "ann");
  ann.onEvent(() => {});
  ann.connect();
  hub.until(() => ann.connectionStatus === "open", 1_000);
  assert.equal(hub.connectionsOpen, 1);
  ann.free();
  assert.deepEqual(ann.resources, { listeners: 0, timers: 0, sockets: 0 });
  for (const call of [() => ann.connectionStatus, () => ann.sendMessage({ type: "note" }), () => ann.connect()]) {
    assert.throws(call, (e) => e.code === "freed");
  }
  ann.free(); // twice is harmless
  hub.advance(100);
  assert.equal(hub.connectionsOpen, 0, "the hub saw the close");
});

test("reconnect() while reconnecting opens the waiting attempt now", () => {
  const hub = new VirtualHub({}, 6);
  const ann = client(hub, "ann", { reconnect: { initialMs: 10_000, jitter: "none" } });
  ann.connect();
  hub.until(() => ann.connectionStatus === "open", 1_000);
  hub.dropLinks();
  hub.until(() => ann.connectionStatus === "reconnecting", 100);
  const t = hub.now;
  ann.reconnect();
  hub.until(() => ann.connectionStatus === "open", 1_000);
  assert.ok(hub.now - t < 100, `reconnected in ${hub.now - t} ms, not after the 10 s backoff`);
});

test("a handler that frees the client mid-dispatch ends the batch cleanly", () => {
  const hub = new VirtualHub({}, 7);
  const ann = client(hub, "ann");
  let statuses = 0;
  ann.onStatusChange((s) => {
    statuses += 1;
    if (s === "open") ann.free();
  });
  ann.connect();
  hub.until(() => statuses >= 2, 1_000);
  hub.advance(1_000);
  assert.deepEqual(ann.resources, { listeners: 0, timers: 0, sockets: 0 });
  assert.equal(hub.connectionsOpen, 0);
});
