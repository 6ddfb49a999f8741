// sockline/testing's in-process hub: raw WebSockets of the kit, driven by hand with the
// protocol's frames (docs/protocol.md), against the real hub core in virtual time.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  ready,
  HubCore,
  Network,
  SocklineError,
  VirtualHub,
  VirtualWebSocket,
  virtualClock,
} from "../dist/testing.js";
import * as sockline from "../dist/index.js";
import { errorCode } from "./support.mjs";

/** A socket of `hub` that records what it sees, with the virtual time of each event. */
function socket(hub, url = "ws://hub.test/ws") {
  const ws = new hub.WebSocket(url);
  const log = [];
  const frames = [];
  ws.onopen = () => log.push([hub.now, "open"]);
  ws.onmessage = (e) => {
    log.push([hub.now, e.data]);
    try {
      frames.push(JSON.parse(e.data));
    } catch {
      // A frame the corrupt fault broke: logged, not parsed.
    }
  };
  ws.onerror = () => log.push([hub.now, "error"]);
  ws.onclose = (e) => log.push([hub.now, `close ${e.code} ${e.reason} ${e.wasClean}`]);
  return { ws, log, frames, of: (type) => frames.filter((f) => f.type === type) };
}

const hello = (userId, more = {}) => JSON.stringify({ type: "hello", data: { protocol: 2, userId, ...more } });
const join = (projectId, since = {}) => JSON.stringify({ type: "project_subscribe", data: since, projectId });

/** A welcomed socket (and its session id) that joined `project`. */
function member(hub, userId, project) {
  const s = socket(hub);
  hub.until(() => s.ws.readyState === s.ws.OPEN, 100);
  s.ws.send(hello(userId));
  hub.until(() => s.of("welcome").length === 1, 100);
  if (project !== undefined) {
    s.ws.send(join(project));
    hub.until(() => s.of("presence_state").length === 1, 100);
  }
  return { ...s, sessionId: s.of("welcome")[0].data.sessionId };
}

const closes = (s) => s.log.filter(([, e]) => e.startsWith("close") || e === "error").map(([, e]) => e);

test("a socket opens after the latency and its hello gets a welcome", async () => {
  await ready();
  const hub = new VirtualHub({}, 1);
  const s = socket(hub);
  assert.equal(s.ws.readyState, VirtualWebSocket.CONNECTING);
  assert.equal(s.ws.url, "ws://hub.test/ws");
  hub.advance(4);
  assert.equal(s.ws.readyState, 0, "not before the latency");
  hub.advance(1);
  assert.equal(s.ws.readyState, s.ws.OPEN);
  assert.deepEqual(s.log, [[5, "open"]]);
  assert.equal(hub.connectionsOpen, 1);
  s.ws.send(hello("ann"));
  hub.advance(100);
  // Open at 5, hello at the hub at 10, welcome back at 15.
  assert.equal(s.log[1][0], 15);
  const [welcome] = s.frames;
  assert.equal(welcome.type, "welcome");
  assert.equal(welcome.data.resumed, false);
  assert.equal("lastSeq" in welcome.data, false, "protocol 2 has no session sequence");
  assert.match(welcome.data.sessionId, /^s[0-9a-f]{32}$/);
  assert.equal(s.ws.bufferedAmount, 0);
  assert.equal(hub.connectionsAccepted, 1);
  hub.free();
});

test("the hub's limits are the core's: a second project over the limit is refused by id", async () => {
  await ready();
  assert.throws(() => new VirtualHub({ limits: { maxProjects: 1 } }, 1), /limits: unknown field `maxProjects`/);
  const hub = new VirtualHub({ limits: { maxProjectsPerConnection: 1 } }, 3);
  const ann = member(hub, "ann", 7);
  ann.ws.send(JSON.stringify({ type: "project_subscribe", data: {}, projectId: 8, id: "j8" }));
  hub.advance(100);
  const [refused] = ann.of("error");
  assert.equal(refused.data.code, "too_many_projects");
  assert.equal(refused.data.id, "j8");
  ann.ws.send(JSON.stringify({ type: "note", data: 1, projectId: 8, id: "n1" }));
  hub.advance(100);
  assert.equal(ann.of("error")[1].data.code, "not_member");
  hub.free();
});

test("two sockets in one project relay, acked once, with the log position", async () => {
  await ready();
  const hub = new VirtualHub({ latencyMs: 2 }, 2);
  const ann = member(hub, "ann", 7);
  const bob = member(hub, "bob", 7);
  assert.deepEqual(bob.of("presence_state")[0].data.members, ["ann", "bob"]);
  const relayedBefore = hub.hubRelayed;
  ann.ws.send(JSON.stringify({ type: "note", data: { n: 1 }, id: "m1", projectId: 7 }));
  hub.until(() => bob.of("note").length === 1, 100);
  const [note] = bob.of("note");
  assert.deepEqual(note.data, { n: 1 });
  assert.equal(note.id, "m1");
  assert.equal(note.offset, 1);
  assert.match(note.epoch, /^[0-9a-f]{16}$/);
  hub.advance(100);
  assert.deepEqual(ann.of("ack"), [
    { type: "ack", data: { id: "m1", projectId: 7, epoch: note.epoch, offset: 1 } },
  ]);
  assert.equal(ann.of("note").length, 0, "not back to the sender");
  assert.equal(hub.hubRelayed, relayedBefore + 1);
  hub.free();
});

test("a dropped link is 1006 on the socket, closed at the hub, and the session resumes", async () => {
  await ready();
  const hub = new VirtualHub({}, 3);
  const ann = member(hub, "ann", 7);
  const bob = member(hub, "bob", 7);
  const { epoch, offset } = bob.of("project_joined")[0].data;
  hub.dropLinks();
  hub.advance(50);
  assert.deepEqual(closes(ann), ["close 1006  false"]);
  assert.deepEqual(closes(bob), ["close 1006  false"]);
  assert.equal(bob.ws.readyState, VirtualWebSocket.CLOSED);
  assert.equal(hub.connectionsOpen, 0, "the hub saw both closed");
  // ann comes back first and writes while bob is away.
  const ann2 = socket(hub);
  hub.advance(5);
  ann2.ws.send(hello("ann", { sessionId: ann.sessionId }));
  // Membership is per connection: only a member speaks in a project.
  ann2.ws.send(join(7));
  ann2.ws.send(JSON.stringify({ type: "note", data: "while you were away", projectId: 7 }));
  hub.advance(50);
  const bob2 = socket(hub);
  hub.advance(5);
  bob2.ws.send(hello("bob", { sessionId: bob.sessionId }));
  bob2.ws.send(join(7, { epoch, offset }));
  hub.advance(50);
  assert.deepEqual(bob2.frames[0].data, { sessionId: bob.sessionId, resumed: true });
  assert.deepEqual(bob2.of("project_joined")[0].data, { epoch, offset, recovered: true, replayed: 1 });
  assert.deepEqual(
    bob2.of("note").map((n) => n.data),
    ["while you were away"],
    "the missed message is replayed once",
  );
  assert.equal(hub.connectionsOpen, 2);
  assert.equal(hub.connectionsAccepted, 4);
  hub.free();
});

test("a restart closes with 1012 and its window, refuses while down, then keeps its sessions or not", async () => {
  await ready();
  const hub = new VirtualHub({ restartRetryAfterMs: 50, restartSpreadMs: 1_000 }, 4);
  const ann = member(hub, "ann");
  hub.restart({ keepState: true, downMs: 100 });
  hub.advance(10);
  assert.deepEqual(closes(ann), ['close 1012 {"retryAfterMs":50,"spreadMs":1000} true']);
  const refused = socket(hub);
  hub.advance(50);
  assert.deepEqual(closes(refused), ["error", "close 1006  false"], "refused: error, then close");
  assert.equal(refused.log.some(([, e]) => e === "open"), false);
  hub.advance(50);
  const back = socket(hub);
  hub.advance(5);
  back.ws.send(hello("ann", { sessionId: ann.sessionId }));
  hub.advance(20);
  assert.equal(back.frames[0].data.resumed, true, "state kept");
  assert.equal(back.frames[0].data.sessionId, ann.sessionId);

  hub.restart({ keepState: false });
  hub.advance(10);
  assert.deepEqual(closes(back), ['close 1012 {"retryAfterMs":50,"spreadMs":1000} true']);
  const fresh = socket(hub);
  hub.advance(5);
  assert.equal(fresh.ws.readyState, 1, "downMs 0: accepted at once");
  fresh.ws.send(hello("ann", { sessionId: ann.sessionId }));
  hub.advance(20);
  assert.equal(fresh.frames[0].data.resumed, false, "a fresh hub knows no session");
  assert.notEqual(fresh.frames[0].data.sessionId, ann.sessionId);
  assert.equal(hub.hubSessions, 1);
  hub.free();
});

test("a stalled link swallows frames both ways until it is dropped", async () => {
  await ready();
  const hub = new VirtualHub({}, 5);
  const ann = member(hub, "ann", 1);
  const bob = member(hub, "bob", 1);
  hub.stallLinks();
  const note = JSON.stringify({ type: "note", data: 1, projectId: 1 });
  ann.ws.send(note);
  hub.advance(100);
  assert.equal(bob.of("note").length, 0);
  assert.equal(ann.ws.bufferedAmount, new TextEncoder().encode(note).length);
  assert.equal(ann.ws.readyState, 1, "half-open: still open");
  assert.equal(hub.connectionsOpen, 2, "the hub does not know either");
  hub.dropLinks();
  hub.advance(10);
  assert.deepEqual(closes(ann), ["close 1006  false"]);
  assert.equal(hub.connectionsOpen, 0);
  hub.free();
});

test("delays keep each link's order, a drop fault cuts the link", async () => {
  await ready();
  const hub = new VirtualHub({}, 12);
  const ann = member(hub, "ann", 2);
  const bob = member(hub, "bob", 2);
  hub.setFaults({ delayMs: 40 });
  const sentAt = [];
  for (let i = 0; i < 30; i++) {
    sentAt.push(hub.now);
    ann.ws.send(JSON.stringify({ type: "note", data: i, projectId: 2 }));
    hub.advance(1);
  }
  hub.advance(200);
  assert.deepEqual(
    bob.of("note").map((n) => n.data),
    [...Array(30).keys()],
    "in order, as on TCP",
  );
  const arrivals = bob.log.filter(([, e]) => e.includes('"note"')).map(([t]) => t);
  const lags = new Set(arrivals.map((t, i) => t - sentAt[i]));
  assert.ok(lags.size > 3, `the delay varies: ${[...lags]}`);
  hub.setFaults({ drop: 1 });
  ann.ws.send(JSON.stringify({ type: "note", data: "lost", projectId: 2 }));
  hub.advance(20);
  assert.deepEqual(closes(ann), ["close 1006  false"]);
  assert.equal(bob.of("note").length, 30);
  hub.free();
});

test("the hub's own chaos reaches the sockets: an abrupt drop, a close code, a stall", async () => {
  await ready();
  const abrupt = new VirtualHub({ chaos: { dropMs: [40, 40] } }, 13);
  const a = member(abrupt, "ann");
  abrupt.advance(100);
  // Accepted at 5, dropped by the hub at 45, heard by the socket at 50.
  assert.deepEqual(a.log.at(-1), [50, "close 1006  false"]);
  assert.equal(abrupt.connectionsOpen, 0);
  abrupt.free();
  const coded = new VirtualHub({ chaos: { dropMs: [40, 40], closeCode: 1012 } }, 13);
  const c = member(coded, "cat");
  coded.advance(100);
  assert.deepEqual(closes(c), ["close 1012 chaos: dropped true"]);
  coded.free();
  const stalled = new VirtualHub({ chaos: { stallMs: [40, 40] } }, 13);
  const s = member(stalled, "sam");
  stalled.advance(100);
  s.ws.send(JSON.stringify({ type: "ping", data: { nonce: 1 } }));
  stalled.advance(100);
  assert.equal(s.of("pong").length, 0, "half-open: no answer");
  assert.equal(s.ws.readyState, 1);
  stalled.free();
});

test("a close handshake, offline, and what the hub refuses", async () => {
  await ready();
  const hub = new VirtualHub({ maxFrameBytes: 300 }, 6);
  const ann = member(hub, "ann");
  const at = hub.now;
  ann.ws.close(1000, "bye");
  assert.equal(ann.ws.readyState, VirtualWebSocket.CLOSING);
  hub.advance(20);
  assert.deepEqual(ann.log.at(-1), [at + 10, "close 1000 bye true"]);
  assert.equal(hub.connectionsOpen, 0);

  hub.setOffline(true);
  const offline = socket(hub);
  hub.advance(10);
  assert.deepEqual(closes(offline), ["error", "close 1006  false"]);
  hub.setOffline(false);

  // Binary frames close with 1003; frames over twice the limit with 1009.
  const bin = member(hub, "bin");
  bin.ws.send(new Uint8Array(4));
  const big = member(hub, "big");
  big.ws.send(JSON.stringify({ type: "note", data: "x".repeat(700) }));
  hub.advance(20);
  assert.match(closes(bin)[0], /^close 1003 /);
  assert.match(closes(big)[0], /^close 1009 /);
  hub.free();
});

test("the clock fires timers in time order, same-time ones in scheduling order", async () => {
  await ready();
  const clock = virtualClock({ wallStartMs: 1_000_000 });
  const fired = [];
  clock.setTimeout(() => fired.push("c@10"), 10);
  clock.setTimeout(() => fired.push("a@5"), 5);
  clock.setTimeout(() => {
    fired.push("b@5");
    // Scheduled while running: due now, after what was already due now.
    clock.setTimeout(() => fired.push("d@5"), 0);
  }, 5);
  const cancelled = clock.setTimeout(() => fired.push("never"), 7);
  clock.setTimeout(() => fired.push("e@0"), -3);
  clock.clearTimeout(cancelled);
  assert.equal(clock.pending, 4);
  clock.advance(5);
  assert.deepEqual(fired, ["e@0", "a@5", "b@5", "d@5"]);
  assert.equal(clock.now(), 5);
  assert.equal(clock.wallNow(), 1_000_005);
  assert.equal(clock.nextAt(), 10);
  clock.advance(100);
  assert.deepEqual(fired.at(-1), "c@10");
  assert.equal(clock.now(), 105);
  assert.throws(() => clock.until(() => false, 50), (e) => e instanceof SocklineError && e.code === "timeout");
  assert.equal(clock.now(), 155);
  const spin = () => clock.setTimeout(spin, 0);
  spin();
  assert.throws(() => clock.advance(1), (e) => e instanceof SocklineError && e.code === "livelock");
});

/** One scripted run: three members, link faults, a drop and a restart; every frame each socket saw. */
function scripted(seed) {
  const hub = new VirtualHub({ agentChunks: 5, agentChunkMs: 10 }, seed);
  const members = ["ann", "bob", "cat"].map((u) => member(hub, u, 3));
  hub.setFaults({ delayMs: 7, corrupt: 0.05 });
  for (let i = 0; i < 20; i++) {
    const m = members[i % 3];
    if (m.ws.readyState === 1) m.ws.send(JSON.stringify({ type: "note", data: i, id: `n${i}`, projectId: 3 }));
    if (i === 5) members[0].ws.send(JSON.stringify({ type: "agent_prompt", data: { prompt: "hi", streamId: "r" } }));
    if (i === 10) hub.dropLinks();
    hub.advance(13);
  }
  hub.restart({ keepState: false, downMs: 30 });
  hub.advance(100);
  const seen = members.map((m) => m.log);
  hub.free();
  return seen;
}

test("the same seed and script give the same frames at the same times", async () => {
  await ready();
  const a = scripted(9);
  const b = scripted(9);
  assert.deepEqual(a, b);
  assert.ok(a.flat().length > 30, `a real run: ${a.flat().length} events`);
  assert.ok(
    a.flat().some(([, e]) => e.startsWith("#")),
    "the corrupt fault was exercised",
  );
  assert.notDeepEqual(scripted(10), a, "another seed, other session ids and faults");
});

test("the real client session, driven through the kit's host, resumes after a drop", async () => {
  await Promise.all([ready(), sockline.ready()]);
  const hub = new VirtualHub({}, 11);
  const { clock } = hub;
  // The smallest driver: what the browser driver does with its host's WebSocket and clock.
  function driver(userId, seed) {
    const session = new sockline.Session({ url: "ws://hub.test/ws", userId }, seed, clock.now());
    const received = [];
    let ws;
    let timer;
    const pump = () => {
      for (const o of session.drain()) {
        if (o.kind === "open_transport") {
          const s = new hub.WebSocket(o.url);
          ws = s;
          s.onopen = () => (ws === s ? (session.transportOpened(clock.now()), pump()) : undefined);
          s.onmessage = (e) => (ws === s ? (session.frame(clock.now(), e.data), pump()) : undefined);
          s.onclose = (e) => {
            if (ws !== s) return;
            ws = undefined;
            if (e.wasClean) session.transportClosed(clock.now(), e.code, e.reason);
            else session.transportLost(clock.now());
            pump();
          };
        } else if (o.kind === "transmit") {
          ws.send(o.text);
        } else if (o.kind === "close_transport") {
          const s = ws;
          ws = undefined;
          s?.close(o.code, o.reason);
        } else if (o.kind === "message") {
          received.push(o.message.data);
        } else if (o.kind === "timeout") {
          clock.clearTimeout(timer);
          if (o.deadline !== null && o.deadline !== undefined) {
            timer = clock.setTimeout(() => {
              session.handleTimeout(clock.now());
              pump();
            }, o.deadline - clock.now());
          }
        }
      }
    };
    return { session, received, pump };
  }
  const ann = driver("ann", 1);
  const bob = driver("bob", 2);
  for (const c of [ann, bob]) {
    c.session.subscribe(clock.now(), "note");
    c.session.joinProject(clock.now(), 5);
    c.session.connect(clock.now());
    c.pump();
  }
  hub.until(() => ann.session.state === "open" && bob.session.state === "open", 1_000);
  hub.advance(100);
  hub.dropLinks();
  ann.session.send(clock.now(), { type: "note", data: "sent while the link was down", projectId: 5, delivery: "at_least_once" });
  ann.pump();
  hub.until(() => bob.received.length === 1, 60_000);
  hub.advance(5_000);
  assert.deepEqual(bob.received, ["sent while the link was down"]);
  assert.ok(hub.connectionsAccepted >= 4, `${hub.connectionsAccepted}`);
  hub.free();
});

test("the hub core alone, and refusals as SocklineErrors", async () => {
  await ready();
  const core = new HubCore({ idleTimeoutMs: 0 }, 1);
  const c = core.accept(0);
  core.frame(0, c, hello("ann"));
  const outs = core.drain();
  assert.equal(outs[0].kind, "send");
  assert.equal(JSON.parse(outs[0].text).type, "welcome");
  // The hub's deadline may come early, never late: the hello deadline it knew at the accept.
  const { kind, deadline } = outs.at(-1);
  assert.equal(kind, "timeout");
  assert.ok(deadline === null || deadline <= 10_000, String(deadline));
  if (deadline !== null) core.timeout(deadline);
  // Welcomed, with no idle timeout: nothing is due any more.
  assert.deepEqual(core.drain().at(-1), { kind: "timeout", deadline: null });
  core.free();

  const code = errorCode;
  assert.equal(code(() => new VirtualWebSocket("ws://x")), "invalid_argument");
  assert.equal(code(() => new VirtualHub({ sessionTtl: 5 })), "invalid_argument");
  assert.equal(code(() => new VirtualHub({ latencyMs: -1 })), "invalid_argument");
  assert.equal(code(() => new Network({ bogus: 1 })), "invalid_argument");
  const hub = new VirtualHub({}, 1);
  const s = socket(hub);
  assert.equal(code(() => s.ws.send("x")), "invalid_state");
  hub.advance(5);
  assert.equal(code(() => s.ws.close(1001)), "invalid_argument");
  assert.equal(code(() => s.ws.close(1000, "é".repeat(62))), "invalid_argument");
  assert.equal(code(() => hub.setFaults({ drop: 2 })), "invalid_argument");
  assert.equal(code(() => hub.restart({ downMs: -5 })), "invalid_argument");
  assert.equal(code(() => hub.until(() => false, 1_000)), "timeout");
  // A subclass of the bound class still reaches the hub.
  class Mine extends hub.WebSocket {}
  const mine = new Mine("ws://x");
  hub.advance(5);
  assert.equal(mine.readyState, 1);
  hub.free();
});
