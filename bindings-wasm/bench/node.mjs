// The receive path under Node (same V8 as Chromium), split into its parts:
//   node bench/node.mjs [frames]   (after ./build.sh)
// Prints ns per 200-byte frame for plain JSON.parse + Map dispatch, the whole SocklineClient
// receive path (a hand-fed socket), and the raw Session's frame() and drain() apart.
const { ready, Session, SocklineClient } = await import(process.env.SOCKLINE_DIST ?? "../dist/index.js");

const N = Number(process.argv[2] ?? 50_000);
await ready();

function frame(seq) {
  const head = `{"type":"chat","projectId":1,"epoch":"e1","offset":${seq},"data":{"text":"`;
  const tail = `"}}`;
  return head + "x".repeat(200 - head.length - tail.length) + tail;
}
const WELCOME = '{"type":"welcome","data":{"sessionId":"b1","resumed":false}}';
const frames = Array.from({ length: N }, (_, i) => frame(i + 1));

class Fed {
  static last;
  readyState = 0;
  bufferedAmount = 0;
  binaryType = "blob";
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  constructor() {
    Fed.last = this;
  }
  send() {}
  close() {}
}

function plain() {
  let got = 0;
  const handlers = new Map([["chat", () => (got += 1)]]);
  const t0 = performance.now();
  for (const data of frames) {
    const m = JSON.parse(data);
    handlers.get(m.type)?.(m);
  }
  const ms = performance.now() - t0;
  if (got !== N) throw new Error("plain");
  return ms;
}

async function client() {
  const c = new SocklineClient({ url: "ws://bench/ws", userId: "bench", WebSocket: Fed, signals: false, storage: null, seed: 1 });
  let got = 0;
  c.subscribe("chat", () => (got += 1));
  c.connect();
  const ws = Fed.last;
  ws.readyState = 1;
  ws.onopen({});
  ws.onmessage({ data: WELCOME });
  const t0 = performance.now();
  for (const data of frames) ws.onmessage({ data });
  await null; // a driver that batches per microtask finishes here
  const ms = performance.now() - t0;
  if (got !== N) throw new Error(`client got ${got}`);
  c.close();
  return ms;
}

function openSession() {
  const s = new Session({ url: "ws://bench/ws", userId: "bench" }, 1, 0);
  s.subscribe(0, "chat");
  s.connect(0);
  s.drain();
  s.transportOpened(0);
  s.drain();
  s.frame(0, WELCOME);
  s.drain();
  return s;
}

function parts() {
  const s = openSession();
  let tf = 0;
  let td = 0;
  let got = 0;
  for (const data of frames) {
    const a = performance.now();
    s.frame(1, data);
    const b = performance.now();
    got += s.drain().length - 1;
    td += performance.now() - b;
    tf += b - a;
  }
  if (got !== N) throw new Error(`session got ${got}`);
  s.free();
  return [tf, td];
}

function receive() {
  const s = openSession();
  let got = 0;
  const t0 = performance.now();
  for (const data of frames) got += s.receive(1, data).length - 1;
  const ms = performance.now() - t0;
  if (got !== N) throw new Error(`receive got ${got}`);
  s.free();
  return ms;
}

function frameOnly() {
  // frame() alone, drained in bulk (one drain per 1000 frames) to see the call cost apart.
  const s = openSession();
  let t = 0;
  for (let i = 0; i < N; i += 1000) {
    const a = performance.now();
    for (let j = i; j < i + 1000 && j < N; j++) s.frame(1, frames[j]);
    t += performance.now() - a;
    s.drain();
  }
  s.free();
  return t;
}

const ns = (ms) => ((ms * 1e6) / N).toFixed(0).padStart(6);
for (let round = 0; round < 3; round++) {
  const p = plain();
  const c = await client();
  const [f, d] = parts();
  const fo = frameOnly();
  const r = receive();
  console.log(
    `ns/frame: plain ${ns(p)}  client ${ns(c)}  session.frame ${ns(f)}  session.drain ${ns(d)}  frame(bulk) ${ns(fo)}  session.receive ${ns(r)}  ratio ${(p / c).toFixed(3)}`,
  );
}
