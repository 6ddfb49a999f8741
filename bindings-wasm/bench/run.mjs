// Runs the browser benchmarks in headless Chromium against the real hub and prints the figures:
//   node --experimental-websocket bench/run.mjs [frames] [e2e-messages]   (after ./build.sh;
//   SOCKLINE_BIN=.../release/sockline for a release hub)
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startHub } from "../test/hub.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const [frames = "50000", e2e = "20000"] = process.argv.slice(2);
const hub = await startHub(["--static", path.resolve(here, "../dist/bench"), "--rate", "off", "--outbound-queue", "1000000"]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  // The publisher, outside the browser: a raw protocol connection from Node (hello, join
  // project 1), sending as fast as the socket takes it.
  await page.exposeFunction("publish", async (n) => {
    const ws = new WebSocket(hub.url);
    await new Promise((resolve, reject) => {
      ws.onerror = () => reject(new Error("publisher socket failed"));
      ws.onopen = () => ws.send(JSON.stringify({ type: "hello", data: { protocol: 2, userId: "publisher" } }));
      ws.onmessage = (ev) => {
        if (String(ev.data).includes('"type":"welcome"')) {
          ws.send(JSON.stringify({ type: "project_subscribe", data: {}, projectId: 1 }));
          setTimeout(resolve, 100);
        }
      };
    });
    const body = "y".repeat(120);
    for (let i = 0; i < n; i++) ws.send(`{"type":"chat","projectId":1,"data":{"i":${i},"text":"${body}"}}`);
    // Closed once the page has it all (the page calls publish again for the next round).
    setTimeout(() => ws.close(), 30_000).unref();
  });
  await page.goto(`${hub.http}/index.html?frames=${frames}&e2e=${e2e}`);
  await page.waitForFunction(() => window.benchResult !== undefined, null, { timeout: 180_000 });
  const result = await page.evaluate(() => window.benchResult);
  console.log(JSON.stringify(result, null, 2));
  if (result.error) process.exitCode = 1;
} finally {
  await browser.close();
  await hub.kill();
}
