// Browser benchmarks, in one page run (bench/run.mjs opens it in headless Chromium and prints
// window.benchResult): the client's receive path beside plain JSON.parse + Map dispatch, and hub
// -> page messages per second through the wasm client beside a plain WebSocket client.

import { ready, SocklineClient, type WebSocketLike } from "../js/index.js";

const params = new URLSearchParams(location.search);
const FRAMES = Number(params.get("frames") ?? 50_000);
const E2E = Number(params.get("e2e") ?? 20_000);
const hubUrl = `ws://${location.host}/ws`;

/** A 200-byte chat frame with `seq`. */
function frame(seq: number): string {
  const head = `{"type":"chat","projectId":1,"epoch":"e1","offset":${seq},"data":{"text":"`;
  const tail = `"}}`;
  return head + "x".repeat(200 - head.length - tail.length) + tail;
}

/** A WebSocket the benchmark feeds by hand: the driver's real receive path, without a network. */
class Fed implements WebSocketLike {
  static last: Fed | undefined;
  readyState = 0;
  bufferedAmount = 0;
  binaryType = "blob";
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(_url: string) {
    Fed.last = this;
  }
  send(_data: string): void {}
  close(): void {}
}

function receiveWasm(frames: string[]): number {
  const client = new SocklineClient({ url: "ws://bench/ws", userId: "bench", WebSocket: Fed, signals: false, storage: null, seed: 1 });
  let got = 0;
  client.subscribe("chat", () => {
    got += 1;
  });
  client.connect();
  const ws = Fed.last!;
  ws.readyState = 1;
  ws.onopen!({});
  ws.onmessage!({ data: '{"type":"welcome","data":{"sessionId":"b1","resumed":false}}' });
  const t0 = performance.now();
  for (const data of frames) ws.onmessage!({ data });
  const ms = performance.now() - t0;
  if (got !== frames.length) throw new Error(`wasm client got ${got} of ${frames.length}`);
  client.close();
  return (frames.length / ms) * 1000;
}

function receivePlain(frames: string[]): number {
  let got = 0;
  const handlers = new Map<string, (m: unknown) => void>([["chat", () => (got += 1)]]);
  const t0 = performance.now();
  for (const data of frames) {
    const m = JSON.parse(data) as { type: string };
    handlers.get(m.type)?.(m);
  }
  const ms = performance.now() - t0;
  if (got !== frames.length) throw new Error("plain got too few");
  return (frames.length / ms) * 1000;
}

/** Opens a raw protocol connection (hello, then join project 1); resolves once welcomed. */
function raw(user: string, onMessage?: (text: string) => void): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(hubUrl);
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", data: { protocol: 2, userId: user } }));
    ws.onerror = () => reject(new Error("raw socket failed"));
    ws.onmessage = (ev) => {
      const text = ev.data as string;
      if (text.includes('"type":"welcome"')) {
        ws.send(JSON.stringify({ type: "project_subscribe", data: {}, projectId: 1 }));
        setTimeout(() => resolve(ws), 100);
      }
      onMessage?.(text);
    };
  });
}

/** Publishes `n` chat frames into project 1; resolves with the messages/s the receiver saw. */
async function endToEnd(n: number, receiver: (done: (count: number) => void) => Promise<() => void>): Promise<number> {
  let t0 = 0;
  let finish!: (rate: number) => void;
  const result = new Promise<number>((r) => (finish = r));
  const stop = await receiver((count) => {
    if (count === 1) t0 = performance.now();
    if (count === n) finish(((n - 1) / (performance.now() - t0)) * 1000);
  });
  // The publisher runs outside the page when the runner offers one (bench/run.mjs does): an
  // in-page publisher's sends go through the same browser and would be what both receivers wait on.
  const outside = (window as unknown as { publish?: (n: number) => Promise<void> }).publish;
  let pub: WebSocket | undefined;
  if (outside !== undefined) {
    await outside(n);
  } else {
    pub = await raw("publisher");
    const body = "y".repeat(120);
    for (let i = 0; i < n; i++) pub.send(`{"type":"chat","projectId":1,"data":{"i":${i},"text":"${body}"}}`);
  }
  const rate = await Promise.race([result, new Promise<number>((_, j) => setTimeout(() => j(new Error("e2e timed out")), 60_000))]);
  pub?.close();
  stop();
  return rate;
}

async function main() {
  await ready();
  const frames = Array.from({ length: FRAMES }, (_, i) => frame(i + 1));
  // Warm up both paths (JIT, wasm tier-up), then measure each three times, keeping the median.
  receiveWasm(frames.slice(0, 5000));
  receivePlain(frames.slice(0, 5000));
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[1]!;
  const wasmRates = [receiveWasm(frames), receiveWasm(frames), receiveWasm(frames)];
  const plainRates = [receivePlain(frames), receivePlain(frames), receivePlain(frames)];
  const wasmE2e = await endToEnd(E2E, async (done) => {
    const client = new SocklineClient({ url: hubUrl, userId: "rx", signals: false, storage: null });
    let count = 0;
    client.subscribe("chat", () => done(++count), { projectId: 1 });
    client.joinProject(1);
    client.connect();
    await new Promise<void>((r) => {
      const off = client.onEvent((e) => {
        if (e.kind === "presence") {
          off();
          r();
        }
      });
    });
    return () => client.close();
  });
  const plainE2e = await endToEnd(E2E, async (done) => {
    let count = 0;
    const ws = await raw("rx-plain", (text) => {
      const m = JSON.parse(text) as { type: string };
      if (m.type === "chat") done(++count);
    });
    return () => ws.close();
  });
  const result = {
    frames: FRAMES,
    receive_wasm_per_s: Math.round(median(wasmRates)),
    receive_plain_per_s: Math.round(median(plainRates)),
    receive_ratio: +(median(wasmRates) / median(plainRates)).toFixed(3),
    e2e_messages: E2E,
    e2e_wasm_per_s: Math.round(wasmE2e),
    e2e_plain_per_s: Math.round(plainE2e),
    e2e_ratio: +(wasmE2e / plainE2e).toFixed(3),
  };
  (window as unknown as { benchResult: unknown }).benchResult = result;
  document.getElementById("out")!.textContent = JSON.stringify(result, null, 2);
}

main().catch((e: unknown) => {
  (window as unknown as { benchResult: unknown }).benchResult = { error: String(e) };
});
