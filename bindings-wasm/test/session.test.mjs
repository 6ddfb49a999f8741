// The built package under Node: loading, the session's round trip in canonical JSON, every
// refusal as a SocklineError with the core's code, and the golden traces replayed byte for byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";

import * as sockline from "../dist/index.js";
import * as testing from "../dist/testing.js";
import { errorCode, FedWebSocket } from "./support.mjs";

const { ready, Session, SocklineError, isTerminalState, isFinalStreamState } = sockline;

test("using the session before ready() is a clear error; ready() is idempotent", async () => {
  assert.throws(() => new Session({ url: "ws://127.0.0.1:9/ws" }, 1, 0), (e) => {
    return e instanceof SocklineError && e.code === "not_ready";
  });
  const first = ready();
  assert.equal(ready(), first, "the same promise every time");
  await first;
  await ready();
});

test("a session round trip in canonical JSON", async () => {
  await ready();
  const s = new Session({ url: "ws://127.0.0.1:9/ws", userId: "ann", reconnect: { initialMs: 250 } }, 7, 0);
  s.subscribe(0, "*");
  s.connect(0);
  const opened = s.drain();
  assert.deepEqual(opened[0], { kind: "open_transport", url: "ws://127.0.0.1:9/ws", attempt: 0 });
  assert.equal(opened.at(-1).kind, "timeout");
  s.transportOpened(3.7);
  const [hello] = s.drain();
  assert.equal(hello.kind, "transmit");
  assert.deepEqual(JSON.parse(hello.text), { type: "hello", data: { protocol: 2, userId: "ann" } });
  s.frame(4, JSON.stringify({ type: "welcome", data: { sessionId: "s1" } }));
  const welcomed = s.drain();
  assert.ok(welcomed.some((o) => o.kind === "status" && o.to === "open"));
  assert.equal(s.state, "open");
  const id = s.send(5, { type: "chat", data: { projectId: "mine" }, projectId: 3 });
  const [sent] = s.drain();
  assert.deepEqual(JSON.parse(sent.text), { type: "chat", data: { projectId: "mine" }, id, projectId: 3 });
  s.frame(6, JSON.stringify({ type: "chat", data: 1, projectId: 2, epoch: "e", offset: 1 }));
  const [message] = s.drain();
  assert.equal(message.kind, "message");
  assert.deepEqual(message.message, { type: "chat", data: 1, projectId: 2, epoch: "e", offset: 1 });
  s.transportLost(10);
  const lost = s.drain();
  const status = lost.find((o) => o.kind === "status");
  assert.equal(status.reason, "connection lost (1006)");
  const retry = lost.find((o) => o.kind === "reconnect_scheduled");
  assert.ok(retry.delay_ms <= 250, "reconnect.initialMs reached the core");
  assert.equal(s.stats().messages_delivered, 1);
  s.free();
});

test("refusals are SocklineErrors with the core's codes", async () => {
  await ready();
  const code = errorCode;
  assert.equal(code(() => new Session({ url: "ftp://x" }, 1, 0)), "invalid_config");
  assert.equal(code(() => new Session({ url: "ws://x/ws", bogus: 1 }, 1, 0)), "invalid_config");
  assert.equal(code(() => new Session({ url: "ws://x/ws" }, -1, 0)), "invalid_argument");
  const s = new Session({ url: "ws://x/ws" }, 1, 0);
  assert.equal(code(() => s.send(0, { type: "ping" })), "reserved_type");
  assert.equal(code(() => s.send(0, { type: "bad type" })), "invalid_type");
  assert.equal(code(() => s.joinProject(0, 1.5)), "invalid_argument");
  assert.equal(code(() => s.subscribe(0, "a*b")), "invalid_pattern");
  assert.equal(code(() => s.startTyping(0, 1)), "no_user_id");
  assert.equal(code(() => s.restoreOutbox(0, {})), "invalid_snapshot");
  assert.equal(code(() => isTerminalState("bogus")), "invalid_argument");
  assert.equal(isTerminalState("closed"), true);
  assert.equal(isTerminalState("unauthorized"), false);
  assert.equal(isFinalStreamState("done"), true);
});

test("urls: reconnect attempts rotate through the hubs, and each URL is checked by its key", async () => {
  await ready();
  const s = new Session({ urls: ["ws://a/ws", "ws://b/ws"], reconnect: { jitter: "none", initialMs: 10 } }, 1, 0);
  s.connect(0);
  s.transportLost(1);
  s.handleTimeout(20);
  const opens = s.drain().filter((o) => o.kind === "open_transport").map((o) => o.url);
  assert.deepEqual(opens, ["ws://a/ws", "ws://b/ws"]);
  assert.throws(
    () => new Session({ urls: ["ws://a/ws", "http://b/"] }, 1, 0),
    (e) => e instanceof SocklineError && e.code === "invalid_config" && e.message.includes("urls[1]"),
  );
});

test("golden traces replay through the test kit exactly as the Rust replay prints them", async () => {
  await testing.ready();
  const { replayTrace } = testing;
  // The client's own module has no replay (the test kit's has it, with the hub).
  assert.equal(sockline.replayTrace, undefined);
  assert.equal(new Session({ url: "ws://x/ws" }, 1, 0).handleInput, undefined);
  const dir = new URL("../../core/tests/traces/", import.meta.url);
  const names = (await readdir(dir)).filter((n) => n.endsWith(".json"));
  assert.ok(names.length >= 3);
  for (const name of names) {
    const trace = await readFile(new URL(name, dir), "utf8");
    const want = await readFile(new URL(name.replace(/\.json$/, ".out"), dir), "utf8");
    assert.equal(replayTrace(trace), want, name);
  }
  assert.throws(() => replayTrace("{}"), (e) => e.code === "invalid_trace");
});

test("the .wasm imports nothing from env", async () => {
  const bytes = await readFile(new URL("../dist/sockline_wasm_bg.wasm", import.meta.url));
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(bytes));
  assert.deepEqual(imports.filter((i) => i.module === "env"), []);
  assert.ok(imports.every((i) => i.module === "./sockline_wasm_bg.js"), JSON.stringify(imports));
});

test("receive gives exactly what frame + drain give, key order included, and records the same trace", async () => {
  await ready();
  const open = () => {
    const s = new Session({ url: "ws://127.0.0.1:9/ws", userId: "ann", dedupeWindow: 4 }, 3, 0);
    s.startRecording();
    s.subscribe(0, "*");
    s.subscribe(0, "chat", 7);
    s.subscribe(0, "agent_stream_*");
    s.joinProject(0, 7);
    s.connect(0);
    s.transportOpened(1);
    s.frame(2, JSON.stringify({ type: "welcome", data: { sessionId: "s1" } }));
    s.frame(2, JSON.stringify({ type: "project_joined", projectId: 7, data: { epoch: "e1", offset: 0 } }));
    s.drain();
    return s;
  };
  const big = "y".repeat(70_000); // past the input buffer's keep size, then small again
  const frames = [
    '{"type":"chat","projectId":7,"epoch":"e1","offset":1,"data":{"text":"hi","n":[1,2.50,-0,1e400]},"extra":{"x":1}}',
    '{"type":"chat","projectId":7,"epoch":"e1","offset":1,"data":{"text":"again"}}', // duplicate offset
    '{"offset":2,"type":"chat","timestamp":null,"id":null,"projectId":null,"epoch":null}', // no data, nulls
    '{"type":"chat","projectId":7,"epoch":"e1","offset":2,"data":"next"}',
    '{"type":"chat","projectId":7,"epoch":"e1","offset":5,"data":"gap"}', // a hole: gap and a rejoin, withheld
    '{ "type" : "note" , "id" : "m1", "data" : { "a" : "\\u00e9\\ud83d\\ude00\\n" } , "timestamp":"2026-12-01T00:00:00Z"}',
    '{"type":"note","id":"m1","data":1}', // duplicate id
    '{"type":"note","id":"m2","data":{"__proto__":{"polluted":true},"k":"é😀"}}',
    '{"type":"chat","projectId":9,"epoch":"e","offset":18446744073709551615,"data":0}',
    '{"type":"chat","offset":6,"offset":7,"data":0}', // duplicate key: a protocol error
    "not json",
    '{"type":"bad type","data":1}',
    '{"type":"ping","data":{"nonce":5}}', // answered with a transmit
    `{"type":"big","data":"${big}"}`,
    '{"type":"agent_stream_start","data":{"streamId":"a1"}}',
    '{"type":"agent_stream_chunk","data":{"streamId":"a1","seq":0,"delta":"x"}}',
    '{"type":"small","data":[]}',
    '{"type":"lone","data":"\ud800"}', // a lone surrogate in the JS string itself
    '{"type":"chat","projectId":8,"data":{}}', // another project
  ];
  const a = open();
  const b = open();
  let t = 10;
  for (const text of frames) {
    t += 7;
    a.frame(t, text);
    const want = a.drain();
    const got = b.receive(t, text);
    assert.equal(JSON.stringify(got), JSON.stringify(want), text.slice(0, 80));
  }
  // Outputs still queued from an earlier input come first and keep their envelopes.
  a.send(t, { type: "chat", data: 1 });
  b.send(t, { type: "chat", data: 1 });
  a.frame(t, '{"type":"chat","data":"after"}');
  a.frame(t, '{"type":"chat","data":"last"}');
  const want = a.drain();
  b.frame(t, '{"type":"chat","data":"after"}');
  assert.equal(JSON.stringify(b.receive(t, '{"type":"chat","data":"last"}')), JSON.stringify(want));
  assert.equal(b.trace(), a.trace());
  a.free();
  b.free();
});

test("the client's receive path reports a blocked socket as the drain-then-ask path did", async () => {
  await ready();
  const Fed = FedWebSocket;
  const { SocklineClient } = sockline;
  const client = new SocklineClient({ url: "ws://x/ws", userId: "ann", maxBufferedBytes: 1000, WebSocket: Fed, signals: false, storage: null, seed: 1 });
  const events = [];
  const got = [];
  client.onEvent((e) => events.push(e.kind === "backpressure" ? `backpressure:${e.blocked}` : e.kind));
  client.subscribe("chat", (m) => got.push(m.data));
  client.connect();
  const ws = Fed.last;
  ws.readyState = 1;
  ws.onopen({});
  ws.onmessage({ data: '{"type":"welcome","data":{"sessionId":"s1"}}' });
  ws.onmessage({ data: '{"type":"chat","data":1}' });
  ws.bufferedAmount = 5000;
  ws.onmessage({ data: '{"type":"chat","data":2}' });
  ws.onmessage({ data: '{"type":"chat","data":3}' });
  ws.bufferedAmount = 0;
  ws.onmessage({ data: '{"type":"chat","data":4}' });
  assert.deepEqual(got, [1, 2, 3, 4]);
  assert.deepEqual(
    events.filter((k) => k.startsWith("backpressure")),
    ["backpressure:true", "backpressure:false"],
  );
  client.close();
});
