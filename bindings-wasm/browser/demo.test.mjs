// The demo page in headless Chromium (Debian's, driven by playwright-core) against the real hub
// binary over loopback: what only a real browser shows. Screenshots of each step go to
// target/browser/ at the repository root.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { startHub } from "../test/hub.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const demoDir = path.resolve(here, "../dist/demo");
const shots = path.resolve(here, "../../target/browser");
mkdirSync(shots, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});
after(async () => {
  await browser?.close();
});

const hubArgs = ["--static", demoDir, "--agent-chunk-ms", "40", "--agent-chunks", "60"];

/** A page of the demo as `user`, in its own browser context (its own storage, like another person). */
async function open(hub, user, query = "") {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  // Counts the sockets the page opens (the StrictMode test reads it).
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.socketsOpened = 0;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.socketsOpened += 1;
      }
    };
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${hub.http}/demo/websocket?user=${user}&project=1${query}`);
  return { context, page, errors };
}

const compact = (page) => page.locator("header .sockline-status");
const shot = (page, name) => page.screenshot({ path: path.join(shots, `${name}.png`) });
const statuses = (page) => page.evaluate(() => (window.socklineEvents ?? []).filter((e) => e.kind === "status"));

async function waitText(locator, text, timeout = 10_000) {
  await locator.filter({ hasText: text }).first().waitFor({ timeout });
}

/** Waits until the page's session is open and its compact status reads exactly `Connected`
 *  (a text match alone would also accept "Not connected"). */
async function waitConnected(page, timeout = 10_000) {
  const open = page.locator('header .sockline-status[data-status="open"]');
  await open.waitFor({ timeout });
  await page.waitForFunction(
    () => document.querySelector('header .sockline-status .sockline-status-label')?.textContent === "Connected",
    null,
    { timeout },
  );
}

test("the page connects and shows Connected; a second person's typing shows as an indicator", async () => {
  const hub = await startHub(hubArgs);
  const ann = await open(hub, "ann");
  await waitConnected(ann.page);
  await shot(ann.page, "01-connected");
  const bob = await open(hub, "bob");
  await waitConnected(bob.page);
  await waitText(ann.page.getByTestId("presence"), "bob");
  await bob.page.getByTestId("send-input").pressSequentially("hello from bob", { delay: 20 });
  await waitText(ann.page.locator(".sockline-typing"), "bob");
  await shot(ann.page, "02-bob-typing");
  await bob.page.getByTestId("send").click();
  await waitText(ann.page.getByTestId("messages"), "hello from bob");
  // Bob stopped typing when he sent.
  await ann.page.locator(".sockline-typing", { hasText: "bob" }).waitFor({ state: "detached", timeout: 10_000 }).catch(async () => {
    assert.equal((await ann.page.locator(".sockline-typing").innerText()).includes("bob"), false);
  });
  await shot(ann.page, "03-message");
  assert.deepEqual([...ann.errors, ...bob.errors], []);
  await ann.context.close();
  await bob.context.close();
  await hub.kill();
});

test("an agent answer streams in with auto-scroll, and interrupt stops it", async () => {
  const hub = await startHub(hubArgs);
  const { context, page } = await open(hub, "ann");
  await waitConnected(page);
  await page.getByTestId("ask").click();
  const stream = page.locator(".sockline-stream");
  await stream.waitFor();
  await page.waitForFunction(() => (document.querySelector(".sockline-stream")?.textContent ?? "").length > 40);
  await shot(page, "04-streaming");
  await page.locator(".sockline-stream-interrupt").click();
  const len = (await stream.innerText()).length;
  await page.waitForTimeout(400); // ten chunk intervals
  assert.equal((await stream.innerText()).length, len, "no chunk after the interrupt");
  await shot(page, "05-interrupted");
  await context.close();
  await hub.kill();
});

test("the hub killed and restarted: Reconnecting, then Connected, and a message sent meanwhile arrives once", async () => {
  let hub = await startHub(hubArgs);
  // ann retries slowly, bob quickly: bob is back in the project before ann's queued message
  // goes out (a restarted hub without persistence has no log to replay from).
  const ann = await open(hub, "ann", "&reconnectMs=3000");
  const bob = await open(hub, "bob", "&reconnectMs=100");
  await waitText(ann.page.getByTestId("presence"), "bob");
  const addr = hub.addr;
  await hub.kill();
  await waitText(compact(ann.page), "Reconnecting");
  await shot(ann.page, "06-reconnecting");
  await ann.page.getByTestId("send-input").fill("sent during the outage");
  await ann.page.getByTestId("send").click();
  hub = await startHub(hubArgs, addr);
  await waitConnected(bob.page);
  await waitConnected(ann.page, 15_000);
  await waitText(bob.page.getByTestId("messages"), "sent during the outage");
  await bob.page.waitForTimeout(300);
  const copies = await bob.page.getByTestId("messages").locator("li", { hasText: "sent during the outage" }).count();
  assert.equal(copies, 1, "exactly once");
  const seen = (await statuses(ann.page)).map((e) => e.to);
  assert.ok(seen.includes("reconnecting") && seen.at(-1) === "open", seen.join(" "));
  await shot(bob.page, "07-delivered-once");
  await ann.context.close();
  await bob.context.close();
  await hub.kill();
});

test("offline shows Offline, and back online reconnects at once", async () => {
  const hub = await startHub(hubArgs);
  const { context, page } = await open(hub, "ann", "&reconnectMs=20000");
  await waitConnected(page);
  await context.setOffline(true);
  await waitText(compact(page), "Offline", 15_000);
  await shot(page, "08-offline");
  const before = Date.now();
  await context.setOffline(false);
  await waitConnected(page, 5_000).catch(async (e) => {
    throw new Error(`${e.message}\nthe page's events: ${JSON.stringify(await page.evaluate(() => window.socklineEvents))}`);
  });
  // With a 20 s backoff, only the online signal can explain a reconnect this fast.
  assert.ok(Date.now() - before < 5_000);
  await shot(page, "09-back-online");
  await context.close();
  await hub.kill();
});

test("a reload during an outage loses no queued message", async () => {
  // The page comes from another server than the hub that goes away (as from a CDN), so the
  // reload itself works during the outage.
  const pages = await startHub(hubArgs);
  let hub = await startHub(hubArgs);
  const ws = `&url=${encodeURIComponent(hub.url)}`;
  const ann = await open(pages, "ann", `&reconnectMs=3000${ws}`);
  const bob = await open(pages, "bob", `&reconnectMs=100${ws}`);
  await waitText(ann.page.getByTestId("presence"), "bob");
  const addr = hub.addr;
  await hub.kill();
  await waitText(compact(ann.page), "Reconnecting");
  await ann.page.getByTestId("send-input").fill("queued before the reload");
  await ann.page.getByTestId("send").click();
  await ann.page.reload();
  await shot(ann.page, "10-reloaded-offline");
  hub = await startHub(hubArgs, addr);
  await waitText(bob.page.getByTestId("messages"), "queued before the reload", 15_000);
  await bob.page.waitForTimeout(300);
  const copies = await bob.page.getByTestId("messages").locator("li", { hasText: "queued before the reload" }).count();
  assert.equal(copies, 1);
  const saved = await ann.page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("sockline:outbox:")));
  assert.deepEqual(saved, [], "the restored snapshot is gone from storage");
  await shot(bob.page, "11-delivered-after-reload");
  await ann.context.close();
  await bob.context.close();
  await hub.kill();
  await pages.kill();
});

test("a page stopped for 20 s (as a frozen tab) resumes without a false death", async () => {
  const hub = await startHub(hubArgs);
  const { context, page } = await open(hub, "ann", "&heartbeat=5000");
  await waitConnected(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Debugger.enable");
  await cdp.send("Debugger.pause");
  await new Promise((r) => setTimeout(r, 20_000));
  await cdp.send("Debugger.resume");
  await page.waitForTimeout(3_000); // the late timers fire; the core probes the link
  const seen = await statuses(page);
  assert.deepEqual(
    seen.filter((e) => e.to !== "connecting" && e.to !== "open"),
    [],
    `no reconnect after the pause: ${JSON.stringify(seen)}`,
  );
  await waitConnected(page);
  await shot(page, "12-after-freeze");
  await context.close();
  await hub.kill();
});

test("under React.StrictMode the page opens one socket", async () => {
  const hub = await startHub(hubArgs);
  const { context, page, errors } = await open(hub, "ann", "&strict=1");
  await waitConnected(page);
  await page.waitForTimeout(500);
  assert.equal(await page.evaluate(() => window.socketsOpened), 1);
  assert.deepEqual(errors, []);
  await context.close();
  await hub.kill();
});

test("sockline demo --web serves the page at /demo/websocket and /, with the scripted agent", async () => {
  const { spawn } = await import("node:child_process");
  const { SOCKLINE } = await import("../test/hub.mjs");
  const child = spawn(SOCKLINE, ["demo", "--web", "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (c) => {
        out += c;
        const m = /open (http:\/\/\S+\/demo\/websocket)/.exec(out);
        if (m) resolve(m[1]);
      });
      child.on("exit", (code) => reject(new Error(`demo --web exited with ${code}: ${out}`)));
    });
    const base = url.replace(/\/demo\/websocket$/, "");
    for (const path of ["/demo/websocket", "/"]) {
      const res = await fetch(base + path);
      assert.equal(res.status, 200, path);
      assert.match(await res.text(), /<script type="module" src="\/app.js">/, path);
    }
    assert.equal((await fetch(`${base}/app.js`)).headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal((await fetch(`${base}/sockline_wasm_bg.wasm`)).headers.get("content-type"), "application/wasm");
    assert.equal((await fetch(`${base}/nothing-here`)).status, 404);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${url}?user=ann`);
    await waitConnected(page);
    await page.getByTestId("ask").click();
    await page.waitForFunction(() => (document.querySelector(".sockline-stream")?.textContent ?? "").length > 20);
    await context.close();
  } finally {
    child.kill("SIGTERM");
  }
});
