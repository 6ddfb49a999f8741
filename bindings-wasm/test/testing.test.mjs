// sockline/testing under Node: the real hub core and clients in virtual time.
import { test } from "node:test";
import assert from "node:assert/strict";

import { ready, Network, SocklineError } from "../dist/testing.js";
import { errorCode } from "./support.mjs";

function joined(net, users, project) {
  const ids = users.map((u) => net.addClient({ userId: u }));
  for (const c of ids) {
    net.subscribe(c, "*");
    net.joinProject(c, project);
    net.connect(c);
  }
  net.until((n) => ids.every((c) => n.state(c) === "open"), 1_000);
  net.advance(100);
  return ids;
}

const notes = (net, c) => net.messages(c).filter((m) => m.type === "note").map((m) => m.data);

test("a dropped link resumes with what was missed, exactly once", async () => {
  await ready();
  const net = new Network({}, 4);
  const [ann, bob] = joined(net, ["ann", "bob"], 7);
  net.dropLink(bob);
  for (let n = 0; n < 5; n++) {
    net.send(ann, { type: "note", data: n, projectId: 7 });
    net.advance(200);
  }
  net.until((n) => notes(n, bob).length >= 5, 40_000);
  net.advance(1_000);
  assert.deepEqual(notes(net, bob), [0, 1, 2, 3, 4]);
  const readies = net.events(bob).filter((e) => e.kind === "ready").map((e) => e.resumed);
  assert.deepEqual(readies, [false, true]);
  net.free();
});

test("an agent stream finishes across a hub restart that keeps its state", async () => {
  await ready();
  const net = new Network({ agentChunks: 20, agentChunkMs: 20 }, 2);
  const ann = net.addClient({ userId: "ann" });
  net.connect(ann);
  net.until((n) => n.state(ann) === "open", 1_000);
  net.send(ann, { type: "agent_prompt", data: { prompt: "hi", streamId: "r1" } });
  net.until((n) => (n.streamContent(ann, "r1") ?? "").length > 20, 2_000);
  net.restartHub({ keepState: true, downMs: 300 });
  net.until((n) => n.events(ann).some((e) => e.kind === "stream" && e.state === "done"), 30_000);
  const text = net.streamContent(ann, "r1");
  assert.ok(text.startsWith('You asked: "hi".'), text);
  assert.equal(text.split("You asked").length, 2, "the answer once");
});

test("bad arguments and a predicate that never holds are SocklineErrors", async () => {
  await ready();
  const net = new Network({}, 1);
  const code = errorCode;
  assert.equal(code(() => net.connect(3)), "invalid_argument");
  assert.equal(code(() => net.setFaults({ drop: 2 })), "invalid_argument");
  assert.equal(code(() => new Network({ agentChunkMs: -1 })), "invalid_argument");
  assert.equal(code(() => net.addClient({ url: "ftp://x" })), "invalid_config");
  const c = net.addClient({ userId: "ann" });
  assert.equal(code(() => net.until((n) => n.state(c) === "open", 1_000)), "timeout");
});

test("the test kit's refusals are the very SocklineError class the package exports", async () => {
  const index = await import("../dist/index.js");
  assert.equal(SocklineError, index.SocklineError, "one class across the entry points");
  await ready();
  const net = new Network({}, 1);
  assert.throws(() => net.connect(3), index.SocklineError);
});
