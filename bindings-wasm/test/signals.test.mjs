// The browser driver's page signals under happy-dom (a DOM in Node), against the test kit's hub in
// virtual time: each signal becomes the core's input, and close() releases every listener.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Window } from "happy-dom";

import { ready, SocklineClient } from "../dist/index.js";
import { ready as kitReady, VirtualHub } from "../dist/testing.js";

const window = new Window({ url: "http://localhost/" });
before(async () => {
  Object.defineProperty(globalThis, "window", { value: window, configurable: true });
  Object.defineProperty(globalThis, "document", { value: window.document, configurable: true });
  await ready();
  await kitReady();
});
after(async () => {
  delete globalThis.window;
  delete globalThis.document;
  await window.happyDOM.close();
});

function client(hub, extra = {}) {
  return new SocklineClient({
    url: "ws://hub.test/ws",
    userId: "ann",
    WebSocket: hub.WebSocket,
    clock: hub.clock,
    seed: 9,
    signals: true,
    storage: window.localStorage,
    reconnect: { initialMs: 20_000, jitter: "none" },
    ...extra,
  });
}

test("page signals are the core's inputs, and close() releases every listener", () => {
  const hub = new VirtualHub({}, 1);
  const ann = client(hub);
  const reasons = [];
  ann.onStatusChange((_, e) => reasons.push(e.reason));
  assert.equal(ann.resources.listeners, 0, "nothing attached before connect");
  ann.connect();
  assert.equal(ann.resources.listeners, 7, "online, offline, visibilitychange, freeze, resume, pagehide, pageshow");
  hub.until(() => ann.connectionStatus === "open", 1_000);

  // offline: the core waits for the network instead of spending attempts; online: at once.
  window.dispatchEvent(new window.Event("offline"));
  hub.dropLinks();
  hub.until(() => ann.connectionStatus === "reconnecting", 100);
  assert.match(reasons.at(-1), /waiting for the network/);
  hub.advance(60_000);
  assert.equal(ann.connectionStatus, "reconnecting", "no attempt while offline");
  window.dispatchEvent(new window.Event("online"));
  hub.until(() => ann.connectionStatus === "open", 100);

  // pagehide keeps the outbox for the next load; pageshow (back from the bfcache) forgets it.
  hub.dropLinks();
  hub.until(() => ann.connectionStatus === "reconnecting", 100);
  ann.sendMessage({ type: "note", data: 1, delivery: "at_least_once" });
  window.dispatchEvent(new window.Event("pagehide"));
  const key = "sockline:outbox:ws://hub.test/ws:ann";
  assert.ok(window.localStorage.getItem(key).includes('"note"'), "the queued note is saved");
  // A page shown again (pageshow) while reconnecting with a 20 s backoff reconnects now.
  const t = hub.now;
  window.dispatchEvent(new window.Event("pageshow"));
  assert.equal(window.localStorage.getItem(key), null, "the live session carries on: nothing to restore later");
  hub.until(() => ann.connectionStatus === "open", 100);
  assert.ok(hub.now - t < 100);

  ann.close();
  assert.equal(ann.resources.listeners, 0, "close() detached them all");
  window.dispatchEvent(new window.Event("offline"));
  window.dispatchEvent(new window.Event("online"));
  hub.until(() => ann.connectionStatus === "closed", 1_000);
  assert.deepEqual(ann.resources, { listeners: 0, timers: 0, sockets: 0 });
});
